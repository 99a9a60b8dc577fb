// What the broker does with Kafka, resolved once from the configuration:
// which consumer groups run and which topics each one reads (several topics
// may share a group; produce-only topics join none; consumer_disabled topics
// are only checked), every topic's consumer settings with the flat
// kafka_session_timeout_ms / kafka_auto_commit_interval_ms /
// kafka_auto_offset_reset / default_topic_partitions as defaults, where
// retries and dead letters go, and which topics create_missing_topics
// creates. Pure; every rule of the reference broker that can be checked
// before connecting is checked here and reported as one line (ConfigError).
// src/kafka/ runs what this describes.
import type { BrokerConfig, KafkaClusterConfig, KafkaTopicConfig } from "./broker.ts";
import { ConfigError } from "./source.ts";

/** A raw topic's settings (messages that are not TaskActivations). */
export type RawTopicSpec = NonNullable<KafkaTopicConfig["raw"]>;

export interface ConsumedTopic {
  topic: string;
  clusterName: string;
  cluster: KafkaClusterConfig;
  groupId: string;
  /** Own session_timeout_ms, else kafka_session_timeout_ms (6000). */
  sessionTimeoutMs: number;
  /** Own auto_commit_interval_ms, else kafka_auto_commit_interval_ms (5000). */
  autoCommitIntervalMs: number;
  /** Own auto_offset_reset, else kafka_auto_offset_reset (latest). */
  autoOffsetReset: "earliest" | "latest";
  /** autoOffsetReset === "earliest" (kafkajs' subscribe option). */
  fromBeginning: boolean;
  raw: RawTopicSpec | undefined;
}

/**
 * One consumer group this broker joins: one consumer subscribed to all its
 * topics. Keyed by cluster and group id (the same name on two clusters is
 * two groups). One consumer session has one timeout and one commit interval:
 * the group takes the longest session timeout and the shortest commit
 * interval its topics ask for; each topic keeps its own offset reset.
 */
export interface ConsumerGroupPlan {
  groupId: string;
  clusterName: string;
  cluster: KafkaClusterConfig;
  topics: ConsumedTopic[];
  sessionTimeoutMs: number;
  autoCommitIntervalMs: number;
}

export interface KafkaPlan {
  /** The groups to join, in topic-name order of their first topic. */
  groups: ConsumerGroupPlan[];
  /** Every topic read, over all groups (same objects as in `groups`). */
  consumed: ConsumedTopic[];
  /** consumer_disabled topics: counted as consumed for the rules, but no group is joined; the broker only checks them. */
  disabled: ConsumedTopic[];
  retryTopic: string;
  deadletterTopic: string;
  /** The one cluster holding the retry and dead-letter topics (one producer). */
  publishClusterName: string;
  publishCluster: KafkaClusterConfig;
  /** Longest wait for Kafka to acknowledge a retry or dead letter, ms (kafka_send_timeout_ms). */
  sendTimeoutMs: number;
  /** Largest message published, bytes (max_message_size). */
  maxMessageBytes: number;
  /** Wait before retrying a batch whose insert failed, ms (store.insert_failure_backoff_ms). */
  insertFailureBackoffMs: number;
  /** Every declared topic plus retry and dead-letter topics, by cluster. */
  declared: Array<{ clusterName: string; cluster: KafkaClusterConfig; topic: string; partitions: number }>;
}

export const envTopic = (topic: string, field: string) =>
  `TASKBROKER_KAFKA_TOPICS__${topic.toUpperCase().replace(/[^A-Z0-9]/g, "_")}__${field.toUpperCase()}`;

/** Whether the topic is only produced to. */
export function produceOnly(t: KafkaTopicConfig): boolean {
  return t.produce_only || t.consume === false;
}

/** True when Kafka is configured (otherwise activations arrive through the ingest RPC only). */
export function kafkaConfigured(config: BrokerConfig): boolean {
  return Object.keys(config.kafka_topics).length > 0 || Object.keys(config.kafka_clusters).length > 0;
}

/** Resolves the plan; throws ConfigError naming the setting at fault. */
export function kafkaPlan(config: BrokerConfig): KafkaPlan {
  const topics = config.kafka_topics;
  const names = Object.keys(topics).sort();
  if (names.length === 0)
    throw new ConfigError("kafka_clusters is set but kafka_topics is empty: expected at least one topic");
  const clusterOf = (clusterName: string, setting: string): KafkaClusterConfig => {
    const c = config.kafka_clusters[clusterName];
    if (!c) {
      const known = Object.keys(config.kafka_clusters);
      throw new ConfigError(
        `${setting}="${clusterName}" is invalid: expected a configured Kafka cluster` +
          (known.length
            ? ` (one of ${known.join(", ")})`
            : ` (set TASKBROKER_KAFKA_CLUSTERS__${clusterName.toUpperCase()}__ADDRESS)`),
      );
    }
    return c;
  };

  const consumed: ConsumedTopic[] = [];
  const disabled: ConsumedTopic[] = [];
  for (const topic of names) {
    const t = topics[topic]!;
    const cluster = clusterOf(t.cluster, envTopic(topic, "cluster"));
    if (t.consume !== undefined && t.produce_only && t.consume) {
      throw new ConfigError(
        `${envTopic(topic, "consume")}=true contradicts ${envTopic(topic, "produce_only")}=true: expected one of them`,
      );
    }
    if (produceOnly(t)) continue;
    if (t.raw?.mode === "headers" && Object.keys(t.raw.header_kwargs).length === 0) {
      throw new ConfigError(
        `${envTopic(topic, "raw__header_kwargs")} is unset: expected the operations and header decoders of a headers-mode raw topic`,
      );
    }
    const autoOffsetReset = t.auto_offset_reset ?? config.kafka_auto_offset_reset;
    const entry: ConsumedTopic = {
      topic,
      clusterName: t.cluster,
      cluster,
      groupId: t.consumer_group ?? `taskbroker-${topic}`,
      sessionTimeoutMs: t.session_timeout_ms ?? config.kafka_session_timeout_ms,
      autoCommitIntervalMs: t.auto_commit_interval_ms ?? config.kafka_auto_commit_interval_ms,
      autoOffsetReset,
      fromBeginning: autoOffsetReset === "earliest",
      raw: t.raw,
    };
    (t.consumer_disabled ? disabled : consumed).push(entry);
  }
  if (consumed.length + disabled.length === 0) {
    throw new ConfigError(
      "no consumable topic configured: expected a topic without produce_only: true in kafka_topics",
    );
  }

  const byGroup = new Map<string, ConsumerGroupPlan>();
  for (const c of consumed) {
    const key = `${c.clusterName}\u0000${c.groupId}`;
    const g = byGroup.get(key);
    if (!g) {
      byGroup.set(key, {
        groupId: c.groupId,
        clusterName: c.clusterName,
        cluster: c.cluster,
        topics: [c],
        sessionTimeoutMs: c.sessionTimeoutMs,
        autoCommitIntervalMs: c.autoCommitIntervalMs,
      });
    } else {
      g.topics.push(c);
      g.sessionTimeoutMs = Math.max(g.sessionTimeoutMs, c.sessionTimeoutMs);
      g.autoCommitIntervalMs = Math.min(g.autoCommitIntervalMs, c.autoCommitIntervalMs);
    }
  }

  const readable = [...consumed, ...disabled];
  let retryTopic = config.kafka_retry_topic;
  if (!retryTopic) {
    const raw = readable.find((c) => c.raw);
    if (raw) {
      throw new ConfigError(
        `TASKBROKER_KAFKA_RETRY_TOPIC is unset: expected a retry topic of TaskActivations, since topic ${raw.topic} is raw (its messages are not activations)`,
      );
    }
    if (readable.length !== 1) {
      throw new ConfigError(
        `TASKBROKER_KAFKA_RETRY_TOPIC is required when several topics are consumed (${readable.map((c) => c.topic).join(", ")})`,
      );
    }
    retryTopic = readable[0]!.topic;
  }
  if (topics[retryTopic]?.raw) {
    throw new ConfigError(
      `TASKBROKER_KAFKA_RETRY_TOPIC="${retryTopic}" is invalid: expected a topic of TaskActivations, not a raw topic`,
    );
  }
  const deadletterTopic = config.kafka_deadletter_topic;
  if (retryTopic === deadletterTopic) {
    throw new ConfigError(
      `TASKBROKER_KAFKA_RETRY_TOPIC="${retryTopic}" is invalid: expected a topic other than kafka_deadletter_topic`,
    );
  }
  const dlq = topics[deadletterTopic];
  if (dlq && !produceOnly(dlq)) {
    throw new ConfigError(
      `${envTopic(deadletterTopic, "produce_only")} is unset: expected the dead-letter topic ${deadletterTopic} to be produce_only (consuming it would run dead letters again)`,
    );
  }

  // An undeclared retry or dead-letter topic lives on the cluster of the consumed topics (ours; the reference requires declaring them).
  const fallbackCluster = readable[0]!.clusterName;
  const retryCluster = topics[retryTopic]?.cluster ?? fallbackCluster;
  const dlqCluster = dlq?.cluster ?? fallbackCluster;
  const retryAddress = clusterOf(retryCluster, envTopic(retryTopic, "cluster")).address;
  const dlqAddress = clusterOf(dlqCluster, envTopic(deadletterTopic, "cluster")).address;
  if (retryAddress !== dlqAddress) {
    throw new ConfigError(
      `retry topic ${retryTopic} is on cluster ${retryCluster} (${retryAddress}) but dead-letter topic ${deadletterTopic} is on ${dlqCluster} (${dlqAddress}): ` +
        "expected one cluster, since one producer publishes both",
    );
  }

  const declared: KafkaPlan["declared"] = names.map((topic) => ({
    clusterName: topics[topic]!.cluster,
    cluster: config.kafka_clusters[topics[topic]!.cluster]!,
    topic,
    partitions: topics[topic]!.partitions ?? config.default_topic_partitions,
  }));
  for (const topic of [retryTopic, deadletterTopic]) {
    if (!topics[topic]) {
      declared.push({
        clusterName: dlqCluster,
        cluster: config.kafka_clusters[dlqCluster]!,
        topic,
        partitions: config.default_topic_partitions,
      });
    }
  }

  return {
    groups: [...byGroup.values()],
    consumed,
    disabled,
    retryTopic,
    deadletterTopic,
    publishClusterName: dlqCluster,
    publishCluster: config.kafka_clusters[dlqCluster]!,
    sendTimeoutMs: config.kafka_send_timeout_ms,
    maxMessageBytes: config.max_message_size,
    insertFailureBackoffMs: config.store.insert_failure_backoff_ms,
    declared,
  };
}

/** One line describing what is wrong with the Kafka settings, or null (for load-time checks). */
export function kafkaConfigProblem(config: BrokerConfig): string | null {
  if (!kafkaConfigured(config)) return null;
  try {
    kafkaPlan(config);
    return null;
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
}
