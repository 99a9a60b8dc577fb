// ConsumerService and IngestService as connect-es service implementations,
// for the Connect, gRPC-Web and HTTP/1.1 transports. They call the same
// ConsumerCore as the fast gRPC path, so both answer with the same codes.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type ConsumerService,
  type SetTaskStatusRequest,
  TaskActivationSchema,
} from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { IngestService } from "../gen/taskplatform/v1/ingest_pb.ts";
import type { ClaimedActivation } from "../store/types.ts";
import { type ConsumerCore, NO_PENDING } from "./consumer.ts";
import type { DecodedStatusUpdate } from "../protocol/messages.ts";

function activationOf(claimed: ClaimedActivation) {
  return fromBinary(TaskActivationSchema, claimed.activation);
}

function updateOf(req: SetTaskStatusRequest): DecodedStatusUpdate {
  const out: DecodedStatusUpdate = { id: req.id, status: req.status };
  if (req.fetchNextTask !== undefined) {
    out.fetchNext = { namespace: req.fetchNextTask.namespace, application: req.fetchNextTask.application };
  }
  if (req.maxAttempts !== undefined) out.maxAttempts = req.maxAttempts;
  if (req.delayOnRetry !== undefined) out.delayOnRetry = req.delayOnRetry;
  return out;
}

export function consumerServiceImpl(core: ConsumerCore): ServiceImpl<typeof ConsumerService> {
  return {
    async getTask(req) {
      const claimed = await core.getTask({ namespace: req.namespace, application: req.application });
      if (claimed === null) throw new ConnectError(NO_PENDING, Code.NotFound);
      return { task: activationOf(claimed) };
    },
    async setTaskStatus(req) {
      const next = await core.setTaskStatus(updateOf(req));
      return next === null ? {} : { task: activationOf(next) };
    },
    async setBatchActivationStatus(req) {
      await core.setBatchStatus(req.updates.map(updateOf));
      return {};
    },
  };
}

export function ingestServiceImpl(core: ConsumerCore): ServiceImpl<typeof IngestService> {
  return {
    async produce(req) {
      // Re-encoded from the decoded message: protobuf-es keeps unknown fields, so nothing is lost.
      return core.produce(req.activations.map((a) => toBinary(TaskActivationSchema, a)));
    },
    // gRPC over HTTP/2 is served by produce-stream.ts before requests reach this router; Connect and
    // gRPC-Web clients cannot carry a full-duplex stream in browsers, and Produce serves them.
    // biome-ignore lint/correctness/useYield: refuses before the first message
    async *produceStream() {
      throw new ConnectError(
        "ProduceStream is served over gRPC (HTTP/2) only; use Produce with Connect or gRPC-Web",
        Code.Unimplemented,
      );
    },
  };
}
