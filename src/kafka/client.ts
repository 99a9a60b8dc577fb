// The only file that touches the Kafka client library (kafkajs), with its
// helper kafkajs-codecs.ts (compression codecs, undecodable batches): the
// broker's consumers and publisher, and the SDK's producer (sdk/kafka-producer.ts). Everything else in src/kafka/ speaks the
// small interfaces here, so the library can be replaced (kafkajs has had no
// release since 2023; docs/spec/facts.md) by rewriting these files alone.
//
// A consumer here is supervised: it connects, joins and re-joins in the
// background, is rebuilt after any crash (kafkajs gives up for good on errors
// it deems not retriable), never blocks start-up, and reports whether it is
// live (a response from Kafka within a few heartbeats) for readiness. Notes
// from docs/spec/facts.md: each consumer gets its own Kafka instance (two consumers of
// one instance can crash in offset resolution).
import { readFileSync } from "node:fs";
import kafkajs, {
  AssignerProtocol,
  Kafka,
  logLevel as KafkaLogLevel,
  type Consumer,
  type IHeaders,
  type KafkaConfig,
  type LogEntry,
  type PartitionAssigner,
  type Producer,
  type SASLOptions,
} from "kafkajs";
import type { KafkaClusterConfig } from "../config/broker.ts";
import type { Logger } from "../log.ts";
import { assignPartitions } from "./assignment.ts";
import type { CompressionType } from "./codecs.ts";
import { registerCodecs, UNDECODABLE_HEADER, undecodableBatchOf, type UndecodableBatchInfo } from "./kafkajs-codecs.ts";
import type { RawMessage } from "./raw.ts";

registerCodecs();

/** A message as fetched, with its key (kept so a dead letter carries the original key). */
export interface ConsumedMessage extends RawMessage {
  key: Uint8Array | null;
  /**
   * Set on the placeholders standing for a batch that could not be decoded
   * (kafkajs-codecs.ts): the first one's value is the raw record batch, the
   * others' null.
   */
  undecodableBatch?: UndecodableBatchInfo;
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

/** One consumer group's consumer (all of the group's topics). */
export interface TopicConsumer {
  topics: string[];
  /**
   * Stops fetching `topic` (backpressure) until resume(topic); messages already
   * fetched stay unprocessed and uncommitted. The wish is kept here and applied
   * again after every group join and rebuild.
   */
  pause(topic: string): void;
  resume(topic: string): void;
  /** True once the consumer has joined its group at least once. */
  assigned(): boolean;
  /** Live state for readiness. */
  status(): ConsumerStatus;
  /** Finishes in-flight batches (the handler commits them), leaves the group, disconnects. */
  stop(): Promise<void>;
}

export interface ConsumerOptions {
  groupId: string;
  /** Every topic this group consumes on this cluster. */
  topics: string[];
  cluster: KafkaClusterConfig;
  sessionTimeoutMs: number;
  /** Per topic: start a partition without a committed offset at the earliest (true) or latest offset. */
  fromBeginning(topic: string): boolean;
  /** Longest a fetch waits for data (the batch time bound), ms. */
  maxWaitMs: number;
  /** Partition batches handled concurrently. */
  concurrency: number;
  log: Logger;
  /** Called for every fetched batch of any of the topics (batch.topic says which). */
  onBatch(batch: ConsumedBatch, ctx: BatchContext): Promise<void>;
  /** This member's partitions of a topic after each group join. */
  onAssigned?(topic: string, partitions: number[]): void;
  /** After each group join (once per join, after onAssigned). */
  onJoined?(): void;
}

export interface OutboundMessage {
  value: Uint8Array;
  key?: Uint8Array | null;
  headers?: Record<string, Uint8Array | string>;
}

export interface ClusterProducer {
  /** Resolves once every message is acknowledged by all in-sync replicas (acks = all). */
  send(topic: string, messages: OutboundMessage[]): Promise<void>;
  isConnected(): boolean;
  disconnect(): Promise<void>;
}

/** A message above max_message_size: Kafka would refuse it, so it is never sent (a retry cannot help). */
export class MessageTooLarge extends Error {
  constructor(bytes: number, max: number) {
    super(`message of ${bytes} bytes exceeds max_message_size ${max}`);
    this.name = "MessageTooLarge";
  }
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

/** Kafka answered an offset commit with an error: the commit certainly did not happen (unlike a timeout). */
export class CommitRefused extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CommitRefused";
  }
}

function asGroupRejection(err: unknown): unknown {
  const type = protocolErrorType(err);
  if (type && GROUP_REJECTIONS.has(type)) return new CommitRejected(type, { cause: err });
  return err;
}

/** A commit's error: group rejection, refusal (an error code in Kafka's answer), or as is (timeout, connection). */
function asCommitError(err: unknown): unknown {
  const rejected = asGroupRejection(err);
  if (rejected !== err) return rejected;
  const type = protocolErrorType(err);
  // An error code from Kafka is a certain refusal, except REQUEST_TIMED_OUT (the
  // coordinator may still apply it); no code at all (a client-side timeout, a
  // dropped connection) is unknown too.
  if (type && type !== "REQUEST_TIMED_OUT") return new CommitRefused(type, { cause: err });
  return err;
}

function clientConfig(cluster: KafkaClusterConfig, clientId: string, log: Logger): KafkaConfig {
  const protocol = cluster.security_protocol;
  const useSsl = protocol === "ssl" || protocol === "sasl_ssl";
  const useSasl = protocol === "sasl_plaintext" || protocol === "sasl_ssl";
  const config: KafkaConfig = {
    clientId,
    brokers: cluster.address
      .split(",")
      .map((b) => b.trim())
      .filter(Boolean),
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

/** A group consumer's state, for readiness and the start-up log. */
export interface ConsumerStatus {
  /** Joined its group since the last (re)start, and Kafka answered within the liveness window. */
  ready: boolean;
  /** One line: "joined", "connecting", "joining", or why not ready. */
  detail: string;
}

/**
 * The assigners a group consumer offers, both assigning by subscription
 * (assignment.ts). "roundrobin" is librdkafka's name for the same strategy, so
 * upstream's brokers can share a group with ours during a migration;
 * "RoundRobinAssigner" is kafkajs's, which older versions of this broker offer.
 */
function subscriptionAssigners(): PartitionAssigner[] {
  const make =
    (name: string): PartitionAssigner =>
    ({ cluster }) => ({
      name,
      version: 0,
      async assign({ members, topics }) {
        const subscribed = members.map((m) => ({
          memberId: m.memberId,
          topics: AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.topics ?? [],
        }));
        const all = new Set([...topics, ...subscribed.flatMap((m) => m.topics)]);
        const partitions = new Map<string, number[]>();
        for (const topic of all) {
          try {
            partitions.set(
              topic,
              cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId),
            );
          } catch {
            // A topic only another member knows and this leader has no metadata for: left unassigned this round.
          }
        }
        const assignment = assignPartitions(subscribed, partitions);
        return members.map((m) => ({
          memberId: m.memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({
            version: 0,
            assignment: Object.fromEntries(assignment.get(m.memberId) ?? new Map()),
            userData: Buffer.alloc(0),
          }),
        }));
      },
      protocol({ topics }) {
        return {
          name,
          metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
        };
      },
    });
  return [make("roundrobin"), make("RoundRobinAssigner")];
}

/** How long stop() waits for a consumer that has not joined its group to disconnect. */
const JOINING_LEAVE_WAIT_MS = 2_000;
/** Backoff between rebuilds of a consumer that crashed or could not connect: doubling from the first, capped at the second. */
const RESTART_MS = [500, 5_000] as const;

function convertBatch(batch: {
  topic: string;
  partition: number;
  highWatermark: string;
  messages: Array<{ offset: string; key: Buffer | null; value: Buffer | null; headers?: IHeaders; timestamp: string }>;
}): ConsumedBatch {
  const messages: ConsumedMessage[] = batch.messages.map((m) => {
    const headers = headerBytes(m.headers);
    const message: ConsumedMessage = {
      topic: batch.topic,
      partition: batch.partition,
      offset: m.offset,
      key: toBytes(m.key),
      value: toBytes(m.value),
      headers,
      timestampMs: Number(m.timestamp) || 0,
    };
    const undecodable = undecodableBatchOf(headers[UNDECODABLE_HEADER], message.value);
    if (undecodable) {
      message.undecodableBatch = undecodable;
      delete message.headers[UNDECODABLE_HEADER];
    }
    return message;
  });
  return { topic: batch.topic, partition: batch.partition, messages, highWatermark: batch.highWatermark };
}

/**
 * Runs one consumer group (own Kafka instance) over `topics` with manual
 * commits, in the background: returns at once; connecting, joining and every
 * rebuild after a crash happen behind it.
 */
export function startGroupConsumer(opts: ConsumerOptions): TopicConsumer {
  const log = opts.log.child({ group: opts.groupId });
  const heartbeatMs = Math.max(100, Math.min(3000, Math.floor(opts.sessionTimeoutMs / 3)));
  /** No answer from Kafka for this long: not live (a few heartbeats or fetch waits). */
  const liveWindowMs = Math.max(2 * heartbeatMs, 2 * opts.maxWaitMs) + 1000;
  let current: Consumer | null = null;
  let stopping = false;
  let restartTimer: ReturnType<typeof setTimeout> | null = null;
  let failures = 0;
  let joined = false;
  let everJoined = false;
  let lastAnswerAt = 0;
  let problem = "connecting";
  /** Topics the pipeline wants paused; re-applied after every join (kafkajs keeps or drops pauses across rejoins and rebuilds). */
  const pausedTopics = new Set<string>();

  const apply = (c: Consumer | null) => {
    if (!c) return;
    for (const topic of opts.topics) {
      try {
        if (pausedTopics.has(topic)) c.pause([{ topic }]);
        else c.resume([{ topic }]);
      } catch {
        // Not running yet (between a crash and its rebuild): applied after the next join.
      }
    }
  };

  const scheduleRebuild = (why: string) => {
    joined = false;
    problem = why;
    if (stopping || restartTimer) return;
    const waitMs = Math.min(RESTART_MS[0] * 2 ** Math.min(failures, 10), RESTART_MS[1]);
    failures++;
    restartTimer = setTimeout(() => {
      restartTimer = null;
      void build();
    }, waitMs);
    log.warn("kafka_consumer_restarting", { topics: opts.topics.join(","), in_ms: waitMs, reason: why });
  };

  const build = async () => {
    if (stopping) return;
    const old = current;
    current = null;
    if (old) await old.disconnect().catch(() => {});
    const kafka = new Kafka(clientConfig(opts.cluster, `taskbroker-${opts.groupId}`, log));
    const consumer: Consumer = kafka.consumer({
      groupId: opts.groupId,
      sessionTimeout: opts.sessionTimeoutMs,
      heartbeatInterval: heartbeatMs,
      // The rebalance timeout bounds how long a member may take to finish its
      // in-flight batch before rejoining; a few session timeouts is plenty.
      rebalanceTimeout: Math.max(opts.sessionTimeoutMs * 2, 10_000),
      maxWaitTimeInMs: opts.maxWaitMs,
      allowAutoTopicCreation: false,
      partitionAssigners: subscriptionAssigners(),
    });
    current = consumer;
    joined = false;
    consumer.on(consumer.events.REQUEST, () => {
      lastAnswerAt = Date.now();
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (current !== consumer) return;
      joined = true;
      everJoined = true;
      failures = 0;
      problem = "joined";
      lastAnswerAt = Date.now();
      const assignment = e.payload.memberAssignment;
      log.info("kafka_group_joined", {
        topics: opts.topics.join(","),
        partitions: opts.topics.map((t) => `${t}:${(assignment[t] ?? []).join("|")}`).join(","),
        // Kept for operators' log queries of the single-topic form.
        ...(opts.topics.length === 1 ? { topic: opts.topics[0] } : {}),
      });
      apply(consumer);
      for (const topic of opts.topics) opts.onAssigned?.(topic, assignment[topic] ?? []);
      opts.onJoined?.();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (current !== consumer) return;
      const error = e.payload.error;
      log.error("kafka_consumer_crashed", { topics: opts.topics.join(","), error, restart: e.payload.restart });
      joined = false;
      problem = `crashed: ${error instanceof Error ? error.message : String(error)}`;
      // kafkajs restarts by itself after a retriable error; anything else would stop this group for good.
      if (!e.payload.restart) scheduleRebuild(problem);
    });
    try {
      await consumer.connect();
      for (const t of opts.topics) {
        await consumer.subscribe({ topics: [t], fromBeginning: opts.fromBeginning(t) });
      }
      problem = "joining";
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: opts.concurrency,
        eachBatch: async (p) => {
          const { batch } = p;
          await opts.onBatch(convertBatch(batch), {
            resolve: (offset) => p.resolveOffset(offset),
            commit: async (nextOffset) => {
              try {
                await p.commitOffsetsIfNecessary({
                  topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: nextOffset }] }],
                });
              } catch (err) {
                throw asCommitError(err);
              }
            },
            heartbeat: async () => {
              try {
                await p.heartbeat();
              } catch (err) {
                throw asGroupRejection(err);
              }
            },
            isRunning: () => p.isRunning() && !stopping,
          });
        },
      });
    } catch (err) {
      if (current !== consumer) return;
      scheduleRebuild(`cannot connect: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  void build();

  return {
    topics: opts.topics,
    pause(topic) {
      pausedTopics.add(topic);
      apply(current);
    },
    resume(topic) {
      pausedTopics.delete(topic);
      apply(current);
    },
    assigned: () => everJoined,
    status(): ConsumerStatus {
      if (!joined) return { ready: false, detail: problem };
      const silentMs = Date.now() - lastAnswerAt;
      if (silentMs > liveWindowMs) return { ready: false, detail: `no answer from Kafka for ${silentMs} ms` };
      return { ready: true, detail: "joined" };
    },
    async stop() {
      stopping = true;
      if (restartTimer) clearTimeout(restartTimer);
      restartTimer = null;
      const c = current;
      current = null;
      if (!c) return;
      const leaving = c.disconnect().catch(() => {});
      if (joined) {
        await leaving;
        return;
      }
      // Still joining: nothing was consumed, so nothing is left to finish or commit. kafkajs's
      // disconnect would wait for the pending JoinGroup, which the coordinator holds until every
      // old member rejoined or its session expired (a minute in self-hosted after a kill -9);
      // librdkafka's close (the reference's) returns at once there, so stop waiting soon.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        leaving,
        new Promise<void>((resolve) => (timer = setTimeout(resolve, JOINING_LEAVE_WAIT_MS))),
      ]);
      clearTimeout(timer);
    },
  };
}

// Through the default export: Node cannot see this CommonJS export by name.
const { CompressionTypes } = kafkajs;
const COMPRESSION: Record<CompressionType, (typeof CompressionTypes)[keyof typeof CompressionTypes]> = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};

/**
 * One producer with acks = all; few client-side retries, since callers
 * (upkeep, the pipeline) retry on their own schedule. Connects in the
 * background and keeps trying: a send while Kafka is unreachable fails at
 * once (the caller retries later), it never blocks start-up.
 */
export function createProducer(
  cluster: KafkaClusterConfig,
  compressionOf: (topic: string) => CompressionType,
  log: Logger,
  limits: { sendTimeoutMs: number; maxMessageBytes: number },
): ClusterProducer {
  const kafka = new Kafka({
    ...clientConfig(cluster, "taskbroker-publisher", log),
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false });
  let connected = false;
  let closed = false;
  let connecting: Promise<void> | null = null;
  let failures = 0;
  let lastError = "connecting";
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  producer.on(producer.events.DISCONNECT, () => {
    connected = false;
  });
  const connect = (): Promise<void> => {
    connecting ??= producer
      .connect()
      .then(() => {
        connected = true;
        failures = 0;
      })
      .catch((err) => {
        lastError = err instanceof Error ? err.message : String(err);
        if (!closed && !retryTimer) {
          const waitMs = Math.min(RESTART_MS[0] * 2 ** Math.min(failures++, 10), RESTART_MS[1]);
          retryTimer = setTimeout(() => {
            retryTimer = null;
            void connect();
          }, waitMs);
        }
      })
      .finally(() => {
        connecting = null;
      });
    return connecting;
  };
  void connect();
  return {
    async send(topic, messages) {
      const big = messages.find((m) => m.value.byteLength > limits.maxMessageBytes);
      if (big) throw new MessageTooLarge(big.value.byteLength, limits.maxMessageBytes);
      if (!connected) {
        await connect();
        if (!connected) throw new Error(`Kafka producer not connected: ${lastError}`);
      }
      await producer.send({
        topic,
        acks: -1,
        // kafka_send_timeout_ms: how long Kafka may take to have the message on all in-sync replicas.
        timeout: limits.sendTimeoutMs,
        compression: COMPRESSION[compressionOf(topic)],
        messages: messages.map((m) => ({
          value: Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength),
          key: m.key ? Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength) : null,
          headers: m.headers
            ? Object.fromEntries(
                Object.entries(m.headers).map(([k, v]) => [
                  k,
                  typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength),
                ]),
              )
            : undefined,
        })),
      });
    },
    isConnected: () => connected,
    async disconnect() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      await producer.disconnect().catch(() => {});
    },
  };
}

/** The group's committed next offset per partition of `topic` (-1: none), read with an admin client. */
export async function committedOffsets(
  cluster: KafkaClusterConfig,
  groupId: string,
  topics: string[],
  log: Logger,
): Promise<Map<string, Map<number, bigint>>> {
  const admin = new Kafka({ ...clientConfig(cluster, "taskbroker-offsets", log), retry: { retries: 1 } }).admin();
  await admin.connect();
  try {
    const out = new Map<string, Map<number, bigint>>();
    for (const t of await admin.fetchOffsets({ groupId, topics })) {
      out.set(t.topic, new Map(t.partitions.map((p) => [p.partition, BigInt(p.offset)])));
    }
    return out;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Checks that a topic exists (metadata only, no group join): upstream's consumer_disabled. Throws why not. */
export async function checkTopic(cluster: KafkaClusterConfig, topic: string, log: Logger): Promise<number> {
  const admin = new Kafka({ ...clientConfig(cluster, "taskbroker-check", log), retry: { retries: 1 } }).admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    return topics[0]?.partitions.length ?? 0;
  } finally {
    await admin.disconnect().catch(() => {});
  }
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

/** A producer for the SDK (sdk/kafka-producer.ts): plain broker list, the library's own logging off. */
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
