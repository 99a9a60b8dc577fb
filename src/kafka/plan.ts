// What the broker does with Kafka, resolved once from the configuration:
// which topics are consumed (group, session timeout, offset reset, raw spec),
// where retries and dead letters go, and which topics create_missing_topics
// creates. Pure; every rule of broker.md "Kafka" that can be checked before
// connecting is checked here and reported as one line.
import type { BrokerConfig, KafkaClusterConfig } from "../config/broker.ts";
import type { RawTopicSpec } from "./raw.ts";

export class KafkaConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KafkaConfigError";
  }
}

export interface ConsumedTopic {
  topic: string;
  clusterName: string;
  cluster: KafkaClusterConfig;
  groupId: string;
  /** Default 30 s (kafkajs). Short in tests so a dead member is replaced quickly. */
  sessionTimeoutMs: number;
  /** auto_offset_reset: earliest (default here) or latest. */
  fromBeginning: boolean;
  raw: RawTopicSpec | undefined;
}

export interface KafkaPlan {
  consumed: ConsumedTopic[];
  retryTopic: string;
  deadletterTopic: string;
  /** The one cluster holding the retry and dead-letter topics (one producer). */
  publishClusterName: string;
  publishCluster: KafkaClusterConfig;
  /** Every declared topic plus retry and dead-letter topics, by cluster. */
  declared: Array<{ clusterName: string; cluster: KafkaClusterConfig; topic: string; partitions: number }>;
}

const DEFAULT_SESSION_TIMEOUT_MS = 30_000;

const envTopic = (topic: string, field: string) =>
  `TASKBROKER_KAFKA_TOPICS__${topic.toUpperCase().replace(/[^A-Z0-9]/g, "_")}__${field.toUpperCase()}`;

/** Resolves the plan; throws KafkaConfigError naming the setting at fault. */
export function kafkaPlan(config: BrokerConfig): KafkaPlan {
  const topics = config.kafka_topics;
  const clusterOf = (clusterName: string, setting: string): KafkaClusterConfig => {
    const c = config.kafka_clusters[clusterName];
    if (!c) {
      throw new KafkaConfigError(
        `${setting}=${clusterName} is invalid: expected a configured Kafka cluster (set TASKBROKER_KAFKA_CLUSTERS__${clusterName.toUpperCase()}__ADDRESS)`,
      );
    }
    return c;
  };

  const consumed: ConsumedTopic[] = [];
  const groups = new Map<string, string>();
  for (const [topic, t] of Object.entries(topics)) {
    const cluster = clusterOf(t.cluster, envTopic(topic, "cluster"));
    if (!t.consume) continue;
    const groupId = t.consumer_group ?? `taskbroker-${topic}`;
    const other = groups.get(groupId);
    if (other !== undefined) {
      // One group per topic: two consumers of one group with different
      // subscriptions would keep taking partitions from each other.
      throw new KafkaConfigError(
        `${envTopic(topic, "consumer_group")}=${groupId} is invalid: expected a consumer group not shared with topic ${other}`,
      );
    }
    groups.set(groupId, topic);
    if (t.raw?.mode === "headers" && Object.keys(t.raw.header_kwargs).length === 0) {
      throw new KafkaConfigError(
        `${envTopic(topic, "raw__header_kwargs")} is unset: expected the operations and header decoders of a headers-mode raw topic`,
      );
    }
    consumed.push({
      topic,
      clusterName: t.cluster,
      cluster,
      groupId,
      sessionTimeoutMs: t.session_timeout_ms ?? DEFAULT_SESSION_TIMEOUT_MS,
      fromBeginning: (t.auto_offset_reset ?? "earliest") === "earliest",
      raw: t.raw,
    });
  }

  let retryTopic = config.kafka_retry_topic;
  if (!retryTopic) {
    if (consumed.length !== 1) {
      throw new KafkaConfigError(
        `TASKBROKER_KAFKA_RETRY_TOPIC is unset: expected a retry topic when ${consumed.length} topics are consumed${
          consumed.length ? ` (${consumed.map((c) => c.topic).join(", ")})` : ""
        }`,
      );
    }
    retryTopic = consumed[0]!.topic;
  }
  if (topics[retryTopic]?.raw) {
    throw new KafkaConfigError(
      `TASKBROKER_KAFKA_RETRY_TOPIC=${retryTopic} is invalid: expected a topic of TaskActivations, not a raw topic`,
    );
  }
  const deadletterTopic = config.kafka_deadletter_topic;
  if (topics[deadletterTopic]?.consume) {
    throw new KafkaConfigError(
      `${envTopic(deadletterTopic, "consume")}=true is invalid: the dead-letter topic must not be consumed (dead letters would run again)`,
    );
  }

  // Undeclared retry/dead-letter topics live on the cluster of the consumed topics.
  const fallbackCluster = consumed[0]?.clusterName ?? Object.values(topics)[0]?.cluster ?? "default";
  const retryCluster = topics[retryTopic]?.cluster ?? fallbackCluster;
  const dlqCluster = topics[deadletterTopic]?.cluster ?? fallbackCluster;
  if (retryCluster !== dlqCluster) {
    throw new KafkaConfigError(
      `${envTopic(deadletterTopic, "cluster")}=${dlqCluster} is invalid: expected the retry topic's cluster ${retryCluster} (one producer publishes both)`,
    );
  }
  const publishCluster = clusterOf(retryCluster, envTopic(retryTopic, "cluster"));

  const declared: KafkaPlan["declared"] = Object.entries(topics).map(([topic, t]) => ({
    clusterName: t.cluster,
    cluster: config.kafka_clusters[t.cluster]!,
    topic,
    partitions: t.partitions,
  }));
  for (const topic of [retryTopic, deadletterTopic]) {
    if (!topics[topic]) declared.push({ clusterName: retryCluster, cluster: publishCluster, topic, partitions: 1 });
  }

  return { consumed, retryTopic, deadletterTopic, publishClusterName: retryCluster, publishCluster, declared };
}

/** One line describing what is wrong with the Kafka settings, or null (for load-time checks). */
export function kafkaConfigProblem(config: BrokerConfig): string | null {
  if (Object.keys(config.kafka_topics).length === 0) return null;
  try {
    kafkaPlan(config);
    return null;
  } catch (err) {
    if (err instanceof KafkaConfigError) return err.message;
    throw err;
  }
}
