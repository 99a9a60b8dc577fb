// The worker's and producer's view of one broker: GetTask, SetTaskStatus
// (with fetch_next), batch status and Produce, signed with the first shared
// secret. Shaped like the RPC helper's fast client (src/connect/client.ts);
// this fallback goes through connect-node's gRPC transport.
import { create, toBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createHmac } from "node:crypto";
import {
  ConsumerService,
  SetTaskStatusRequestSchema,
  type TaskActivation,
} from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { IngestService } from "../gen/taskplatform/v1/ingest_pb.ts";

export interface FetchFilter {
  namespace?: string;
  application?: string;
}

export interface StatusReport {
  id: string;
  status: 3 | 4 | 5;
  fetchNext?: FetchFilter;
  maxAttempts?: number;
  delayOnRetry?: bigint;
}

export interface BrokerClient {
  readonly address: string;
  /** null on NOT_FOUND (nothing claimable). */
  getTask(req: FetchFilter): Promise<TaskActivation | null>;
  setTaskStatus(req: StatusReport): Promise<TaskActivation | null>;
  setBatchStatus(updates: StatusReport[]): Promise<void>;
  produce(activations: Uint8Array[]): Promise<{ accepted: number; duplicates: number; expired: number }>;
  close(): void;
}

export interface BrokerClientOptions {
  address: string;
  secrets?: string[];
  deadlineMs?: number;
}

/** HMAC-SHA256(secret, path + ":" + message) as lowercase hex: the sentry-signature header. */
export function signRequest(secret: string, path: string, message: Uint8Array): string {
  return createHmac("sha256", secret).update(path).update(":").update(message).digest("hex");
}

function signing(secret: string): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const path = `/${req.service.typeName}/${req.method.name}`;
      const bytes = toBinary(req.method.input, req.message);
      req.header.set("sentry-signature", signRequest(secret, path, bytes));
    }
    return next(req);
  };
}

export function createConnectBrokerClient(options: BrokerClientOptions): BrokerClient {
  const secret = options.secrets?.[0];
  const transport = createGrpcTransport({
    baseUrl: `http://${options.address}`,
    interceptors: secret ? [signing(secret)] : [],
    defaultTimeoutMs: options.deadlineMs ?? 10_000,
  });
  const consumer: Client<typeof ConsumerService> = createClient(ConsumerService, transport);
  const ingest: Client<typeof IngestService> = createClient(IngestService, transport);
  const statusRequest = (r: StatusReport) =>
    create(SetTaskStatusRequestSchema, {
      id: r.id,
      status: r.status,
      fetchNextTask: r.fetchNext,
      maxAttempts: r.maxAttempts,
      delayOnRetry: r.delayOnRetry,
    });
  return {
    address: options.address,
    async getTask(req) {
      try {
        const res = await consumer.getTask(req);
        return res.task ?? null;
      } catch (err) {
        if (ConnectError.from(err).code === Code.NotFound) return null;
        throw err;
      }
    },
    async setTaskStatus(req) {
      const res = await consumer.setTaskStatus(statusRequest(req));
      return res.task ?? null;
    },
    async setBatchStatus(updates) {
      await consumer.setBatchActivationStatus({ updates: updates.map(statusRequest) });
    },
    async produce(activations) {
      const { TaskActivationSchema } = await import("../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts");
      const { fromBinary } = await import("@bufbuild/protobuf");
      const res = await ingest.produce({ activations: activations.map((b) => fromBinary(TaskActivationSchema, b)) });
      return { accepted: res.accepted, duplicates: res.duplicates, expired: res.expired };
    },
    close() {},
  };
}

/** The client the worker and producers use. */
export function createBrokerClient(options: BrokerClientOptions): BrokerClient {
  return createConnectBrokerClient(options);
}
