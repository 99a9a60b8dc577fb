// Producing to Kafka with kafkajs: each activation goes to its namespace's
// routed topic, keyed by nothing (round-robin partitions, like Sentry's
// producer). Concurrent sends are batched into one sendBatch call. kafkajs is
// unmaintained since 2023, so it stays behind kafka/client.ts.
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { ActivationProducer } from "./producer.ts";
import { createBatchProducer } from "../kafka/client.ts";
import { createBatcher } from "./batcher.ts";

export interface KafkaProducerOptions {
  brokers: string[];
  clientId?: string;
  /** acks: -1 all replicas (default), 1 leader only. */
  acks?: -1 | 1;
}

export function createKafkaProducer(options: KafkaProducerOptions): ActivationProducer {
  const producer = createBatchProducer({
    brokers: options.brokers,
    clientId: options.clientId ?? "taskplatform-producer",
  });
  let connected = false;
  const batcher = createBatcher<{ topic: string; bytes: Uint8Array }>({
    concurrency: 2,
    weight: (m) => m.bytes.byteLength,
    async flush(items) {
      connected = true;
      await producer.connect();
      const byTopic = new Map<string, Uint8Array[]>();
      for (const m of items) {
        const list = byTopic.get(m.topic) ?? [];
        list.push(m.bytes);
        byTopic.set(m.topic, list);
      }
      await producer.sendBatch(options.acks ?? -1, byTopic);
    },
  });
  return {
    send(topic: string, _activation: TaskActivation, bytes: Uint8Array) {
      return batcher.add({ topic, bytes });
    },
    async close() {
      await batcher.drain();
      if (connected) await producer.disconnect();
    },
  };
}
