// Producing without Kafka: activations go to a broker's IngestService.Produce.
// Concurrent dispatches are batched into one Produce call; RESOURCE_EXHAUSTED
// (broker backpressure) and UNAVAILABLE are retried with exponential back-off.
import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { ActivationProducer } from "./producer.ts";
import { type BrokerClient, createBrokerClient } from "../connect/client.ts";
import { createBatcher } from "./batcher.ts";

export interface RpcProducerOptions {
  /** Broker address host:port. */
  address: string;
  secrets?: string[];
  /** Give up on backpressure after this long. Default 30 000 ms. */
  retryForMs?: number;
  /** Produce calls in flight at once. Default 2. */
  concurrency?: number;
  /** The client to produce with (default: a new one for `address`). */
  client?: ProduceClient;
}

const RETRYABLE = new Set([Code.ResourceExhausted, Code.Unavailable]);

/** The part of the broker client a producer uses. */
export type ProduceClient = Pick<BrokerClient, "produce" | "close">;

export function createRpcProducer(options: RpcProducerOptions): ActivationProducer & { client: ProduceClient } {
  const client = options.client ?? createBrokerClient({ address: options.address, secrets: options.secrets });
  const retryForMs = options.retryForMs ?? 30_000;
  /**
   * Produce with back-off on RESOURCE_EXHAUSTED/UNAVAILABLE. The broker refuses a batch that would
   * not fit under its limits as a whole, so a refused batch is halved: what fits goes in now.
   */
  const produceAll = async (items: Uint8Array[], giveUpAt: number): Promise<void> => {
    for (let backoffMs = 10; ; backoffMs = Math.min(backoffMs * 2, 1000)) {
      try {
        await client.produce(items);
        return;
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (!RETRYABLE.has(code)) throw err;
        if (code === Code.ResourceExhausted && items.length > 1) {
          const half = Math.ceil(items.length / 2);
          await produceAll(items.slice(0, half), giveUpAt);
          await produceAll(items.slice(half), giveUpAt);
          return;
        }
        if (Date.now() + backoffMs > giveUpAt) throw err;
        await new Promise((r) => setTimeout(r, backoffMs * (0.5 + Math.random() / 2)));
      }
    }
  };
  const batcher = createBatcher<Uint8Array>({
    concurrency: options.concurrency ?? 2,
    weight: (b) => b.byteLength,
    async flush(items) {
      await produceAll(items, Date.now() + retryForMs);
    },
  });
  return {
    client,
    send(_topic: string, _activation: TaskActivation, bytes: Uint8Array) {
      return batcher.add(bytes);
    },
    async close() {
      await batcher.drain();
      void client.close();
    },
  };
}
