// Which push-mode worker gets the next activation, and how long a worker is
// left alone after it answered busy or could not be reached. Pure state and
// arithmetic, no I/O, so the choice and the back-off are unit-testable; the
// pusher (pusher.ts) does the calls.

export interface PushTarget {
  address: string;
  /** PushTask calls to it in flight right now. */
  inflight: number;
  /** Unix ms before which it is not pushed to (busy or unreachable). */
  notBeforeMs: number;
  /** Consecutive busy answers (RESOURCE_EXHAUSTED), for the back-off. */
  busyStreak: number;
  /** Consecutive failed calls (unreachable, UNAVAILABLE, other errors). */
  failureStreak: number;
}

export function newTarget(address: string): PushTarget {
  return { address, inflight: 0, notBeforeMs: 0, busyStreak: 0, failureStreak: 0 };
}

/**
 * The next target with a free call slot that is not backing off, scanning
 * round-robin from `cursor` so load spreads over the workers. Returns its
 * index, or -1 when none can take a push now.
 */
export function pickTarget(targets: readonly PushTarget[], cursor: number, nowMs: number, concurrency: number): number {
  for (let i = 0; i < targets.length; i++) {
    const k = (cursor + i) % targets.length;
    const t = targets[k]!;
    if (t.inflight < concurrency && t.notBeforeMs <= nowMs) return k;
  }
  return -1;
}

/** Ms until some target's back-off ends (for the idle wait); Infinity when none is backing off. */
export function nextReadyInMs(targets: readonly PushTarget[], nowMs: number): number {
  let soonest = Infinity;
  for (const t of targets) if (t.notBeforeMs > nowMs) soonest = Math.min(soonest, t.notBeforeMs - nowMs);
  return soonest;
}

/** A worker busy with all its slots: retry it soon, sooner than an unreachable one (10 ms doubling to 500 ms). */
export function busyBackoffMs(streak: number): number {
  return Math.min(500, 10 * 2 ** Math.min(Math.max(streak - 1, 0), 10));
}

/** A worker that cannot be reached: skip it for a while (250 ms doubling to 5 s). */
export function failureBackoffMs(streak: number): number {
  return Math.min(5000, 250 * 2 ** Math.min(Math.max(streak - 1, 0), 10));
}

export function noteDelivered(t: PushTarget): void {
  t.busyStreak = 0;
  t.failureStreak = 0;
  t.notBeforeMs = 0;
}

export function noteBusy(t: PushTarget, nowMs: number): void {
  t.failureStreak = 0;
  t.busyStreak++;
  t.notBeforeMs = nowMs + busyBackoffMs(t.busyStreak);
}

export function noteFailure(t: PushTarget, nowMs: number): void {
  t.busyStreak = 0;
  t.failureStreak++;
  t.notBeforeMs = nowMs + failureBackoffMs(t.failureStreak);
}
