"""Streaming delivery from another gRPC implementation: Python grpcio (C core)
opens taskplatform.v1.DeliveryService/Deliver, signed over its opening message,
and runs it full duplex: credit 1, so each next activation arrives only after
the result of the previous one went out on the same open stream.
test/interop-python-stream.test.ts runs it and checks what it prints (JSON).

usage: python_stream_client.py <gen_dir> <host:port> <application> <count> [secret]
"""
import hashlib
import hmac
import json
import queue
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from sentry_protos.taskbroker.v1 import taskbroker_pb2 as pb  # noqa: E402
from taskplatform.v1 import delivery_pb2  # noqa: E402

target, application, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
secret = sys.argv[5] if len(sys.argv) > 5 else None
PATH = "/taskplatform.v1.DeliveryService/Deliver"

first = delivery_pb2.WorkerMessage(open=delivery_pb2.DeliveryOpen(application=application, worker="python"), credit=1)
metadata = []
if secret:
    sig = hmac.new(secret.encode(), PATH.encode() + b":" + first.SerializeToString(), hashlib.sha256).hexdigest()
    metadata.append(("sentry-signature", sig))

outbox = queue.Queue()
outbox.put(first)


def requests():
    while True:
        m = outbox.get()
        if m is None:
            return
        yield m


channel = grpc.insecure_channel(target)
deliver = channel.stream_stream(PATH, request_serializer=lambda m: m.SerializeToString(), response_deserializer=delivery_pb2.BrokerMessage.FromString)
ids, committed, most_in_one = [], 0, 0
responses = deliver(requests(), metadata=metadata, timeout=30)
status = "OK"
try:
    for msg in responses:
        committed += msg.results_committed
        most_in_one = max(most_in_one, len(msg.activations))
        for a in msg.activations:
            ids.append(a.id)
            outbox.put(delivery_pb2.WorkerMessage(results=[pb.SetTaskStatusRequest(id=a.id, status=pb.TASK_ACTIVATION_STATUS_COMPLETE)]))
        if committed == count:
            outbox.put(None)  # half-close: the broker ends the stream with OK
except grpc.RpcError as e:
    status = e.code().name
print(json.dumps({"ids": ids, "committed": committed, "most_in_one_message": most_in_one, "status": status}))
