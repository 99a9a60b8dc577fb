// The only file that touches the Kafka client library (kafkajs): the broker's
// consumers and publisher, and the SDK's producer (producer/kafka.ts). Everything
// else in src/kafka/ speaks the small interfaces below, so the library can be
// replaced (kafkajs has had no release since 2023; docs/spec/facts.md) by rewriting this
// file alone. Notes from docs/spec/facts.md: each consumer gets its own Kafka instance
// (two consumers of one instance can crash in offset resolution).
import { readFileSync } from "node:fs";
import {
  Kafka,
  logLevel as KafkaLogLevel,
  type Consumer,
  type IHeaders,
  type KafkaConfig,
  type LogEntry,
  type Producer,
  type SASLOptions,
} from "kafkajs";
import type { KafkaClusterConfig } from "../config/broker.ts";
import type { Logger } from "../log.ts";
import type { RawMessage } from "./raw.ts";

/** A message as fetched, with its key (kept so a dead letter carries the original key). */
export interface ConsumedMessage extends RawMessage {
  key: Uint8Array | null;
}

export interface ConsumedBatch {
  topic: string;
  partition: number;
  messages: ConsumedMessage[];
  /** The partition's high watermark (offset of the next message to be written) when fetched. */
  highWatermark: string;
}

/** What a batch handler may do with the partition it is handling. */
export interface BatchContext {
  /** Marks messages up to and including `offset` as handled, so the next fetch starts after it. Not a commit. */
  resolve(offset: string): void;
  /** Commits `nextOffset` (the next message to read) for this partition. Throws CommitRejected during a rebalance. */
  commit(nextOffset: string): Promise<void>;
  /** Keeps the group session alive during long work. Throws CommitRejected when the group is rebalancing. */
  heartbeat(): Promise<void>;
  /** False once the consumer is stopping. */
  isRunning(): boolean;
}

/**
 * The group coordinator definitely refused an offset commit or heartbeat
 * because the group is rebalancing (or moved on to a new generation): nothing
 * was committed and this member may lose the partition.
 */
export class CommitRejected extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CommitRejected";
  }
}

export interface TopicConsumer {
  /** Stops fetching (backpressure); messages already fetched stay unprocessed and uncommitted. */
  pause(): void;
  resume(): void;
  /** True once the consumer has joined its group at least once. */
  assigned(): boolean;
  /** Finishes in-flight batches (the handler commits them), leaves the group, disconnects. */
  stop(): Promise<void>;
}

export interface ConsumerOptions {
  topic: string;
  cluster: KafkaClusterConfig;
  groupId: string;
  sessionTimeoutMs: number;
  fromBeginning: boolean;
  /** Longest a fetch waits for data (the batch time bound), ms. */
  maxWaitMs: number;
  /** Partition batches handled concurrently. */
  concurrency: number;
  log: Logger;
  onBatch(batch: ConsumedBatch, ctx: BatchContext): Promise<void>;
  /** This member's partitions of the topic after each group join. */
  onAssigned?(partitions: number[]): void;
}

export interface OutboundMessage {
  value: Uint8Array;
  key?: Uint8Array | null;
  headers?: Record<string, Uint8Array | string>;
}

export interface ClusterProducer {
  /** Resolves once every message is acknowledged by all in-sync replicas (acks = all). */
  send(topic: string, messages: OutboundMessage[]): Promise<void>;
  disconnect(): Promise<void>;
}

const GROUP_REJECTIONS = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"]);

/** kafkajs wraps protocol errors (retries exceeded, ...); find the protocol error type underneath. */
function protocolErrorType(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === "string") return type;
    e = (e as { originalError?: unknown; cause?: unknown }).originalError ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function asGroupRejection(err: unknown): unknown {
  const type = protocolErrorType(err);
  if (type && GROUP_REJECTIONS.has(type)) return new CommitRejected(type, { cause: err });
  return err;
}

function clientConfig(cluster: KafkaClusterConfig, clientId: string, log: Logger): KafkaConfig {
  const protocol = cluster.security_protocol;
  const useSsl = protocol === "ssl" || protocol === "sasl_ssl";
  const useSasl = protocol === "sasl_plaintext" || protocol === "sasl_ssl";
  const config: KafkaConfig = {
    clientId,
    brokers: cluster.address.split(",").map((b) => b.trim()).filter(Boolean),
    logLevel: KafkaLogLevel.WARN,
    // The client library's own lines: component kafka_client, so log_filter's librdkafka=<level> applies to them.
    logCreator: () => {
      const lib = log.child({ component: "kafka_client" });
      return (entry: LogEntry) => {
        const fields = { kafka_logger: entry.namespace, message: entry.log.message, error: entry.log.error };
        if (entry.level === KafkaLogLevel.ERROR) lib.warn("kafka_client", fields);
        else lib.debug("kafka_client", fields);
      };
    },
  };
  if (useSsl) {
    const read = (path: string | undefined) => (path ? readFileSync(path, "utf8") : undefined);
    const ca = read(cluster.ssl_ca_location);
    config.ssl = {
      ...(ca ? { ca: [ca] } : {}),
      ...(cluster.ssl_certificate_location ? { cert: read(cluster.ssl_certificate_location) } : {}),
      ...(cluster.ssl_key_location ? { key: read(cluster.ssl_key_location) } : {}),
    };
  }
  if (useSasl) {
    config.sasl = {
      mechanism: cluster.sasl_mechanism ?? "plain",
      username: cluster.sasl_username ?? "",
      password: cluster.sasl_password ?? "",
    } as SASLOptions;
  }
  return config;
}

function toBytes(v: Buffer | string | null | undefined): Uint8Array | null {
  if (v === null || v === undefined) return null;
  return typeof v === "string" ? new TextEncoder().encode(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function headerBytes(headers: IHeaders | undefined): Record<string, Uint8Array | null> {
  const out: Record<string, Uint8Array | null> = {};
  for (const [name, v] of Object.entries(headers ?? {})) {
    // A repeated header: the last value wins, as in a Python dict(headers).
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    out[name] = toBytes(last);
  }
  return out;
}

/** Subscribes one consumer (own Kafka instance, own group) to one topic and runs `onBatch` with manual commits. */
export async function startConsumer(opts: ConsumerOptions): Promise<TopicConsumer> {
  const kafka = new Kafka(clientConfig(opts.cluster, `taskbroker-${opts.topic}`, opts.log));
  const consumer: Consumer = kafka.consumer({
    groupId: opts.groupId,
    sessionTimeout: opts.sessionTimeoutMs,
    heartbeatInterval: Math.max(100, Math.min(3000, Math.floor(opts.sessionTimeoutMs / 3))),
    // The rebalance timeout bounds how long a member may take to finish its
    // in-flight batch before rejoining; a few session timeouts is plenty.
    rebalanceTimeout: Math.max(opts.sessionTimeoutMs * 2, 10_000),
    maxWaitTimeInMs: opts.maxWaitMs,
    allowAutoTopicCreation: false,
  });
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    joined = true;
    const partitions = e.payload.memberAssignment[opts.topic] ?? [];
    opts.log.info("kafka_group_joined", {
      topic: opts.topic,
      group: opts.groupId,
      partitions: partitions.join(","),
    });
    opts.onAssigned?.(partitions);
  });
  consumer.on(consumer.events.CRASH, (e) => {
    opts.log.error("kafka_consumer_crashed", { topic: opts.topic, error: e.payload.error, restart: e.payload.restart });
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [opts.topic], fromBeginning: opts.fromBeginning });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: opts.concurrency,
    eachBatch: async (p) => {
      const { batch } = p;
      const messages: ConsumedMessage[] = batch.messages.map((m) => ({
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        key: toBytes(m.key),
        value: toBytes(m.value),
        headers: headerBytes(m.headers),
        timestampMs: Number(m.timestamp) || 0,
      }));
      await opts.onBatch(
        { topic: batch.topic, partition: batch.partition, messages, highWatermark: batch.highWatermark },
        {
          resolve: (offset) => p.resolveOffset(offset),
          commit: async (nextOffset) => {
            try {
              await p.commitOffsetsIfNecessary({
                topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: nextOffset }] }],
              });
            } catch (err) {
              throw asGroupRejection(err);
            }
          },
          heartbeat: async () => {
            try {
              await p.heartbeat();
            } catch (err) {
              throw asGroupRejection(err);
            }
          },
          isRunning: () => p.isRunning(),
        },
      );
    },
  });
  return {
    pause: () => consumer.pause([{ topic: opts.topic }]),
    resume: () => consumer.resume([{ topic: opts.topic }]),
    assigned: () => joined,
    stop: () => consumer.disconnect(),
  };
}

/** One producer with acks = all; few client-side retries, since callers (upkeep) retry on their own schedule. */
export async function connectProducer(cluster: KafkaClusterConfig, log: Logger): Promise<ClusterProducer> {
  const kafka = new Kafka({
    ...clientConfig(cluster, "taskbroker-publisher", log),
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  return {
    async send(topic, messages) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.map((m) => ({
          value: Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength),
          key: m.key ? Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength) : null,
          headers: m.headers
            ? Object.fromEntries(
                Object.entries(m.headers).map(([k, v]) => [k, typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)]),
              )
            : undefined,
        })),
      });
    },
    disconnect: () => producer.disconnect(),
  };
}

/**
 * Creates the topics that do not exist yet. Not covered by the test suite:
 * librdkafka's mock cluster (2.0.2) does not implement CreateTopics (ApiVersions
 * omits key 19; a request is logged "unsupported" and never answered) and
 * reports controller id 0, which names none of its brokers (1..N), so kafkajs
 * fails with "Broker 0 not found" before sending anything. Returns the names created and,
 * when the cluster refused, why (callers log it; start-up goes on, since
 * a cluster with auto-creation or pre-created topics still works).
 */
export async function createMissingTopics(
  cluster: KafkaClusterConfig,
  topics: Array<{ topic: string; partitions: number }>,
  log: Logger,
): Promise<{ created: string[]; problem?: string }> {
  const admin = new Kafka(clientConfig(cluster, "taskbroker-admin", log)).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length === 0) return { created: [] };
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.partitions })),
    });
    return { created: missing.map((t) => t.topic) };
  } catch (err) {
    return { created: [], problem: err instanceof Error ? err.message : String(err) };
  } finally {
    await admin.disconnect();
  }
}

/** A producer for the SDK (producer/kafka.ts): plain broker list, the library's own logging off. */
export interface BatchProducer {
  /** Connects on first use; later calls share the same connection attempt. */
  connect(): Promise<void>;
  /** One request for messages to several topics; acks -1 waits for all in-sync replicas, 1 for the leader. */
  sendBatch(acks: -1 | 1, byTopic: ReadonlyMap<string, Uint8Array[]>): Promise<void>;
  disconnect(): Promise<void>;
}

export function createBatchProducer(opts: { brokers: string[]; clientId: string }): BatchProducer {
  const kafka = new Kafka({ clientId: opts.clientId, brokers: opts.brokers, logLevel: KafkaLogLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  let connected: Promise<void> | undefined;
  return {
    connect: () => (connected ??= producer.connect()),
    async sendBatch(acks, byTopic) {
      await producer.sendBatch({
        acks,
        topicMessages: [...byTopic].map(([topic, values]) => ({
          topic,
          messages: values.map((v) => ({ value: Buffer.from(v.buffer, v.byteOffset, v.byteLength) })),
        })),
      });
    },
    disconnect: () => producer.disconnect(),
  };
}
