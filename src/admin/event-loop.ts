// How late the broker's event loop runs: a timer every 50 ms notes how much
// later than due it fired, which is how long the loop was held by something
// else (a long statement, a collection, a core taken away). Every
// runtime_metrics_interval the worst delay of that interval is published
// (taskbroker_event_loop_delay_max_seconds); a delay of 100 ms or more counts
// as a stall (taskbroker_event_loop_stalls_total) and one of 250 ms or more is
// logged (WARN event_loop_stalled), since every RPC on the port waited that
// long. It is upstream's runtime_metrics_interval, which samples the Tokio
// runtime's metrics: the event loop is this broker's runtime.
import type { Logger } from "../log.ts";
import { eventLoopDelayMax, eventLoopStalls } from "../metrics.ts";

const TICK_MS = 50;
const STALL_MS = 100;
const LOG_MS = 250;

export interface EventLoopMonitor {
  stop(): void;
}

export function startEventLoopMonitor(o: { intervalMs: number; log: Logger }): EventLoopMonitor {
  let last = performance.now();
  let worst = 0;
  let windowStart = last;
  const tick = setInterval(() => {
    const now = performance.now();
    const delay = Math.max(0, now - last - TICK_MS);
    last = now;
    if (delay > worst) worst = delay;
    if (delay >= STALL_MS) {
      eventLoopStalls.inc();
      if (delay >= LOG_MS) o.log.warn("event_loop_stalled", { delay_ms: Math.round(delay) });
    }
    if (now - windowStart >= o.intervalMs) {
      eventLoopDelayMax.set(worst / 1000);
      worst = 0;
      windowStart = now;
    }
  }, TICK_MS);
  tick.unref();
  return { stop: () => clearInterval(tick) };
}
