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
  publishDeadLetter(original: Uint8Array, row: { id: string; namespace: string; taskname: string; application: string }): Promise<void>;
  /** Undecodable consumed messages, published as they arrived (value, key, headers). */
  publishUndecodable(messages: Undecodable[]): Promise<void>;
  /** One consumed message forwarded to `topic` (runtime config namespace demotion); resolves once acknowledged. */
  publishDemoted(topic: string, message: OutboundMessage): Promise<void>;
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
}): KafkaPublisher {
  const queues = new Map<string, { pending: Pending[]; sending: Promise<void> | null }>();

  const drain = async (topic: string) => {
    const q = queues.get(topic)!;
    while (q.pending.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < q.pending.length && n < MAX_PER_SEND && (n === 0 || bytes < MAX_BYTES_PER_SEND)) {
        bytes += q.pending[n]!.message.value.byteLength;
        n++;
      }
      const batch = q.pending.splice(0, n);
      try {
        await opts.producer.send(topic, batch.map((p) => p.message));
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

  const publish = (topic: string, kind: string, message: OutboundMessage): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      // Refused here, alone, rather than failing the whole request it would share.
      if (opts.maxMessageBytes !== undefined && message.value.byteLength > opts.maxMessageBytes) {
        kafkaPublishTotal.inc({ kind, result: "too_large" });
        reject(new MessageTooLarge(message.value.byteLength, opts.maxMessageBytes));
        return;
      }
      let q = queues.get(topic);
      if (!q) queues.set(topic, (q = { pending: [], sending: null }));
      q.pending.push({ message, kind, resolve, reject });
      // Start after the current tick so publishes issued together share a request.
      if (!q.sending) q.sending = new Promise<void>((r) => setImmediate(r)).then(() => drain(topic));
    });

  return {
    publishRetry: (activation) => publish(opts.retryTopic, "retry", { value: activation }),
    publishDeadLetter: (original) => publish(opts.deadletterTopic, "deadletter", { value: original }),
    publishUndecodable: async (messages) => {
      // Each on its own: one message Kafka can never take (above max_message_size)
      // is logged and counted, not retried forever with the others held behind it.
      const results = await Promise.allSettled(messages.map((u) => publish(opts.deadletterTopic, "undecodable", outboundOf(u.message))));
      let failure: unknown;
      results.forEach((r, i) => {
        if (r.status === "fulfilled") return;
        if (r.reason instanceof MessageTooLarge) {
          const m = messages[i]!.message;
          opts.log.error("kafka_deadletter_too_large", { topic: m.topic, partition: m.partition, offset: m.offset, error: r.reason.message });
        } else failure ??= r.reason;
      });
      if (failure !== undefined) throw failure;
    },
    publishDemoted: (topic, message) => publish(topic, "demoted", message),
    async close() {
      await Promise.all([...queues.values()].map((q) => q.sending));
      await opts.producer.disconnect();
    },
  };
}
