// Pull mode's choice of delivery (--delivery): the streaming loop
// (stream-loop.ts) or the v1 unary loop (loop.ts), and in `auto` the stream
// until a broker answers it UNIMPLEMENTED (Sentry's taskbroker, an older
// broker), then the v1 calls for every broker. Both loops share the task pool
// and the execution rules; the caller sees one { done, stop }.
import { hostname } from "node:os";
import { createBatchRunner } from "./batch-run.ts";
import { startWorkerLoop, type LoopOptions, type WorkerLoop } from "./loop.ts";
import { startStreamLoop, type StreamLoop } from "./stream-loop.ts";

export interface PullOptions extends LoopOptions {
  delivery: "unary" | "stream" | "auto";
  brokers: readonly string[];
  secrets?: string[];
}

export function startPull(o: PullOptions): WorkerLoop {
  if (o.delivery === "unary") return startWorkerLoop(o);
  let unary: WorkerLoop | null = null;
  let stopping = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stream: StreamLoop;
  let switching: Promise<void> | null = null;

  const fallBack = (address: string) => {
    if (o.delivery === "stream") {
      o.log.error("delivery_stream_unsupported", {
        broker: address,
        error:
          "the broker has no taskplatform.v1.DeliveryService; --delivery stream keeps retrying it (use auto or unary for such brokers)",
      });
      return;
    }
    if (switching !== null || stopping) return;
    o.log.warn("delivery_fallback_unary", {
      broker: address,
      reason: "the broker has no delivery stream (UNIMPLEMENTED); using the v1 calls for every broker",
    });
    switching = (async () => {
      // The stream loop finishes what it was handed (results to the brokers that sent them), then the v1 loop takes over.
      await stream.stop(60_000);
      if (!stopping) unary = startWorkerLoop(o);
      else resolveDone();
    })();
  };

  stream = startStreamLoop({
    concurrency: o.concurrency,
    filters: o.filters,
    brokers: o.brokers,
    secrets: o.secrets,
    runner: createBatchRunner({ ...o }),
    balancer: o.balancer,
    health: o.health,
    metrics: o.metrics,
    log: o.log,
    maxBackoffMs: o.maxBackoffMs,
    workerName: `${hostname()}:${process.pid}`,
    onUnsupported: fallBack,
  });

  return {
    done,
    async stop(graceMs) {
      stopping = true;
      if (switching !== null) await switching;
      if (unary !== null) {
        await unary.stop(graceMs);
        await unary.done;
      } else {
        await stream.stop(graceMs);
      }
      resolveDone();
    },
  };
}
