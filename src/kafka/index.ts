// Kafka for the broker: start-up (create missing topics, one producer, one
// consumer group per consumed topic feeding the durable-then-commit pipeline)
// and shutdown (finish and commit in-flight batches, leave the groups, flush
// the producer). The broker composition (src/broker.ts) calls startKafka when
// kafka_topics is non-empty and hands `publisher` to upkeep.
import type { BrokerConfig } from "../config/broker.ts";
import type { Logger } from "../log.ts";
import { createMissingTopics, connectProducer, startConsumer, type TopicConsumer } from "./client.ts";
import { createLagTracker } from "./lag.ts";
import { createBatchHandler, type DemotionLookup, type IngestPort } from "./pipeline.ts";
import { kafkaPlan } from "../config/kafka.ts";
import type { InflightStore, KafkaOrigin } from "../store/types.ts";
import { createKafkaPublisher, type KafkaPublisher } from "./publisher.ts";

export { kafkaPlan, type KafkaPlan } from "../config/kafka.ts";
export type { KafkaPublisher } from "./publisher.ts";
export type { DemotionLookup, IngestPort } from "./pipeline.ts";

export interface KafkaRuntime {
  /** Retry and dead-letter publishing for upkeep (an UpkeepPublisher). */
  publisher: KafkaPublisher;
  /** True once every consumer has joined its group (readiness). */
  assigned(): boolean;
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
  store: Pick<InflightStore, "discardUncommitted">;
  log: Logger;
  /**
   * Runtime config (src/runtime): activations of a demoted namespace are
   * forwarded to its topic by the publisher's producer instead of stored.
   */
  runtime?: DemotionLookup;
}

/** Partition batches of one topic handled at once: overlaps one partition's commit with another's insert. */
const PARTITIONS_CONCURRENTLY = 3;
const BACKPRESSURE_RETRY_MS = 100;

/** Throws ConfigError (one line) when the topic rules (config/kafka.ts) are broken. */
export async function startKafka(opts: StartKafkaOptions): Promise<KafkaRuntime> {
  const { config } = opts;
  const log = opts.log.child({ component: "kafka" });
  const plan = kafkaPlan(config);

  if (config.create_missing_topics) {
    const byCluster = new Map<string, typeof plan.declared>();
    for (const d of plan.declared) byCluster.set(d.clusterName, [...(byCluster.get(d.clusterName) ?? []), d]);
    for (const [clusterName, topics] of byCluster) {
      const { created, problem } = await createMissingTopics(topics[0]!.cluster, topics, log);
      if (created.length) log.info("kafka_topics_created", { cluster: clusterName, topics: created.join(",") });
      if (problem) log.warn("kafka_create_topics_failed", { cluster: clusterName, error: problem });
    }
  }

  const producer = await connectProducer(plan.publishCluster, log);
  const publisher = createKafkaPublisher({
    producer,
    retryTopic: plan.retryTopic,
    deadletterTopic: plan.deadletterTopic,
    log,
  });

  const consumers: TopicConsumer[] = [];
  const discard = (origins: KafkaOrigin[]) => opts.store.discardUncommitted(origins);
  try {
    for (const t of plan.consumed) {
      let consumer: TopicConsumer | undefined;
      const lag = createLagTracker(t.topic);
      const onBatch = createBatchHandler({
        topic: t.topic,
        raw: t.raw,
        ingest: opts.ingest,
        deadLetter: (messages) => publisher.publishUndecodable(messages),
        demotion: opts.runtime,
        forward: (topic, message) => publisher.publishDemoted(topic, message),
        lag,
        discardUncommitted: discard,
        pause: () => consumer?.pause(),
        resume: () => consumer?.resume(),
        batchMaxRows: config.store.insert_batch_max_length,
        batchMaxBytes: config.store.insert_batch_max_bytes,
        backpressureRetryMs: BACKPRESSURE_RETRY_MS,
        log,
      });
      consumer = await startConsumer({
        topic: t.topic,
        cluster: t.cluster,
        groupId: t.groupId,
        sessionTimeoutMs: t.sessionTimeoutMs,
        fromBeginning: t.fromBeginning,
        maxWaitMs: Math.max(10, Math.min(config.store.insert_batch_max_time_ms, 5000)),
        concurrency: PARTITIONS_CONCURRENTLY,
        log,
        onBatch,
        onAssigned: (partitions) => lag.assigned(partitions),
      });
      consumers.push(consumer);
      log.info("kafka_consuming", { topic: t.topic, cluster: t.clusterName, group: t.groupId, raw: t.raw?.mode ?? "no" });
    }
  } catch (err) {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    await publisher.close().catch(() => {});
    throw err;
  }
  log.info("kafka_started", {
    consumed: plan.consumed.map((c) => c.topic).join(","),
    retry_topic: plan.retryTopic,
    deadletter_topic: plan.deadletterTopic,
  });

  return {
    publisher,
    assigned: () => consumers.every((c) => c.assigned()),
    async stop() {
      await Promise.allSettled(consumers.map((c) => c.stop()));
      await publisher.close();
      log.info("kafka_stopped");
    },
  };
}
