"""A client of the v1 contract written in another language with an unrelated
gRPC library: Python grpcio (C core) from Debian, messages from protoc-generated
modules. test/interop-python.test.ts runs it against a broker process and
checks what it prints (one JSON object).

usage: python_client.py <gen_dir> <host:port> [secret]
"""
import hashlib
import hmac
import json
import sys
import time
import uuid

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import msgpack  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from sentry_protos.taskbroker.v1 import taskbroker_pb2 as pb  # noqa: E402
from taskplatform.v1 import ingest_pb2  # noqa: E402
from health_check import health_pb2  # noqa: E402  (grpc.health.v1, renamed: "grpc" is the library)

target = sys.argv[2]
secret = sys.argv[3] if len(sys.argv) > 3 else None
channel = grpc.insecure_channel(target)
out = {}


def call(path, request, response_type, sign=True):
    """Unary call by full method path, signed as the Python client signs."""
    body = request.SerializeToString()
    metadata = []
    if secret and sign:
        sig = hmac.new(secret.encode(), path.encode() + b":" + body, hashlib.sha256).hexdigest()
        metadata.append(("sentry-signature", sig))
    method = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=response_type.FromString)
    return method(body, metadata=metadata, timeout=10)


def code_of(fn):
    try:
        fn()
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


CONSUMER = "/sentry_protos.taskbroker.v1.ConsumerService/"

# Health is exempt from signing.
health = call("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest(service="sentry_protos.taskbroker.v1.ConsumerService"), health_pb2.HealthCheckResponse, sign=False)
out["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)

out["empty_get_task"] = code_of(lambda: call(CONSUMER + "GetTask", pb.GetTaskRequest(application="py"), pb.GetTaskResponse))

ids = []
activations = []
for i in range(3):
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    aid = uuid.uuid4().hex
    ids.append(aid)
    activations.append(pb.TaskActivation(
        id=aid, namespace="py-ns", taskname="py.task", application="py",
        parameters_bytes=msgpack.packb({"args": [i, "a", b"\x00\x01", None, 2.5], "kwargs": {"org_id": 7, "flag": True}}),
        headers={"sentry-trace": "abc"}, received_at=ts,
        retry_state=pb.RetryState(attempts=0, max_attempts=3, on_attempts_exceeded=pb.ON_ATTEMPTS_EXCEEDED_DEADLETTER),
        processing_deadline_duration=30,
    ))
produced = call("/taskplatform.v1.IngestService/Produce", ingest_pb2.ProduceRequest(activations=activations), ingest_pb2.ProduceResponse)
out["produced"] = produced.accepted

bad = pb.TaskActivation(id=uuid.uuid4().hex, namespace="py-ns", application="py")  # no taskname
out["produce_invalid"] = code_of(lambda: call("/taskplatform.v1.IngestService/Produce", ingest_pb2.ProduceRequest(activations=[bad]), ingest_pb2.ProduceResponse))

first = call(CONSUMER + "GetTask", pb.GetTaskRequest(application="py", namespace="py-ns"), pb.GetTaskResponse)
out["first_id"] = first.task.id
out["first_args"] = msgpack.unpackb(first.task.parameters_bytes)["args"][0]
out["first_headers"] = dict(first.task.headers)
out["first_retry_max"] = first.task.retry_state.max_attempts

nxt = call(CONSUMER + "SetTaskStatus", pb.SetTaskStatusRequest(
    id=first.task.id, status=pb.TASK_ACTIVATION_STATUS_COMPLETE,
    fetch_next_task=pb.FetchNextTask(application="py", namespace="py-ns")), pb.SetTaskStatusResponse)
out["next_id"] = nxt.task.id if nxt.HasField("task") else None

out["invalid_status"] = code_of(lambda: call(CONSUMER + "SetTaskStatus", pb.SetTaskStatusRequest(id=nxt.task.id, status=pb.TASK_ACTIVATION_STATUS_PENDING), pb.SetTaskStatusResponse))
unknown = call(CONSUMER + "SetTaskStatus", pb.SetTaskStatusRequest(id="f" * 32, status=pb.TASK_ACTIVATION_STATUS_COMPLETE), pb.SetTaskStatusResponse)
out["unknown_id_has_task"] = unknown.HasField("task")

third = call(CONSUMER + "GetTask", pb.GetTaskRequest(application="py"), pb.GetTaskResponse)
call(CONSUMER + "SetBatchActivationStatus", pb.SetBatchActivationStatusRequest(updates=[
    pb.SetTaskStatusRequest(id=nxt.task.id, status=pb.TASK_ACTIVATION_STATUS_COMPLETE),
    pb.SetTaskStatusRequest(id=third.task.id, status=pb.TASK_ACTIVATION_STATUS_FAILURE),
]), pb.SetBatchActivationStatusResponse)
out["third_id"] = third.task.id
out["drained"] = code_of(lambda: call(CONSUMER + "GetTask", pb.GetTaskRequest(application="py"), pb.GetTaskResponse))
out["namespace_without_application"] = code_of(lambda: call(CONSUMER + "GetTask", pb.GetTaskRequest(namespace="py-ns"), pb.GetTaskResponse))
if secret:
    def wrong_key():
        body = pb.GetTaskRequest(application="py").SerializeToString()
        sig = hmac.new(b"not the secret", (CONSUMER + "GetTask").encode() + b":" + body, hashlib.sha256).hexdigest()
        channel.unary_unary(CONSUMER + "GetTask")(body, metadata=[("sentry-signature", sig)], timeout=10)
    out["wrong_key"] = code_of(wrong_key)
    out["unsigned"] = code_of(lambda: call(CONSUMER + "GetTask", pb.GetTaskRequest(application="py"), pb.GetTaskResponse, sign=False))
out["ids"] = ids
print(json.dumps(out))
