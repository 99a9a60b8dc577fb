// Helpers for Kafka tests: build activations, produce to a topic with kafkajs
// directly (the test acts as an outside producer) and read one back with the
// mock cluster's librdkafka consumer, talk to a broker with a real gRPC
// client, and read the (topic, partition, offset) of stored rows from a
// broker's SQLite file.
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Database } from "bun:sqlite";
import { afterAll, beforeAll } from "bun:test";
import { spawnBroker, type BrokerProcess, type SpawnBrokerOptions } from "./broker-process.ts";
import { startKafkaMock, type KafkaMock } from "./kafka-mock.ts";
import { Kafka, logLevel, type IHeaders } from "kafkajs";
import {
  ConsumerService,
  OnAttemptsExceeded,
  RetryStateSchema,
  TaskActivationSchema,
  type TaskActivation,
} from "../../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

export { OnAttemptsExceeded, TaskActivationSchema };

let seq = 0;
/** A unique name per test (topics, groups). */
export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${seq++}`;
}

export function activation(
  fields: Partial<{
    id: string;
    namespace: string;
    taskname: string;
    application: string;
    attempts: number;
    maxAttempts: number;
    onAttemptsExceeded: OnAttemptsExceeded;
    processingDeadlineDuration: number;
    expires: number;
    receivedAtMs: number;
  }> = {},
): Uint8Array {
  return toBinary(
    TaskActivationSchema,
    create(TaskActivationSchema, {
      id: fields.id ?? crypto.randomUUID().replaceAll("-", ""),
      namespace: fields.namespace ?? "ns",
      taskname: fields.taskname ?? "tests.noop",
      application: fields.application ?? "app",
      receivedAt: timestampFromMs(fields.receivedAtMs ?? Date.now()),
      processingDeadlineDuration: BigInt(fields.processingDeadlineDuration ?? 30),
      expires: fields.expires !== undefined ? BigInt(fields.expires) : undefined,
      retryState: create(RetryStateSchema, {
        attempts: fields.attempts ?? 0,
        maxAttempts: fields.maxAttempts ?? 3,
        onAttemptsExceeded: fields.onAttemptsExceeded ?? OnAttemptsExceeded.DISCARD,
      }),
    }),
  );
}

export const decodeActivation = (bytes: Uint8Array): TaskActivation => fromBinary(TaskActivationSchema, bytes);

function kafka(bootstrap: string): Kafka {
  return new Kafka({ clientId: "test", brokers: bootstrap.split(","), logLevel: logLevel.NOTHING });
}

export interface TestMessage {
  value: Uint8Array | null;
  key?: string;
  headers?: Record<string, string>;
  partition?: number;
}

/** Produces messages (acks = all) in chunks; resolves when all are acknowledged. */
export async function produce(bootstrap: string, topic: string, messages: TestMessage[]): Promise<void> {
  const producer = kafka(bootstrap).producer();
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 1000) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.slice(i, i + 1000).map((m) => ({
          value: m.value === null ? null : Buffer.from(m.value),
          key: m.key ?? null,
          headers: m.headers as IHeaders | undefined,
          partition: m.partition,
        })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface ReadMessage {
  partition: number;
  offset: string;
  value: Uint8Array | null;
  headers: Record<string, string>;
}

/**
 * Every message of a topic, read from the beginning with a librdkafka
 * consumer (the mock cluster's; it joins no group, so no join wait) once at
 * least `count` are there (or the deadline passed). With settleMs, reads
 * again that much later, so a late duplicate would show.
 */
export async function readTopic(
  mock: KafkaMock,
  topic: string,
  count: number,
  opts: { timeoutMs?: number; settleMs?: number } = {},
): Promise<ReadMessage[]> {
  const read = async () =>
    (await mock.consume(topic, { min: count, timeoutMs: opts.timeoutMs ?? 30_000 })).map((m) => ({
      partition: m.partition,
      offset: m.offset,
      value: m.value,
      headers: m.headers,
    }));
  const first = await read();
  if (!opts.settleMs || first.length < count) return first;
  await Bun.sleep(opts.settleMs);
  return await read();
}

/** The group's committed offset per partition (-1: none), read with kafkajs admin like an operator would. */
export async function committedOffsets(bootstrap: string, group: string, topic: string): Promise<Map<number, number>> {
  const admin = kafka(bootstrap).admin();
  await admin.connect();
  try {
    const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return new Map((t?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

export type ConsumerClient = Client<typeof ConsumerService>;

export function brokerClient(port: number): ConsumerClient {
  return createClient(ConsumerService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function until<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await Bun.sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
}

export interface StoredOrigin {
  id: string;
  state: number;
  topic: string | null;
  partition: number | null;
  offset: string | null;
  activation: Uint8Array;
}

/** Rows of a broker's inflight database (read-only; safe while the broker runs, WAL mode). */
export function storedRows(dbPath: string): StoredOrigin[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db
      .query<StoredOrigin, []>(
        "SELECT id, state, kafka_topic AS topic, kafka_partition AS partition, CAST(kafka_offset AS TEXT) AS offset, activation FROM inflight",
      )
      .all();
  } finally {
    db.close();
  }
}

/** Environment for a broker consuming `topics` from the mock cluster. */
export function kafkaEnv(
  bootstrap: string,
  topics: string[],
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {
    TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: bootstrap,
    // Tests produce before the broker joins; the reference's default (latest) would skip those messages.
    TASKBROKER_KAFKA_AUTO_OFFSET_RESET: "earliest",
    TASKBROKER_KAFKA_BATCH_MAX_MS: "100ms",
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "200ms",
    ...extra,
  };
  for (const t of topics) {
    const key = t.toUpperCase();
    env[`TASKBROKER_KAFKA_TOPICS__${key}__CLUSTER`] = "default";
    // Short sessions: the mock cluster holds a rebalance for the session timeout
    // minus 1 s waiting for members, so every restart in a test costs that.
    env[`TASKBROKER_KAFKA_TOPICS__${key}__SESSION_TIMEOUT_MS`] ??= "3000";
  }
  return env;
}

/**
 * The shared set-up of a Kafka test file: one mock cluster for the file
 * (started before its first test) and every broker process its tests spawn,
 * all killed after its last test. Call once at module level.
 */
export function kafkaTestbed(): {
  /** The file's mock cluster (available from the first test on). */
  readonly mock: KafkaMock;
  /** Spawns a broker process that is killed when the file's tests end. */
  broker(env: Record<string, string>, opts?: SpawnBrokerOptions): Promise<BrokerProcess>;
} {
  let mock: KafkaMock | undefined;
  const live = new Set<BrokerProcess>();
  beforeAll(async () => {
    mock = await startKafkaMock({ brokers: 1 });
  }, 30_000);
  afterAll(async () => {
    await Promise.all([...live].map((b) => b.stop("SIGKILL")));
    await mock?.stop();
  });
  return {
    get mock() {
      if (!mock) throw new Error("the mock cluster starts in beforeAll; use it inside tests");
      return mock;
    },
    async broker(env, opts) {
      const b = await spawnBroker(env, opts);
      live.add(b);
      return b;
    },
  };
}

/** Claims everything the broker hands out (application "app") and completes it; returns the ids seen. */
export async function drainAndComplete(port: number, expected: number, timeoutMs = 60_000): Promise<string[]> {
  const client = brokerClient(port);
  const seen: string[] = [];
  const deadline = Date.now() + timeoutMs;
  while (seen.length < expected && Date.now() < deadline) {
    try {
      const res = await client.getTask({ application: "app" });
      if (!res.task) continue;
      seen.push(res.task.id);
      await client.setTaskStatus({ id: res.task.id, status: 5 });
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) await Bun.sleep(50);
      else throw err;
    }
  }
  return seen;
}
