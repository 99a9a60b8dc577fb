// The tasks the end-to-end benchmark runs (loaded by the worker's task threads):
// a no-op for the drain, and a probe for the latency run that reports, over a
// BroadcastChannel to the benchmark's main thread, how long after its enqueue
// it started (absolute high-resolution time, comparable across threads), so
// our latency is enqueue -> task starts, as bench/peers.ts measures the peers.
import { createApp } from "../src/sdk/index.ts";

const app = createApp({ name: "bench" });
const ns = app.namespace("bench");
export const noop = ns.register({ name: "bench.noop", handler: () => undefined });

/** Where probe latencies are posted: [enqueued at (absolute ms), latency ms, counted (false: warm-up)]. */
export const LATENCY_CHANNEL = "taskplatform-bench-latency";
let channel: BroadcastChannel | null = null;
/** Now, in ms since the epoch with sub-ms precision, the same clock in every thread. */
export const absoluteNow = () => performance.timeOrigin + performance.now();

export const probe = ns.register({
  name: "bench.probe",
  handler: (enqueuedAt: number, counted = true) => {
    const ms = absoluteNow() - enqueuedAt;
    (channel ??= new BroadcastChannel(LATENCY_CHANNEL)).postMessage([enqueuedAt, ms, counted]);
  },
});
