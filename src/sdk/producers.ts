// The producers an application can hand to createApp({ producer, router })
// instead of configuring them through TASKWORKER_* environment variables:
// the broker's ingest RPC (no Kafka), Kafka topics, and the namespace ->
// topic router; and producerFromEnv, the choice made from those variables
// (the SDK's default producer and the scheduler's). Imported as
// "taskplatform/producer", a separate entry so task modules that never
// produce do not load the network clients.
import { parseSecrets } from "../connect/secrets.ts";
import { type Router, routerFromEnv } from "./routing.ts";
import { createKafkaProducer } from "./kafka-producer.ts";
import type { ActivationProducer } from "./producer.ts";
import { createRpcProducer } from "./rpc-producer.ts";

export { createKafkaProducer, type KafkaProducerOptions } from "./kafka-producer.ts";
export type { ActivationProducer, TopicRouter } from "./producer.ts";
export { createRpcProducer, type RpcProducerOptions } from "./rpc-producer.ts";
export {
  createRouter,
  DEFAULT_TOPIC,
  parseRoutes,
  type Router,
  type RouterOptions,
  routerFromEnv,
  RoutingError,
} from "./routing.ts";

export interface ProducerSetup {
  producer: ActivationProducer;
  router: Router;
}

/**
 * kafkajs to the routed topic when TASKWORKER_KAFKA_BROKERS is set, otherwise
 * the broker's ingest RPC at TASKWORKER_PRODUCE_ADDRESS (or the first of
 * TASKWORKER_RPC_HOST_LIST, or 127.0.0.1:50051).
 */
export function producerFromEnv(env: Record<string, string | undefined>): ProducerSetup {
  const router = routerFromEnv(env);
  const kafka = (env.TASKWORKER_KAFKA_BROKERS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (kafka.length > 0) return { producer: createKafkaProducer({ brokers: kafka }), router };
  const address =
    env.TASKWORKER_PRODUCE_ADDRESS ||
    (env.TASKWORKER_RPC_HOST_LIST ?? "")
      .split(",")
      .map((s) => s.trim())
      .find(Boolean) ||
    "127.0.0.1:50051";
  return { producer: createRpcProducer({ address, secrets: parseSecrets(env.TASKWORKER_GRPC_SHARED_SECRET) }), router };
}
