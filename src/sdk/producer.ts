// The seam between dispatch and transport: an ActivationProducer sends encoded
// activations to a topic (Kafka) or to a broker's ingest RPC. Implementations:
// rpc-producer.ts and kafka-producer.ts, chosen in producers.ts; the rest of
// the SDK only knows this contract.
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

export interface ActivationProducer {
  /** Resolves once the activation is durably accepted (Kafka ack or broker Produce). */
  send(topic: string, activation: TaskActivation, bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Namespace -> topic resolution; see routing.ts. */
export interface TopicRouter {
  topicFor(namespace: string): string;
}
