// Choosing a producer from the environment: kafkajs to the routed topic when
// TASKWORKER_KAFKA_BROKERS is set, otherwise the broker's ingest RPC at
// TASKWORKER_PRODUCE_ADDRESS (or the first of TASKWORKER_RPC_HOST_LIST, or
// 127.0.0.1:50051). Entry point for the SDK's default producer and the scheduler.
import type { ActivationProducer } from "../sdk/producer.ts";
import { type Router, routerFromEnv } from "../routing.ts";
import { parseSecrets } from "../connect/secrets.ts";
import { createKafkaProducer } from "./kafka.ts";
import { createRpcProducer } from "./rpc.ts";

export { createBatcher } from "./batcher.ts";
export { createKafkaProducer, type KafkaProducerOptions } from "./kafka.ts";
export { createRpcProducer, type RpcProducerOptions } from "./rpc.ts";

export interface ProducerSetup {
  producer: ActivationProducer;
  router: Router;
}

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
