// The scheduler's notion of time, injectable so tests control it: the system
// clock, a manual clock that moves only when told (in-process tests), and a
// scaled clock that runs N times faster than real time from a shared origin
// (several processes agree on it, for multi-process replica tests).

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms` of this clock's time, or early (without error) when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

function realSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", done, { once: true });
  });
}

export const systemClock: Clock = { now: () => Date.now(), sleep: realSleep };

export interface ManualClock extends Clock {
  set(ms: number): void;
  advance(ms: number): void;
  /** Number of sleeps currently pending. */
  sleepers(): number;
  /** Resolves once at least `count` sleeps are pending (i.e. the loops have finished their work and wait). */
  whenSleeping(count?: number): Promise<void>;
}

export function createManualClock(startMs: number): ManualClock {
  let now = startMs;
  const sleeping = new Set<{ until: number; wake: () => void }>();
  let watchers: Array<{ count: number; resolve: () => void }> = [];
  const notify = () => {
    watchers = watchers.filter((w) => (sleeping.size >= w.count ? (w.resolve(), false) : true));
  };
  const release = () => {
    for (const s of [...sleeping]) if (s.until <= now) s.wake();
  };
  return {
    now: () => now,
    sleep(ms, signal) {
      return new Promise((resolve) => {
        if (signal.aborted || ms <= 0) return resolve();
        const entry = {
          until: now + ms,
          wake: () => {
            sleeping.delete(entry);
            signal.removeEventListener("abort", entry.wake);
            resolve();
          },
        };
        sleeping.add(entry);
        signal.addEventListener("abort", entry.wake, { once: true });
        notify();
      });
    },
    set(ms) {
      now = ms;
      release();
    },
    advance(ms) {
      now += ms;
      release();
    },
    sleepers: () => sleeping.size,
    whenSleeping(count = 1) {
      return new Promise((resolve) => {
        watchers.push({ count, resolve });
        notify();
      });
    },
  };
}

/** Time that starts at `originMs` when real time is `realOriginMs` and runs `speed` times faster. */
export function createScaledClock(opts: { originMs: number; realOriginMs: number; speed: number }): Clock {
  const { originMs, realOriginMs, speed } = opts;
  return {
    now: () => originMs + (Date.now() - realOriginMs) * speed,
    sleep: (ms, signal) => realSleep(ms / speed, signal),
  };
}
