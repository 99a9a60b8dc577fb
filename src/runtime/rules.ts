// The runtime configuration file (hot reloaded; docs/operating.md "Runtime
// configuration") parsed into rules, and the pure decisions made from them:
// does the kill switch drop this activation, is this namespace demoted and to
// which topic. No I/O here, so every case is unit tested
// (test/runtime-rules.test.ts).
//
// The reference broker's format (Sentry's taskbroker), accepted unchanged:
//   drop_task_killswitch:
//     - sentry.tasks.noisy                 # every activation of the task
//     - name: sentry.tasks.unmerge         # only those whose arguments match
//       select_arg: {0: 123}               #   positional index -> value
//       select_kwarg: {project_id: 123}    #   keyword -> value; ANY condition suffices
//   demoted_namespaces: [issues.slow]      # forwarded to demoted_topic (Kafka)
//   demoted_topic: taskworker-demoted      # default: kafka_long_topic (taskworker-long)
//   demoted_topic_cluster: kafka:9092      # default: the retry/dead-letter producer's cluster
//
// This broker's earlier format keeps working alongside it:
//   kill_switch:
//     - taskname: sentry.tasks.process_event
//       namespace: ingest                  # optional: only in this namespace
//       args:                              # ALL conditions must hold
//         - position: 0                    # positional index ...
//           keyword: project_id            # ... or keyword (either may be given)
//           values: [1, 42]                # any of these values
//   demoted_namespaces: {issues.slow: taskworker-long}   # namespace -> topic
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import type { TaskParameters } from "../activation/parameters.ts";
import { sameValue, type SelectorParameters } from "./selector.ts";

/** YAML integers arrive as bigint (the file is parsed with intAsBigInt, so 123 and 123.0 stay apart). */
const integer = z.union([z.bigint(), z.number().int()]).transform((v) => Number(v));
const scalar = z.union([
  z.string(),
  z
    .bigint()
    .transform((v) => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v)),
  z.number(),
  z.boolean(),
  z.null(),
]);

const legacyConditionSchema = z
  .object({
    position: integer.pipe(z.number().min(0)).optional(),
    keyword: z.string().min(1).optional(),
    values: z.array(scalar).min(1),
  })
  .strict()
  .refine((c) => c.position !== undefined || c.keyword !== undefined, {
    message: "an args condition needs a position or a keyword",
  });

const legacyRuleSchema = z
  .object({
    taskname: z.string().min(1),
    namespace: z.string().min(1).optional(),
    args: z.array(legacyConditionSchema).default([]),
  })
  .strict();

/** select_arg keys are positional indexes: YAML `{0: 123}` (or `{"0": 123}`). */
const selectorSchema = z
  .object({
    name: z.string().min(1),
    select_arg: z.record(z.string().regex(/^\d+$/, "a positional index such as 0"), z.unknown()).nullish(),
    select_kwarg: z.record(z.string().min(1), z.unknown()).nullish(),
  })
  .strict();

const fileSchema = z
  .object({
    drop_task_killswitch: z.array(z.union([z.string().min(1), selectorSchema])).nullish(),
    kill_switch: z.array(legacyRuleSchema).nullish(),
    demoted_namespaces: z.union([z.array(z.string().min(1)), z.record(z.string(), z.string().min(1))]).nullish(),
    demoted_topic: z.string().min(1).nullish(),
    demoted_topic_cluster: z.string().min(1).nullish(),
  })
  .strict();

type Scalar = z.output<typeof scalar>;
export type LegacyCondition = z.output<typeof legacyConditionSchema>;

/**
 * One compiled kill rule. `name`: every activation of the task. `selector`:
 * the reference broker's selector, any condition suffices, values compared
 * exactly (selector.ts). `conditions`: this broker's earlier format, every
 * condition must hold, values compared leniently (valueMatches).
 */
export type KillRule =
  | { kind: "name"; taskname: string }
  | { kind: "selector"; taskname: string; args: Array<[number, unknown]>; kwargs: Array<[string, unknown]> }
  | { kind: "conditions"; taskname: string; namespace?: string; args: LegacyCondition[] };

/** Compiled rules: kill rules indexed by task name so unmatched tasks cost one map lookup. */
export interface RuntimeRules {
  killByTaskname: ReadonlyMap<string, readonly KillRule[]>;
  /** Demoted namespace -> topic; null means the default (kafka_long_topic). */
  demoted: ReadonlyMap<string, string | null>;
  /** demoted_topic_cluster: bootstrap address (or configured cluster name); null: the producer's cluster. */
  demotedCluster: string | null;
  /** Things worth a log line: legacy keys in use, selectors that can never match. */
  notes: readonly string[];
}

export const emptyRules: RuntimeRules = {
  killByTaskname: new Map(),
  demoted: new Map(),
  demotedCluster: null,
  notes: [],
};

/** The default demotion topic, as in the reference broker (its kafka_long_topic default). */
export const DEFAULT_LONG_TOPIC = "taskworker-long";

/** The file is not valid; the message names where and why (one line). */
export class InvalidRuntimeConfig extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRuntimeConfig";
  }
}

const TOP_LEVEL_KEYS = [
  "drop_task_killswitch",
  "demoted_namespaces",
  "demoted_topic",
  "demoted_topic_cluster",
  "kill_switch",
];
const SELECTOR_KEYS = ["name", "select_arg", "select_kwarg"];
const LEGACY_KEYS = ["taskname", "namespace", "args", "position", "keyword", "values"];

/** Edit distance, for "did you mean" on a misspelt key. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const here = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = here;
    }
  }
  return row[b.length]!;
}

function describeIssue(issue: z.core.$ZodIssue, prefix: PropertyKey[] = []): string {
  if (issue.code === "invalid_union") {
    // Report the branch that got furthest: a problem inside the object rather
    // than "expected a string" for an entry written as a map.
    const branches = issue.errors.map((list) => list[0]).filter((i): i is z.core.$ZodIssue => i !== undefined);
    const best = branches.find((i) => i.code !== "invalid_type" || i.path.length > 0);
    if (best) return describeIssue(best, [...prefix, ...issue.path]);
  }
  const path = [...prefix, ...issue.path];
  const where = path.length > 0 ? path.map(String).join(".") : "(top level)";
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0]!;
    const known = path.length === 0 ? TOP_LEVEL_KEYS : path[0] === "drop_task_killswitch" ? SELECTOR_KEYS : LEGACY_KEYS;
    const near = known.find((k) => distance(k, key) <= 3);
    return `${where}: unknown key "${key}"${near ? ` (did you mean ${near}?)` : ""}`;
  }
  return `${where}: ${issue.message}`;
}

/** Parses the file's text; an empty file means "no rules". Throws InvalidRuntimeConfig. */
export function parseRuntimeConfig(text: string): RuntimeRules {
  let doc: unknown;
  try {
    doc = parseYaml(text, { intAsBigInt: true });
  } catch (err) {
    throw new InvalidRuntimeConfig(`YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (doc === null || doc === undefined) return emptyRules;
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) throw new InvalidRuntimeConfig(describeIssue(parsed.error.issues[0]!));
  const f = parsed.data;
  const notes: string[] = [];
  const killByTaskname = new Map<string, KillRule[]>();
  const add = (rule: KillRule) => {
    const list = killByTaskname.get(rule.taskname) ?? [];
    list.push(rule);
    killByTaskname.set(rule.taskname, list);
  };
  for (const entry of f.drop_task_killswitch ?? []) {
    if (typeof entry === "string") {
      add({ kind: "name", taskname: entry });
      continue;
    }
    const args = Object.entries(entry.select_arg ?? {}).map(([k, v]): [number, unknown] => [Number(k), v]);
    const kwargs = Object.entries(entry.select_kwarg ?? {});
    if (args.length === 0 && kwargs.length === 0) {
      notes.push(`selector for ${entry.name} has no select_arg or select_kwarg, so it matches nothing`);
    }
    add({ kind: "selector", taskname: entry.name, args, kwargs });
  }
  for (const rule of f.kill_switch ?? []) add({ kind: "conditions", ...rule });
  if ((f.kill_switch ?? []).length > 0) {
    notes.push(
      "kill_switch is this broker's earlier format; drop_task_killswitch with select_arg/select_kwarg is the reference broker's",
    );
  }

  const demoted = new Map<string, string | null>();
  const listed = f.demoted_namespaces ?? [];
  if (Array.isArray(listed)) {
    for (const ns of listed) demoted.set(ns, f.demoted_topic ?? null);
  } else {
    // Map form: each namespace names its topic; demoted_topic is not needed.
    for (const [ns, topic] of Object.entries(listed)) demoted.set(ns, topic);
  }
  return { killByTaskname, demoted, demotedCluster: f.demoted_topic_cluster ?? null, notes };
}

/** Whether any kill rule names this task (cheap pre-check before decoding parameters). */
export function mayKill(rules: RuntimeRules, taskname: string): boolean {
  return rules.killByTaskname.has(taskname);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Earlier-format matching of one argument value against one configured value.
 * Numbers compare by value, strings exactly; msgpack bin compares as UTF-8
 * text (raw-topic payloads arrive as bin).
 */
export function valueMatches(actual: unknown, wanted: Scalar): boolean {
  if (wanted === null) return actual === null || actual === undefined;
  if (typeof wanted === "bigint")
    return actual === wanted || (typeof actual === "number" && Number.isInteger(actual) && BigInt(actual) === wanted);
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

function conditionHolds(c: LegacyCondition, params: TaskParameters): boolean {
  // Python lets a caller pass the same parameter positionally or by keyword;
  // a condition naming both matches whichever the producer used.
  const candidates: unknown[] = [];
  if (c.position !== undefined && c.position < params.args.length) candidates.push(params.args[c.position]);
  if (c.keyword !== undefined && Object.hasOwn(params.kwargs, c.keyword)) candidates.push(params.kwargs[c.keyword]);
  return candidates.some((actual) => c.values.some((wanted) => valueMatches(actual, wanted)));
}

/** The reference broker's selector: any listed positional or keyword value suffices; none listed matches nothing. */
function selectorHolds(rule: Extract<KillRule, { kind: "selector" }>, params: SelectorParameters): boolean {
  return (
    rule.args.some(([i, want]) => i < params.args.length && sameValue(want, params.args[i])) ||
    rule.kwargs.some(([k, want]) => Object.hasOwn(params.kwargs, k) && sameValue(want, params.kwargs[k]))
  );
}

/** `match` is the reference broker's metric tag: whole_task or selector. */
export type KillDecision = { kill: true; match: "whole_task" | "selector" } | { kill: false; undecodable: boolean };

/** The two ways of reading an activation's arguments; each is called at most once, and only when a rule needs it. */
export interface ParameterReaders {
  /** Earlier format: msgpack or the deprecated JSON (parameters.ts). Throws when unreadable. */
  conditions(): TaskParameters;
  /** Reference broker's selectors (selector.ts). Throws when unreadable. */
  selector(): SelectorParameters;
}

const KEEP: KillDecision = { kill: false, undecodable: false };

function once<T>(read: () => T): () => T | null {
  let done = false;
  let value: T | null = null;
  return () => {
    if (!done) {
      done = true;
      try {
        value = read();
      } catch {
        value = null;
      }
    }
    return value;
  };
}

/**
 * Whether the kill switch drops an activation. Whole-task rules are checked
 * first, without reading arguments. A rule whose arguments cannot be read
 * does not match (fail open: never drop what we cannot read); when no rule
 * matched and some could not read the arguments, `undecodable` is true.
 */
export function killDecision(
  rules: RuntimeRules,
  activation: { taskname: string; namespace: string },
  readers: ParameterReaders,
): KillDecision {
  const candidates = rules.killByTaskname.get(activation.taskname);
  if (!candidates) return KEEP;
  const applies = candidates.filter(
    (r) => r.kind !== "conditions" || r.namespace === undefined || r.namespace === activation.namespace,
  );
  if (applies.some((r) => r.kind === "name" || (r.kind === "conditions" && r.args.length === 0))) {
    return { kill: true, match: "whole_task" };
  }
  const conditions = once(readers.conditions);
  const selector = once(readers.selector);
  let undecodable = false;
  for (const rule of applies) {
    if (rule.kind === "selector") {
      if (rule.args.length === 0 && rule.kwargs.length === 0) continue;
      const p = selector();
      if (p === null) undecodable = true;
      else if (selectorHolds(rule, p)) return { kill: true, match: "selector" };
    } else if (rule.kind === "conditions") {
      const p = conditions();
      if (p === null) undecodable = true;
      else if (rule.args.every((c) => conditionHolds(c, p))) return { kill: true, match: "selector" };
    }
  }
  return undecodable ? { kill: false, undecodable: true } : KEEP;
}

/** The topic a demoted namespace's activations go to, or null when it is not demoted. */
export function demotedTopic(
  rules: RuntimeRules,
  namespace: string,
  longTopic: string = DEFAULT_LONG_TOPIC,
): string | null {
  if (!rules.demoted.has(namespace)) return null;
  return rules.demoted.get(namespace) ?? longTopic;
}

/** Task names with at least one kill rule (the stored-row sweep pages through these). */
export function killedTasknames(rules: RuntimeRules): string[] {
  return [...rules.killByTaskname.keys()];
}
