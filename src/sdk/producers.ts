// The producers an application can hand to createApp({ producer, router })
// instead of configuring them through TASKWORKER_* environment variables:
// the broker's ingest RPC (no Kafka), Kafka topics, and the namespace ->
// topic router. Imported as "taskplatform/producer", a separate entry so task
// modules that never produce do not load the network clients.
export {
  createKafkaProducer,
  createRpcProducer,
  type KafkaProducerOptions,
  producerFromEnv,
  type ProducerSetup,
  type RpcProducerOptions,
} from "../producer/index.ts";
export {
  createRouter,
  DEFAULT_TOPIC,
  parseRoutes,
  type Router,
  type RouterOptions,
  routerFromEnv,
  RoutingError,
} from "../routing.ts";
export type { ActivationProducer, TopicRouter } from "./producer.ts";
