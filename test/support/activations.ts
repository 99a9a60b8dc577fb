// Test helpers for CLI and lifecycle tests: activations with unique ids and
// real gRPC (HTTP/2) clients for a broker on a port, via connect-node.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ConsumerService,
  OnAttemptsExceeded,
  TaskActivationSchema,
  type TaskActivation,
} from "../../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { IngestService } from "../../src/gen/taskplatform/v1/ingest_pb.ts";
import { signingInterceptor } from "../../src/connect/client.ts";

let seq = 0;
const run = crypto.randomUUID().replaceAll("-", "").slice(0, 12);

/** A unique 32-hex id per call within this test process. */
export function uniqueId(): string {
  return `${run}${(seq++).toString(16).padStart(20, "0")}`;
}

export function activation(
  opts: {
    id?: string;
    namespace?: string;
    taskname?: string;
    application?: string;
    deadLetterAfter?: number;
    processingDeadlineS?: number;
  } = {},
): TaskActivation {
  return create(TaskActivationSchema, {
    id: opts.id ?? uniqueId(),
    namespace: opts.namespace ?? "lifecycle",
    taskname: opts.taskname ?? "tests.noop",
    application: opts.application ?? "tests",
    receivedAt: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 },
    processingDeadlineDuration: BigInt(opts.processingDeadlineS ?? 300),
    retryState:
      opts.deadLetterAfter !== undefined
        ? { attempts: 0, maxAttempts: opts.deadLetterAfter, onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER }
        : undefined,
  });
}

export function brokerClients(port: number, secret?: string) {
  const interceptors: Interceptor[] = secret ? [signingInterceptor(secret)] : [];
  const transport = createGrpcTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    interceptors,
    defaultTimeoutMs: 30_000,
  });
  return { ingest: createClient(IngestService, transport), consumer: createClient(ConsumerService, transport) };
}

/** Claims with GetTask (several callers at once) until the broker answers NOT_FOUND; returns the claimed ids. */
export async function drainIds(port: number, parallel = 8, secret?: string): Promise<Set<string>> {
  const { consumer } = brokerClients(port, secret);
  const ids = new Set<string>();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (;;) {
        try {
          const res = await consumer.getTask({});
          if (!res.task) return;
          ids.add(res.task.id);
        } catch (err) {
          if (ConnectError.from(err).code === Code.NotFound) return;
          throw err;
        }
      }
    }),
  );
  return ids;
}
