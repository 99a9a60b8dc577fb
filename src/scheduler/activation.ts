// The activation a schedule produces for one slot, built with the SDK's
// activation builder. Its id is derived from (schedule, definition, slot), so
// retrying a Produce for the same slot is deduplicated by the broker instead of
// queuing the task twice. Trace propagation is turned off: a periodic run is
// not part of whichever trace happened to be active in the scheduler.
import {
  type ActivationTemplate,
  type BuiltActivation,
  buildActivation,
  DEFAULT_PROCESSING_DEADLINE_S,
} from "../activation/build.ts";
import { PROPAGATE_TRACES_HEADER } from "../activation/headers.ts";
import { derivedActivationId } from "../activation/ids.ts";
import { NO_RETRY } from "../sdk/retry.ts";
import type { Schedule } from "../sdk/schedules.ts";

/** Name of the schedule that produced the activation. */
export const SCHEDULE_HEADER = "taskplatform-schedule";
/** The slot (ISO 8601, UTC) the activation was produced for. */
export const SCHEDULE_SLOT_HEADER = "taskplatform-schedule-slot";

/** Finds the registered task's template, so its retry policy, deadline and expiry apply. */
export type TemplateLookup = (namespace: string, taskname: string, application?: string) => ActivationTemplate | null;

/** A UUID4-shaped id (32 hex chars) that is the same for the same schedule, definition and slot. */
export function scheduledActivationId(schedule: Pick<Schedule, "key" | "hash">, slotMs: number): string {
  return derivedActivationId(`${schedule.key}\0${schedule.hash}\0${slotMs}`);
}

export function defaultTemplate(schedule: Schedule): ActivationTemplate {
  return {
    application: schedule.application ?? "default",
    namespace: schedule.namespace,
    taskname: schedule.taskname,
    retry: NO_RETRY,
    expiresSec: undefined,
    processingDeadlineS: DEFAULT_PROCESSING_DEADLINE_S,
    atMostOnce: false,
    compression: "auto",
  };
}

export function buildScheduledActivation(
  schedule: Schedule,
  slotMs: number,
  nowMs: number,
  lookup?: TemplateLookup,
): BuiltActivation {
  const found = lookup?.(schedule.namespace, schedule.taskname, schedule.application) ?? null;
  const template = found ?? defaultTemplate(schedule);
  return buildActivation(
    schedule.application ? { ...template, application: schedule.application } : template,
    {
      args: schedule.args,
      kwargs: schedule.kwargs,
      expires: schedule.expiresSec,
      headers: {
        ...schedule.headers,
        [SCHEDULE_HEADER]: schedule.key,
        [SCHEDULE_SLOT_HEADER]: new Date(slotMs).toISOString(),
        [PROPAGATE_TRACES_HEADER]: false,
      },
    },
    {},
    nowMs,
    scheduledActivationId(schedule, slotMs),
  );
}
