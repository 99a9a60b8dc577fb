// The liveness signal: a file whose mtime moves while the worker is alive.
// Like Sentry's worker it is touched on every broker RPC (at most once per
// interval, so it costs nothing per task) and, from start() on, by a timer
// every interval, so an idle worker (nothing to fetch, long back-off) or one
// whose tasks all run long does not look dead. A worker whose event loop is
// stuck stops touching it, which is what the probe is for.
import { closeSync, openSync, utimesSync } from "node:fs";

export interface HealthFile {
  /** Touches the file unless it was touched less than one interval ago. */
  progress(): void;
  /** Starts the timer that touches the file every interval. */
  start(): void;
  stop(): void;
}

export function createHealthFile(
  path: string | undefined,
  intervalMs = 1000,
  now: () => number = Date.now,
): HealthFile {
  if (!path) return { progress() {}, start() {}, stop() {} };
  let last = 0;
  let timer: ReturnType<typeof setInterval> | null = null;
  const touch = (t: number) => {
    last = t;
    try {
      const d = new Date(t);
      utimesSync(path, d, d);
    } catch {
      try {
        closeSync(openSync(path, "a"));
      } catch {
        // An unwritable path: the probe reports it (the file never moves); the worker keeps working.
      }
    }
  };
  return {
    progress() {
      const t = now();
      if (t - last >= intervalMs) touch(t);
    },
    start() {
      if (timer) return;
      touch(now());
      timer = setInterval(() => touch(now()), intervalMs);
      timer.unref?.();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
