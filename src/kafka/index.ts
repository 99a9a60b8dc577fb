// Kafka for the broker: start-up (create missing topics, one producer, one
// consumer per consumer group - a group may consume several topics - each
// topic feeding its durable-then-commit pipeline), readiness, and shutdown
// (finish and commit in-flight batches, leave the groups, flush the
// producer). Nothing here waits for Kafka: the broker serves its stored rows
// while Kafka is away, and everything connects in the background. The broker
// composition (src/broker.ts) calls startKafka when kafka_topics is non-empty
// and hands `publisher` to upkeep.
import type { BrokerConfig, KafkaClusterConfig } from "../config/broker.ts";
import type { Logger } from "../log.ts";
import {
  checkTopic,
  committedOffsets,
  createMissingTopics,
  createProducer,
  startGroupConsumer,
  type BatchContext,
  type ConsumedBatch,
  type TopicConsumer,
} from "./client.ts";
import type { CompressionType } from "./codecs.ts";
import { createLagTracker, type LagTracker } from "./lag.ts";
import { createBatchHandler, type DemotionLookup, type IngestPort, type UndecodableBatchReport } from "./pipeline.ts";
import { kafkaMessagesTotal } from "./metrics.ts";
import { kafkaPlan, type ConsumerGroupPlan, type KafkaPlan } from "../config/kafka.ts";
import type { InflightStore, KafkaOrigin } from "../store/types.ts";
import { createKafkaPublisher, type KafkaPublisher } from "./publisher.ts";

export { kafkaPlan, type KafkaPlan } from "../config/kafka.ts";
export type { KafkaPublisher } from "./publisher.ts";
export type { DemotionLookup, IngestPort } from "./pipeline.ts";

export interface KafkaRuntime {
  /** Retry and dead-letter publishing for upkeep (an UpkeepPublisher). */
  publisher: KafkaPublisher;
  /** The topics this broker consumes, with their cluster's address (runtime demotion's loop guard). */
  consumed: Array<{ topic: string; address: string }>;
  /** The bootstrap address demoted activations go to, given demoted_topic_cluster (null: the producer's). */
  demotionAddress(cluster: string | null): string;
  /** True once every consumer group has joined at least once. */
  assigned(): boolean;
  /**
   * Readiness: every consumer group joined and heard from Kafka recently.
   * `detail` says which group is not and why, and the last undecodable batch.
   */
  status(): { ready: boolean; detail: string };
  /** Finishes and commits in-flight batches, leaves the groups, then closes the producer. */
  stop(): Promise<void>;
}

export interface StartKafkaOptions {
  config: BrokerConfig;
  ingest: IngestPort;
  /**
   * The inflight store: rows whose offset commit a rebalance rejected are taken
   * back through `discardUncommitted`, so the partition's next owner stores them.
   */
  store: Pick<
    InflightStore,
    | "discardUncommitted"
    | "kafkaCommitting"
    | "kafkaCommitted"
    | "kafkaCommitFailed"
    | "reconcileKafkaCommits"
    | "releaseKafkaTopicsExcept"
  >;
  log: Logger;
  /**
   * Runtime config (src/runtime): activations of a demoted namespace are
   * forwarded to its topic by the publisher's producer instead of stored.
   */
  runtime?: DemotionLookup;
}

/**
 * demoted_topic_cluster resolved: a configured cluster by name (with its own
 * credentials), else a bootstrap address reached with the producer cluster's
 * credentials, as the reference broker does.
 */
function demotionCluster(config: BrokerConfig, plan: KafkaPlan, cluster: string): KafkaClusterConfig {
  return config.kafka_clusters[cluster] ?? { ...plan.publishCluster, address: cluster };
}

/** Partition batches of one group handled at once: overlaps one partition's commit with another's insert. */
const PARTITIONS_CONCURRENTLY = 3;
const BACKPRESSURE_RETRY_MS = 100;
/** Backoff for start-up steps that need Kafka (topic creation, topic checks): doubling from the first, capped at the second. */
const STARTUP_RETRY_MS = [500, 5_000] as const;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts Kafka for the broker without waiting for Kafka: the plan is checked
 * (throws ConfigError, one line, when the topic rules of config/kafka.ts are
 * broken), then the producer, topic creation, topic checks and every consumer
 * group connect and join concurrently in the background, retrying while Kafka
 * is unreachable. Readiness (`status`) tells when they have joined.
 */
export async function startKafka(opts: StartKafkaOptions): Promise<KafkaRuntime> {
  const { config } = opts;
  const log = opts.log.child({ component: "kafka" });
  const plan = kafkaPlan(config);
  let stopping = false;

  const compressionOf = (topic: string): CompressionType => config.kafka_topics[topic]?.compression_type ?? "none";
  const limits = { sendTimeoutMs: plan.sendTimeoutMs, maxMessageBytes: plan.maxMessageBytes };
  const producer = createProducer(plan.publishCluster, compressionOf, log, limits);
  const publisher = createKafkaPublisher({
    producer,
    retryTopic: plan.retryTopic,
    deadletterTopic: plan.deadletterTopic,
    maxMessageBytes: plan.maxMessageBytes,
    log,
    // Runtime config demotion to another cluster (demoted_topic_cluster): its own producer.
    producerFor: (cluster) => {
      const target = demotionCluster(config, plan, cluster);
      return target.address === plan.publishCluster.address
        ? null
        : Promise.resolve(createProducer(target, compressionOf, log, limits));
    },
  });

  /** Runs `step` until it resolves or the broker stops; false when stopped first. */
  const untilDone = async (what: string, step: () => Promise<void>): Promise<boolean> => {
    for (let attempt = 0; !stopping; attempt++) {
      try {
        await step();
        return true;
      } catch (err) {
        const waitMs = Math.min(STARTUP_RETRY_MS[0] * 2 ** Math.min(attempt, 10), STARTUP_RETRY_MS[1]);
        log.warn("kafka_startup_retry", { step: what, attempt: attempt + 1, retry_in_ms: waitMs, error: err });
        await sleep(waitMs);
      }
    }
    return false;
  };

  const lastUndecodable: { report: UndecodableBatchReport | null; count: number } = { report: null, count: 0 };
  const discard = (origins: KafkaOrigin[]) => opts.store.discardUncommitted(origins);
  const consumers: TopicConsumer[] = [];

  /**
   * After each join: the group's committed offsets from Kafka. Completed rows
   * below them are released for cleanup, and rows this broker stored but never
   * committed that another member has since committed past are dropped (that
   * member stored them too). Best effort: a failure only delays the cleanup.
   */
  const reconcile = async (g: ConsumerGroupPlan) => {
    try {
      const byTopic = await committedOffsets(
        g.cluster,
        g.groupId,
        g.topics.map((t) => t.topic),
        log,
      );
      const commits = [...byTopic].flatMap(([topic, parts]) =>
        [...parts].map(([partition, next]) => ({ topic, partition, next: String(next) })),
      );
      const dropped = opts.store.reconcileKafkaCommits(commits);
      if (dropped > 0) {
        kafkaMessagesTotal.inc({ topic: g.topics[0]!.topic, result: "reconsumed_elsewhere" }, dropped);
        log.warn("kafka_rows_consumed_elsewhere", { group: g.groupId, rows_dropped: dropped });
      }
    } catch (err) {
      log.warn("kafka_offsets_unavailable", { group: g.groupId, error: err });
    }
  };
  opts.store.releaseKafkaTopicsExcept(plan.consumed.map((c) => c.topic));

  const startGroup = (g: ConsumerGroupPlan) => {
    let consumer: TopicConsumer | undefined;
    const handlers = new Map<string, (batch: ConsumedBatch, ctx: BatchContext) => Promise<void>>();
    const lags = new Map<string, LagTracker>();
    for (const t of g.topics) {
      const lag = createLagTracker(t.topic);
      lags.set(t.topic, lag);
      handlers.set(
        t.topic,
        createBatchHandler({
          topic: t.topic,
          raw: t.raw,
          ingest: opts.ingest,
          deadLetter: (messages) => publisher.publishUndecodable(messages),
          demotion: opts.runtime,
          forward: (topic, message) => publisher.publishDemoted(topic, message, opts.runtime?.demotedCluster()),
          lag,
          discardUncommitted: discard,
          offsets: {
            committing: (topic, partition, next) => opts.store.kafkaCommitting(topic, partition, next),
            committed: (topic, partition, next) => opts.store.kafkaCommitted(topic, partition, next),
            commitFailed: (topic, partition) => opts.store.kafkaCommitFailed(topic, partition),
          },
          pause: () => consumer?.pause(t.topic),
          resume: () => consumer?.resume(t.topic),
          onUndecodableBatch: (report) => {
            lastUndecodable.report = report;
            lastUndecodable.count++;
          },
          batchMaxRows: config.store.insert_batch_max_length,
          batchMaxBytes: config.store.insert_batch_max_bytes,
          backpressureRetryMs: BACKPRESSURE_RETRY_MS,
          insertFailureBackoffMs: plan.insertFailureBackoffMs,
          log,
        }),
      );
    }
    const fromBeginning = new Map(g.topics.map((t) => [t.topic, t.fromBeginning]));
    consumer = startGroupConsumer({
      groupId: g.groupId,
      topics: g.topics.map((t) => t.topic),
      cluster: g.cluster,
      sessionTimeoutMs: g.sessionTimeoutMs,
      fromBeginning: (topic) => fromBeginning.get(topic) ?? true,
      maxWaitMs: Math.max(10, Math.min(config.store.insert_batch_max_time_ms, 5000)),
      concurrency: PARTITIONS_CONCURRENTLY,
      log,
      onBatch: (batch, ctx) => handlers.get(batch.topic)!(batch, ctx),
      onAssigned: (topic, partitions) => lags.get(topic)?.assigned(partitions),
      onJoined: () => void reconcile(g),
    });
    consumers.push(consumer);
    log.info("kafka_consuming", {
      group: g.groupId,
      cluster: g.clusterName,
      topics: g.topics.map((t) => t.topic).join(","),
      raw:
        g.topics
          .filter((t) => t.raw)
          .map((t) => t.topic)
          .join(",") || "no",
    });
  };

  // Per cluster: create missing topics first (when asked), then join that cluster's groups, all concurrently.
  const clusters = new Set([...plan.groups.map((g) => g.clusterName), ...plan.declared.map((d) => d.clusterName)]);
  const background: Promise<unknown>[] = [];
  for (const clusterName of clusters) {
    background.push(
      (async () => {
        const declared = plan.declared.filter((d) => d.clusterName === clusterName);
        if (config.create_missing_topics && declared.length > 0) {
          const ok = await untilDone(`create topics on ${clusterName}`, async () => {
            const { created, problem } = await createMissingTopics(declared[0]!.cluster, declared, log);
            if (created.length) log.info("kafka_topics_created", { cluster: clusterName, topics: created.join(",") });
            if (problem) log.warn("kafka_create_topics_failed", { cluster: clusterName, error: problem });
          });
          if (!ok) return;
        }
        for (const g of plan.groups) if (g.clusterName === clusterName && !stopping) startGroup(g);
      })(),
    );
  }
  for (const d of plan.disabled) {
    background.push(
      untilDone(`check topic ${d.topic}`, async () => {
        const partitions = await checkTopic(d.cluster, d.topic, log);
        log.info("kafka_consumer_disabled", { topic: d.topic, cluster: d.clusterName, partitions });
      }),
    );
  }
  log.info("kafka_started", {
    groups: plan.groups.map((g) => `${g.groupId}=${g.topics.map((t) => t.topic).join("+")}`).join(","),
    consumer_disabled: plan.disabled.map((d) => d.topic).join(",") || "none",
    retry_topic: plan.retryTopic,
    deadletter_topic: plan.deadletterTopic,
  });

  return {
    publisher,
    consumed: plan.consumed.map((c) => ({ topic: c.topic, address: c.cluster.address })),
    demotionAddress: (cluster) =>
      cluster ? demotionCluster(config, plan, cluster).address : plan.publishCluster.address,
    assigned: () => consumers.length === plan.groups.length && consumers.every((c) => c.assigned()),
    status() {
      const waiting: string[] = [];
      const started = new Set(consumers.flatMap((c) => c.topics));
      for (const g of plan.groups) {
        if (!g.topics.some((t) => started.has(t.topic)))
          waiting.push(`group ${g.groupId}: not started (creating topics)`);
      }
      for (const c of consumers) {
        const s = c.status();
        if (!s.ready) waiting.push(`${c.topics.join("+")}: ${s.detail}`);
      }
      const ready = waiting.length === 0;
      let detail = ready ? `${plan.groups.length} consumer group(s) joined` : waiting.join("; ");
      const u = lastUndecodable.report;
      if (u) {
        detail += `; ${lastUndecodable.count} undecodable batch(es) dead-lettered, last ${u.topic}[${u.partition}] offsets ${u.firstOffset}-${u.lastOffset} (${u.codec}: ${u.reason})`;
      }
      return { ready, detail };
    },
    async stop() {
      stopping = true;
      await Promise.allSettled(consumers.map((c) => c.stop()));
      await publisher.close();
      log.info("kafka_stopped");
    },
  };
}
