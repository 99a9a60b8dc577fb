// Producing to Kafka with kafkajs: each activation goes to its namespace's
// routed topic, keyed by nothing (round-robin partitions, like Sentry's
// producer). Concurrent sends are batched into one sendBatch call. kafkajs is
// unmaintained since 2023, so it stays behind this one module.
import { Kafka, logLevel } from "kafkajs";
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { ActivationProducer } from "../sdk/producer.ts";
import { createBatcher } from "./batcher.ts";

export interface KafkaProducerOptions {
  brokers: string[];
  clientId?: string;
  /** acks: -1 all replicas (default), 1 leader only. */
  acks?: -1 | 1;
}

export function createKafkaProducer(options: KafkaProducerOptions): ActivationProducer {
  const kafka = new Kafka({ clientId: options.clientId ?? "taskplatform-producer", brokers: options.brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  let connected: Promise<void> | undefined;
  const batcher = createBatcher<{ topic: string; bytes: Uint8Array }>({
    concurrency: 2,
    weight: (m) => m.bytes.byteLength,
    async flush(items) {
      await (connected ??= producer.connect());
      const byTopic = new Map<string, Buffer[]>();
      for (const m of items) {
        const list = byTopic.get(m.topic) ?? [];
        list.push(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
        byTopic.set(m.topic, list);
      }
      await producer.sendBatch({
        acks: options.acks ?? -1,
        topicMessages: [...byTopic].map(([topic, values]) => ({ topic, messages: values.map((value) => ({ value })) })),
      });
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
