// The scheduler's public entry points: schedule definitions and loading, the
// pure slot rules, the SQLite run store, clocks and the loop (the command is cli/scheduler.ts).
export {
  buildScheduledActivation,
  SCHEDULE_HEADER,
  SCHEDULE_SLOT_HEADER,
  scheduledActivationId,
  type TemplateLookup,
} from "./activation.ts";
export { type Clock, createManualClock, createScaledClock, type ManualClock, systemClock } from "./clock.ts";
export {
  checkCrontab,
  defineSchedules,
  normalizeSchedules,
  type Schedule,
  type ScheduleDefinition,
  ScheduleDefinitionError,
  type ScheduleTable,
  type Trigger,
} from "../sdk/schedules.ts";
export { loadSchedules } from "./loader.ts";
export { type FireFn, type Scheduler, type SchedulerOptions, startScheduler } from "./loop.ts";
export { type ClaimResult, openRunStore, type RunStore, type StoredRun } from "./run-store.ts";
export { claimable, nextSlot, type Plan, planNext, type RunRecord } from "./slots.ts";
