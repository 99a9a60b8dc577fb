// Publishing to Kafka with one producer (docs/spec/broker.md "Kafka"): retries to the
// retry topic, dead letters (original bytes) and undecodable messages to the
// dead-letter topic, activations of demoted namespaces to their topic. Implements upkeep's UpkeepPublisher: each promise
// resolves only once the broker acknowledged the message (acks = all), so
// upkeep marks a row done only after a successful publish and a failing Kafka
// never loses a retry or a dead letter. Concurrent publishes to one topic are
// coalesced into one produce request (upkeep hands over many rows per pass).
import type { Logger } from "../log.ts";
import { MessageTooLarge, type ClusterProducer, type ConsumedMessage, type OutboundMessage } from "./client.ts";
import { kafkaPublishTotal } from "./metrics.ts";

/** A message that cannot become an activation, with the reason logged. */
export interface Undecodable {
  message: ConsumedMessage;
  reason: string;
}

/** Same shape as UpkeepPublisher in src/upkeep/publisher.ts. */
export interface KafkaPublisher {
  publishRetry(activation: Uint8Array): Promise<void>;
  publishDeadLetter(
    original: Uint8Array,
    row: { id: string; namespace: string; taskname: string; application: string },
  ): Promise<void>;
  /** Undecodable consumed messages, published as they arrived (value, key, headers). */
  publishUndecodable(messages: Undecodable[]): Promise<void>;
  /**
   * One activation forwarded to `topic` (runtime config namespace demotion);
   * resolves once acknowledged. `cluster` (demoted_topic_cluster): a
   * configured cluster name or a bootstrap address; absent, this producer's.
   */
  publishDemoted(topic: string, message: OutboundMessage, cluster?: string | null): Promise<void>;
  /** Waits for in-flight sends, then disconnects. */
  close(): Promise<void>;
}

interface Pending {
  message: OutboundMessage;
  kind: string;
  resolve(): void;
  reject(err: unknown): void;
}

/** A consumed message as it goes out again: `value` (default its own bytes), its key and its headers. */
export function outboundOf(message: ConsumedMessage, value?: Uint8Array): OutboundMessage {
  return {
    value: value ?? message.value ?? new Uint8Array(0),
    key: message.key,
    headers: Object.fromEntries(
      Object.entries(message.headers).filter((e): e is [string, Uint8Array] => e[1] instanceof Uint8Array),
    ),
  };
}

/** Most messages per produce request; bounded so one request stays well under the message size limit. */
const MAX_PER_SEND = 500;
const MAX_BYTES_PER_SEND = 4 * 1024 * 1024;

export function createKafkaPublisher(opts: {
  producer: ClusterProducer;
  retryTopic: string;
  deadletterTopic: string;
  /** max_message_size: a bigger message is refused (MessageTooLarge) without being sent. */
  maxMessageBytes?: number;
  log: Logger;
  /**
   * A producer for another cluster (demoted_topic_cluster), connected on first
   * use; null when `cluster` is this producer's own. Absent: always this one.
   */
  producerFor?: (cluster: string) => Promise<ClusterProducer> | null;
}): KafkaPublisher {
  // One queue per (producer, topic): concurrent publishes to it share a request.
  const queues = new Map<
    string,
    { cluster: string | null; topic: string; pending: Pending[]; sending: Promise<void> | null }
  >();
  const own = Promise.resolve(opts.producer);
  const others = new Map<string, Promise<ClusterProducer>>();

  const producerOf = (cluster: string | null): Promise<ClusterProducer> => {
    if (!cluster) return own;
    let other = others.get(cluster);
    if (!other) {
      const connecting = opts.producerFor?.(cluster);
      if (!connecting) return own;
      // A failed connect is forgotten, so the next publish tries again.
      others.set(cluster, (other = connecting));
      connecting.catch(() => others.delete(cluster));
    }
    return other;
  };

  const drain = async (key: string) => {
    const q = queues.get(key)!;
    const topic = q.topic;
    while (q.pending.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < q.pending.length && n < MAX_PER_SEND && (n === 0 || bytes < MAX_BYTES_PER_SEND)) {
        bytes += q.pending[n]!.message.value.byteLength;
        n++;
      }
      const batch = q.pending.splice(0, n);
      try {
        await (await producerOf(q.cluster)).send(
          topic,
          batch.map((p) => p.message),
        );
        for (const p of batch) {
          kafkaPublishTotal.inc({ kind: p.kind, result: "ok" });
          p.resolve();
        }
      } catch (err) {
        opts.log.warn("kafka_publish_failed", { topic, messages: batch.length, error: err });
        for (const p of batch) {
          kafkaPublishTotal.inc({ kind: p.kind, result: "error" });
          p.reject(err);
        }
      }
    }
    q.sending = null;
  };

  const publish = (topic: string, kind: string, message: OutboundMessage, cluster?: string | null): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      // Refused here, alone, rather than failing the whole request it would share.
      if (opts.maxMessageBytes !== undefined && message.value.byteLength > opts.maxMessageBytes) {
        kafkaPublishTotal.inc({ kind, result: "too_large" });
        reject(new MessageTooLarge(message.value.byteLength, opts.maxMessageBytes));
        return;
      }
      const key = `${cluster ?? ""}\u0000${topic}`;
      let q = queues.get(key);
      if (!q) queues.set(key, (q = { cluster: cluster ?? null, topic, pending: [], sending: null }));
      q.pending.push({ message, kind, resolve, reject });
      // Start after the current tick so publishes issued together share a request.
      if (!q.sending) q.sending = new Promise<void>((r) => setImmediate(r)).then(() => drain(key));
    });

  return {
    publishRetry: (activation) => publish(opts.retryTopic, "retry", { value: activation }),
    publishDeadLetter: (original) => publish(opts.deadletterTopic, "deadletter", { value: original }),
    publishUndecodable: async (messages) => {
      // Each on its own: one message Kafka can never take (above max_message_size)
      // is logged and counted, not retried forever with the others held behind it.
      const results = await Promise.allSettled(
        messages.map((u) => publish(opts.deadletterTopic, "undecodable", outboundOf(u.message))),
      );
      let failure: unknown;
      results.forEach((r, i) => {
        if (r.status === "fulfilled") return;
        if (r.reason instanceof MessageTooLarge) {
          const m = messages[i]!.message;
          opts.log.error("kafka_deadletter_too_large", {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            error: r.reason.message,
          });
        } else failure ??= r.reason;
      });
      if (failure !== undefined) throw failure;
    },
    publishDemoted: (topic, message, cluster) => publish(topic, "demoted", message, cluster),
    async close() {
      await Promise.all([...queues.values()].map((q) => q.sending));
      await Promise.allSettled([...others.values()].map(async (p) => (await p).disconnect()));
      await opts.producer.disconnect();
    },
  };
}
