// The scheduler loop: plans each schedule's next slot from the run store,
// sleeps until the earliest one (no polling; at most `maxSleepMs` so wall-clock
// jumps and other replicas' runs are noticed), claims due slots in the store
// and fires the claimed ones. A store that cannot be asked (locked, I/O error)
// delays the slot rather than ending the loop. Claim before fire: at most once per slot (see
// run-store.ts). Fires are awaited one after another; a failed fire is logged
// and the slot is not retried by the loop (the fire callback may retry within
// its own bounds).
import { hostname } from "node:os";
import { silentLogger, type Logger } from "../log.ts";
import { scheduleFires } from "./metrics.ts";
import { type Clock, systemClock } from "./clock.ts";
import type { Schedule } from "../sdk/schedules.ts";
import type { RunStore } from "./run-store.ts";
import { type Plan, planNext } from "./slots.ts";

/** Produces the schedule's activation for `slotMs`; throws when it could not. */
export type FireFn = (schedule: Schedule, slotMs: number, signal: AbortSignal) => Promise<void>;

/** Pause before asking the run store again after a claim failed, in ms of the clock's time. */
export const CLAIM_RETRY_MS = 1000;

export interface SchedulerOptions {
  schedules: Schedule[];
  runs: RunStore;
  fire: FireFn;
  /** Default: the system clock. */
  clock?: Clock;
  log?: Logger;
  /** Recorded with each claim, for operators. Default "<hostname>:<pid>". */
  replicaId?: string;
  /** Longest single sleep, in ms of the clock's time. Default 60000. */
  maxSleepMs?: number;
}

export interface Scheduler {
  /** Epoch ms of the earliest planned slot (for status output and tests). */
  nextSlotMs(): number | null;
  /** Stops sleeping, waits for a fire in progress, and resolves when the loop has ended. */
  stop(): Promise<void>;
  /** Resolves when the loop ends; rejects if it died of an unexpected error (e.g. the store failed). */
  readonly done: Promise<void>;
}

export function startScheduler(options: SchedulerOptions): Scheduler {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? silentLogger;
  const replicaId = options.replicaId ?? `${hostname()}:${process.pid}`;
  const maxSleepMs = options.maxSleepMs ?? 60_000;
  const { runs, fire } = options;
  const stopping = new AbortController();
  const plans = new Map<string, Plan>();

  const stored = runs.readAll();
  for (const s of options.schedules) {
    const record = stored.get(s.key) ?? null;
    if (record && record.hash === s.hash && record.producedAtMs === null) {
      // A previous run claimed this slot and never confirmed producing it (crash or produce failure).
      log.warn("schedule_slot_unproduced", { schedule: s.key, slot: new Date(record.lastSlotMs).toISOString() });
    }
    plans.set(s.key, planNext(s.trigger, s.hash, record, clock.now()));
  }

  /** Returns false when the store could not be asked (e.g. locked past its busy timeout); the plan is kept. */
  async function runDue(schedule: Schedule, plan: Plan): Promise<boolean> {
    const now = clock.now();
    let result;
    try {
      result = runs.claim(schedule.key, schedule.hash, plan, now, replicaId);
    } catch (err) {
      log.error("schedule_claim_failed", {
        schedule: schedule.key,
        slot: new Date(plan.slotMs).toISOString(),
        error: err,
      });
      return false;
    }
    if (result.claimed) {
      const slot = new Date(plan.slotMs).toISOString();
      let fired = false;
      try {
        await fire(schedule, plan.slotMs, stopping.signal);
        fired = true;
      } catch (err) {
        scheduleFires.inc({ schedule: schedule.key, result: "failed" });
        log.error("schedule_fire_failed", { schedule: schedule.key, slot, error: err });
      }
      if (fired) {
        scheduleFires.inc({ schedule: schedule.key, result: "fired" });
        log.info("schedule_fired", {
          schedule: schedule.key,
          task: `${schedule.namespace}:${schedule.taskname}`,
          slot,
          reason: plan.reason,
          late_ms: now - plan.slotMs,
        });
        try {
          runs.markProduced(schedule.key, plan.slotMs, clock.now());
        } catch (err) {
          // Only bookkeeping: the next start would warn about this slot needlessly.
          log.warn("schedule_mark_produced_failed", { schedule: schedule.key, slot, error: err });
        }
      }
    } else {
      scheduleFires.inc({ schedule: schedule.key, result: "claimed_elsewhere" });
      log.debug("schedule_slot_taken", { schedule: schedule.key, slot: new Date(plan.slotMs).toISOString() });
    }
    plans.set(schedule.key, planNext(schedule.trigger, schedule.hash, result.record, clock.now()));
    return true;
  }

  async function loop(): Promise<void> {
    const byKey = new Map(options.schedules.map((s) => [s.key, s]));
    while (!stopping.signal.aborted) {
      const now = clock.now();
      const due = [...plans.entries()].filter(([, p]) => p.slotMs <= now).sort((a, b) => a[1].slotMs - b[1].slotMs);
      let storeFailed = false;
      for (const [key, plan] of due) {
        if (stopping.signal.aborted) break;
        if (!(await runDue(byKey.get(key)!, plan))) storeFailed = true;
      }
      if (stopping.signal.aborted) break;
      if (storeFailed) {
        // The slot stays planned (late rather than lost); try again shortly instead of spinning.
        await clock.sleep(CLAIM_RETRY_MS, stopping.signal);
        continue;
      }
      const next = nextSlotMs();
      if (next === null) {
        await clock.sleep(maxSleepMs, stopping.signal);
        continue;
      }
      const wait = next - clock.now();
      if (wait > 0) await clock.sleep(Math.min(wait, maxSleepMs), stopping.signal);
    }
  }

  function nextSlotMs(): number | null {
    let min: number | null = null;
    for (const p of plans.values()) if (min === null || p.slotMs < min) min = p.slotMs;
    return min;
  }

  const done = loop();
  done.catch((err: unknown) => log.error("scheduler_failed", { error: err }));
  return {
    nextSlotMs,
    async stop() {
      stopping.abort();
      await done.catch(() => {});
    },
    done,
  };
}
