// The liveness signal: a file whose mtime moves while the worker makes
// progress, touched at most once a second so it costs nothing per task.
import { closeSync, openSync, utimesSync } from "node:fs";

export interface HealthFile {
  progress(): void;
}

export function createHealthFile(path: string | undefined, now: () => number = Date.now, minIntervalMs = 1000): HealthFile {
  if (!path) return { progress() {} };
  let last = 0;
  return {
    progress() {
      const t = now();
      if (t - last < minIntervalMs) return;
      last = t;
      try {
        const d = new Date(t);
        utimesSync(path, d, d);
      } catch {
        closeSync(openSync(path, "a"));
      }
    },
  };
}
