// The runtime configuration file (hot reloaded, docs/spec/broker.md "Runtime
// configuration") parsed into rules, and the pure decisions made from them:
// does the kill switch drop this activation, is this namespace demoted. No I/O
// here, so every case is unit tested (test/runtime-rules.test.ts).
//
// File format (YAML):
//   kill_switch:
//     - taskname: sentry.tasks.noisy            # every activation of the task
//     - taskname: sentry.tasks.process_event    # only those with matching arguments
//       namespace: ingest                       # optional: only in this namespace
//       args:                                   # all conditions must hold
//         - position: 0                         # positional index ...
//           keyword: project_id                 # ... or keyword (either may be given)
//           values: [1, 42]                     # any of these values
//   drop_task_killswitch: [a.task, b.task]       # the reference broker's spelling: names only
//   demoted_namespaces:                          # namespace -> topic (Kafka mode)
//     issues.slow: taskworker-long
//   # or a list plus one topic:
//   # demoted_namespaces: [issues.slow]
//   # demoted_topic: taskworker-long
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import type { TaskParameters } from "../activation/parameters.ts";

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const argConditionSchema = z
  .object({
    position: z.number().int().min(0).optional(),
    keyword: z.string().min(1).optional(),
    values: z.array(scalar).min(1),
  })
  .strict()
  .refine((c) => c.position !== undefined || c.keyword !== undefined, {
    message: "an args condition needs a position or a keyword",
  });

const killRuleSchema = z
  .object({
    taskname: z.string().min(1),
    namespace: z.string().min(1).optional(),
    args: z.array(argConditionSchema).default([]),
  })
  .strict();

const fileSchema = z
  .object({
    kill_switch: z.array(killRuleSchema).default([]),
    drop_task_killswitch: z.array(z.string().min(1)).default([]),
    demoted_namespaces: z.union([z.record(z.string(), z.string().min(1)), z.array(z.string().min(1))]).default({}),
    demoted_topic: z.string().min(1).optional(),
  })
  .strict()
  .refine((f) => !Array.isArray(f.demoted_namespaces) || f.demoted_namespaces.length === 0 || f.demoted_topic, {
    message: "demoted_namespaces given as a list needs demoted_topic",
  });

export type ArgCondition = z.output<typeof argConditionSchema>;
export type KillRule = z.output<typeof killRuleSchema>;
type Scalar = z.output<typeof scalar>;

/** Compiled rules: kill rules indexed by task name so unmatched tasks cost one map lookup. */
export interface RuntimeRules {
  killByTaskname: ReadonlyMap<string, readonly KillRule[]>;
  demoted: ReadonlyMap<string, string>;
}

export const emptyRules: RuntimeRules = { killByTaskname: new Map(), demoted: new Map() };

/** The file is not valid; the message names where and why (one line). */
export class InvalidRuntimeConfig extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRuntimeConfig";
  }
}

/** Parses the file's text; an empty file means "no rules". Throws InvalidRuntimeConfig. */
export function parseRuntimeConfig(text: string): RuntimeRules {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InvalidRuntimeConfig(`YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (doc === null || doc === undefined) return emptyRules;
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    throw new InvalidRuntimeConfig(`${where}: ${issue.message}`);
  }
  const f = parsed.data;
  const killByTaskname = new Map<string, KillRule[]>();
  const add = (rule: KillRule) => {
    const list = killByTaskname.get(rule.taskname) ?? [];
    list.push(rule);
    killByTaskname.set(rule.taskname, list);
  };
  for (const rule of f.kill_switch) add(rule);
  for (const taskname of f.drop_task_killswitch) add({ taskname, args: [] });
  const demoted = new Map<string, string>();
  if (Array.isArray(f.demoted_namespaces)) {
    for (const ns of f.demoted_namespaces) demoted.set(ns, f.demoted_topic!);
  } else {
    for (const [ns, topic] of Object.entries(f.demoted_namespaces)) demoted.set(ns, topic);
  }
  return { killByTaskname, demoted };
}

/** Whether any kill rule names this task (cheap pre-check before decoding parameters). */
export function mayKill(rules: RuntimeRules, taskname: string): boolean {
  return rules.killByTaskname.has(taskname);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * One argument value against one configured value. Numbers compare by value,
 * strings exactly; msgpack bin compares as UTF-8 text (the Python producer
 * sends str as str, but raw-topic payloads arrive as bin).
 */
export function valueMatches(actual: unknown, wanted: Scalar): boolean {
  if (wanted === null) return actual === null || actual === undefined;
  if (typeof wanted === "number") {
    if (typeof actual === "number") return actual === wanted;
    if (typeof actual === "bigint") return Number.isSafeInteger(wanted) && actual === BigInt(wanted);
    return false;
  }
  if (typeof wanted === "boolean") return actual === wanted;
  if (typeof actual === "string") return actual === wanted;
  if (actual instanceof Uint8Array) {
    try {
      return utf8.decode(actual) === wanted;
    } catch {
      return false;
    }
  }
  return false;
}

function conditionHolds(c: ArgCondition, params: TaskParameters): boolean {
  // Python lets a caller pass the same parameter positionally or by keyword;
  // a condition naming both matches whichever the producer used.
  const candidates: unknown[] = [];
  if (c.position !== undefined && c.position < params.args.length) candidates.push(params.args[c.position]);
  if (c.keyword !== undefined && Object.hasOwn(params.kwargs, c.keyword)) candidates.push(params.kwargs[c.keyword]);
  return candidates.some((actual) => c.values.some((wanted) => valueMatches(actual, wanted)));
}

export type KillDecision = "keep" | "kill" | "undecodable";

/**
 * Whether the kill switch drops an activation. `params` is called only when a
 * rule needs argument values; if it throws, the answer is "undecodable" and
 * the caller keeps the task (fail open: never drop what we cannot read).
 */
export function killDecision(
  rules: RuntimeRules,
  activation: { taskname: string; namespace: string },
  params: () => TaskParameters,
): KillDecision {
  const candidates = rules.killByTaskname.get(activation.taskname);
  if (!candidates) return "keep";
  let decoded: TaskParameters | null = null;
  for (const rule of candidates) {
    if (rule.namespace !== undefined && rule.namespace !== activation.namespace) continue;
    if (rule.args.length === 0) return "kill";
    if (decoded === null) {
      try {
        decoded = params();
      } catch {
        return "undecodable";
      }
    }
    const p = decoded;
    if (rule.args.every((c) => conditionHolds(c, p))) return "kill";
  }
  return "keep";
}

/** Kafka mode: the topic a demoted namespace's activations are forwarded to, or null. */
export function demotedTopic(rules: RuntimeRules, namespace: string): string | null {
  return rules.demoted.get(namespace) ?? null;
}

/** Task names with at least one kill rule (the stored-row sweep pages through these). */
export function killedTasknames(rules: RuntimeRules): string[] {
  return [...rules.killByTaskname.keys()];
}
