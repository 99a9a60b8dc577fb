// Pure slot logic: given a schedule's trigger, its definition hash, the last
// run recorded in the run store and the time, which slot fires next, and
// whether a planned slot may still be claimed. No I/O and no clock here; the
// loop (loop.ts) and the run store (run-store.ts) call these.
//
// Rules (spec: docs/spec/worker.md "Scheduler"):
// - A schedule with no recorded run, or whose recorded definition hash differs
//   from the current one, runs at the next opportunity (now).
// - Otherwise the next slot is the first one at or after now, so slots missed
//   while no scheduler ran are not caught up.
// - Interval slots are anchored to the last recorded slot (last + k * interval),
//   so a restart neither resets the phase (which would skip runs) nor re-runs
//   the last slot. Crontab slots are the expression's own minutes.
import { CronExpressionParser } from "cron-parser";
import type { Trigger } from "../sdk/schedules.ts";

/** What the run store remembers about a schedule. */
export interface RunRecord {
  /** Definition hash of the schedule when it last fired. */
  hash: string;
  /** The slot (epoch ms) last claimed. */
  lastSlotMs: number;
}

export type PlanReason = "first" | "changed" | "due";

/** The slot a scheduler intends to fire, and why. */
export interface Plan {
  slotMs: number;
  reason: PlanReason;
}

const floorSecond = (ms: number) => Math.floor(ms / 1000) * 1000;

/** The first crontab slot strictly after `afterMs`. */
export function cronSlotAfter(trigger: Extract<Trigger, { kind: "crontab" }>, afterMs: number): number {
  return CronExpressionParser.parse(trigger.expression, { tz: trigger.tz, currentDate: new Date(afterMs) })
    .next()
    .getTime();
}

/** The first slot at or after `nowMs` that is later than `lastSlotMs`. */
export function nextSlot(trigger: Trigger, lastSlotMs: number, nowMs: number): number {
  if (trigger.kind === "interval") {
    const step = trigger.seconds * 1000;
    const k = Math.max(1, Math.ceil((nowMs - lastSlotMs) / step));
    return lastSlotMs + k * step;
  }
  return cronSlotAfter(trigger, Math.max(nowMs - 1, lastSlotMs));
}

export function planNext(trigger: Trigger, hash: string, record: RunRecord | null, nowMs: number): Plan {
  if (record === null) return { slotMs: floorSecond(nowMs), reason: "first" };
  if (record.hash !== hash) return { slotMs: floorSecond(nowMs), reason: "changed" };
  return { slotMs: nextSlot(trigger, record.lastSlotMs, nowMs), reason: "due" };
}

/**
 * Whether `plan` may still be claimed against the record as it is now in the
 * store (read inside the claiming transaction). A first/changed run is claimed
 * by the replica that first writes the new hash; a due slot by the replica that
 * first moves lastSlot up to it. Everyone else sees the write and re-plans.
 */
export function claimable(plan: Plan, hash: string, record: RunRecord | null): boolean {
  if (plan.reason === "due") return record !== null && record.hash === hash && record.lastSlotMs < plan.slotMs;
  return record === null || record.hash !== hash;
}
