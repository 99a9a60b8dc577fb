// Producing without Kafka: activations go to a broker's IngestService, over
// one long-lived ProduceStream when the broker has it (found out on the first
// batch; docs/streaming.md) and else with unary Produce calls. Concurrent
// dispatches are batched; RESOURCE_EXHAUSTED (broker backpressure) and
// UNAVAILABLE (a broken stream included: ids make a resent batch harmless)
// are retried with exponential back-off.
import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { ActivationProducer } from "./producer.ts";
import { type BrokerClient, createBrokerClient } from "../connect/client.ts";
import { type ProduceStream, openProduceStream } from "../connect/produce-stream-client.ts";
import { createBatcher } from "./batcher.ts";

export interface RpcProducerOptions {
  /** Broker address host:port. */
  address: string;
  secrets?: string[];
  /** Give up on backpressure after this long. Default 30 000 ms. */
  retryForMs?: number;
  /** Batches in flight at once. Default 2. */
  concurrency?: number;
  /** The client for unary Produce calls (default: a new one for `address`). */
  client?: ProduceClient;
  /**
   * How batches travel: `stream` (IngestService.ProduceStream), `unary` (one Produce call each),
   * or `auto` (default): the stream, and unary calls from the first time a broker answers it
   * with UNIMPLEMENTED (an older broker).
   */
  transport?: "auto" | "stream" | "unary";
}

const RETRYABLE = new Set([Code.ResourceExhausted, Code.Unavailable]);

/** The part of the broker client a producer uses. */
export type ProduceClient = Pick<BrokerClient, "produce" | "close">;

export function createRpcProducer(options: RpcProducerOptions): ActivationProducer & { client: ProduceClient } {
  const client = options.client ?? createBrokerClient({ address: options.address, secrets: options.secrets });
  const retryForMs = options.retryForMs ?? 30_000;
  const transport = options.transport ?? "auto";
  let streamUnsupported = transport === "unary";
  let stream: ProduceStream | null = null;
  const produceOnce = async (items: Uint8Array[]) => {
    if (streamUnsupported) return client.produce(items);
    if (stream === null || stream.over)
      stream = openProduceStream({ address: options.address, secrets: options.secrets });
    const s = stream;
    try {
      return await s.produce(items);
    } catch (err) {
      // Only a broker that never accepted the stream says it lacks it; later errors are the batch's own.
      if (transport === "auto" && !s.accepted && ConnectError.from(err).code === Code.Unimplemented) {
        streamUnsupported = true;
        return client.produce(items);
      }
      throw err;
    }
  };
  /**
   * Produce with back-off on RESOURCE_EXHAUSTED/UNAVAILABLE. The broker refuses a batch that would
   * not fit under its limits as a whole, so a refused batch is halved: what fits goes in now.
   */
  const produceAll = async (items: Uint8Array[], giveUpAt: number): Promise<void> => {
    for (let backoffMs = 10; ; backoffMs = Math.min(backoffMs * 2, 1000)) {
      try {
        await produceOnce(items);
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
      if (stream !== null) await stream.close();
      void client.close();
    },
  };
}
