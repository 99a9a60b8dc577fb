// Schedule definitions: what a user writes (in a module, YAML or JSON) and the
// validated, normalised form the scheduler runs. Each schedule names a task
// ("namespace:taskname"), a trigger (a fixed interval in whole seconds, or a
// five-field crontab with minute precision) and the args/kwargs/headers of the
// activations it produces. A definition hash identifies the definition, so a
// changed schedule is noticed against the run store (see scheduler/slots.ts).
// Part of the SDK because user modules call defineSchedules; the scheduler
// (scheduler/) imports it from here.
import { createHash } from "node:crypto";
import { CronExpressionParser } from "cron-parser";
import { z } from "zod";

/** One schedule as written by the user. Exactly one of `intervalSec` / `crontab`. */
export interface ScheduleDefinition {
  /** "namespace:taskname" of the task to run. */
  task: string;
  /** Run every N seconds (whole seconds, >= 1). */
  intervalSec?: number;
  /** minute hour day-of-month month day-of-week, or @hourly/@daily/@weekly/@monthly/@yearly. */
  crontab?: string;
  /** Time zone the crontab is read in. Default "UTC". Only with `crontab`. */
  tz?: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Extra activation headers; values are scalars, sent as strings. */
  headers?: Record<string, string | number | boolean | null>;
  /** Application of the activation when the task is not in the loaded registry. Default "default". */
  application?: string;
  /** Seconds after production after which the activation must not start. Default: the task's own. */
  expiresSec?: number;
}

/** Schedules by name; the name is the key runs are stored under. */
export type ScheduleTable = Record<string, ScheduleDefinition>;

export type Trigger = { kind: "interval"; seconds: number } | { kind: "crontab"; expression: string; tz: string };

/** A validated schedule, ready to plan and fire. */
export interface Schedule {
  /** The schedule's name (its key in the table). */
  key: string;
  namespace: string;
  taskname: string;
  trigger: Trigger;
  args: unknown[];
  kwargs: Record<string, unknown>;
  headers: Record<string, string | number | boolean | null>;
  application: string | undefined;
  expiresSec: number | undefined;
  /** Hash of everything above except the key; changes when the definition changes. */
  hash: string;
}

export class ScheduleDefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScheduleDefinitionError";
  }
}

// @secondly and six-field expressions are refused: the spec fixes minute precision.
const CRON_ALIASES = new Set([
  "@yearly",
  "@annually",
  "@monthly",
  "@weekly",
  "@daily",
  "@hourly",
  "@weekdays",
  "@weekends",
]);

/** Throws a message naming the problem when `expression` is not a minute-precision crontab. */
export function checkCrontab(expression: string, tz = "UTC"): void {
  const expr = expression.trim();
  if (expr.startsWith("@")) {
    if (!CRON_ALIASES.has(expr.toLowerCase())) throw new Error(`unsupported crontab alias ${JSON.stringify(expr)}`);
  } else {
    const fields = expr.split(/\s+/).length;
    if (fields !== 5) {
      throw new Error(
        `crontab ${JSON.stringify(expr)} has ${fields} fields; expected 5 (minute hour day-of-month month day-of-week)`,
      );
    }
  }
  try {
    CronExpressionParser.parse(expr, { tz, currentDate: new Date(0) }).next();
  } catch (err) {
    throw new Error(`crontab ${JSON.stringify(expr)} is invalid: ${(err as Error).message}`);
  }
}

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const definitionSchema = z
  .strictObject({
    task: z.string().regex(/^[^:\s]+:\S+$/, 'must be "namespace:taskname"'),
    intervalSec: z.number().int("must be whole seconds").min(1, "must be at least 1 second").optional(),
    crontab: z.string().min(1).optional(),
    tz: z.string().min(1).optional(),
    args: z.array(z.unknown()).default([]),
    kwargs: z.record(z.string(), z.unknown()).default({}),
    headers: z.record(z.string(), scalar).default({}),
    application: z.string().min(1).optional(),
    expiresSec: z.number().int().min(1).optional(),
  })
  .superRefine((def, ctx) => {
    if ((def.intervalSec === undefined) === (def.crontab === undefined)) {
      ctx.addIssue({ code: "custom", message: "needs exactly one of intervalSec or crontab" });
    }
    if (def.tz !== undefined && def.crontab === undefined) {
      ctx.addIssue({ code: "custom", path: ["tz"], message: "only applies to crontab schedules" });
    }
    if (def.crontab !== undefined) {
      try {
        checkCrontab(def.crontab, def.tz);
      } catch (err) {
        ctx.addIssue({ code: "custom", path: ["crontab"], message: (err as Error).message });
      }
    }
  });

/** Key order and byte arrays made canonical, so equal definitions hash equally across processes. */
function canonical(value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString("hex") };
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = canonical((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

export function definitionHash(schedule: Omit<Schedule, "key" | "hash">): string {
  const text = JSON.stringify(canonical(schedule));
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

function normalizeOne(key: string, raw: unknown): Schedule {
  const parsed = definitionSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? `.${issue.path.join(".")}` : "";
    throw new ScheduleDefinitionError(`schedule ${JSON.stringify(key)}${where}: ${issue.message}`);
  }
  const def = parsed.data;
  const colon = def.task.indexOf(":");
  const trigger: Trigger =
    def.intervalSec !== undefined
      ? { kind: "interval", seconds: def.intervalSec }
      : { kind: "crontab", expression: def.crontab!.trim(), tz: def.tz ?? "UTC" };
  const body = {
    namespace: def.task.slice(0, colon),
    taskname: def.task.slice(colon + 1),
    trigger,
    args: def.args,
    kwargs: def.kwargs,
    headers: def.headers,
    application: def.application,
    expiresSec: def.expiresSec,
  };
  return { key, ...body, hash: definitionHash(body) };
}

/** Validates a table of schedules; throws ScheduleDefinitionError naming the schedule and field. */
export function normalizeSchedules(table: unknown): Schedule[] {
  if (!table || typeof table !== "object" || Array.isArray(table)) {
    throw new ScheduleDefinitionError("schedules must be an object mapping schedule names to definitions");
  }
  return Object.entries(table).map(([key, raw]) => {
    if (key.trim() === "") throw new ScheduleDefinitionError("schedule names must not be empty");
    return normalizeOne(key, raw);
  });
}

/**
 * Typed helper for user modules: `export const schedules = defineSchedules({...})`.
 * Validates eagerly, so a bad definition fails when the module is imported.
 */
export function defineSchedules<T extends ScheduleTable>(table: T): T {
  normalizeSchedules(table);
  return table;
}
