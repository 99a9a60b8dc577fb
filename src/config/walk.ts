// Reads a zod config schema as data: which settings exist, where maps
// (z.record) take a user-chosen key, each setting's default, description and
// what a valid value looks like. The loader uses it to reject unknown
// variables and to word errors; --help uses it so the listing never goes stale.
import { z } from "zod";

type Schema = z.core.$ZodType;

/** The zod definition node of a schema (internal but stable across zod v4). */
function def(schema: Schema): Record<string, unknown> & { type: string } {
  return (schema as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
}

function meta(schema: Schema): Record<string, unknown> | undefined {
  return z.globalRegistry.get(schema as z.ZodType) as Record<string, unknown> | undefined;
}

/** What wrappers (default, optional, ...) say about the value they wrap. */
export interface Unwrapped {
  /** The innermost schema: object, record, or a leaf. */
  core: Schema;
  hasDefault: boolean;
  defaultValue: unknown;
  optional: boolean;
  description?: string;
  /** Wording of a valid value, when a custom type declared one (meta `expect`). */
  expect?: string;
  /** Command-line names of the setting, canonical first (meta `flags`). */
  flags?: string[];
  /** Names that set a boolean setting to false (meta `negations`). */
  negations?: string[];
  /** Placeholder of the value in --help, e.g. "N" or "host:port" (meta `valueName`). */
  valueName?: string;
  /** Set only on the command line, not from the environment or the file (meta `flagOnly`). */
  flagOnly?: boolean;
  /** Accepted for compatibility but without effect here; the text says why (meta `ignored`). */
  ignored?: string;
  /** A list setting whose flag may be repeated, each occurrence adding an entry (meta `repeatable`). */
  repeatable?: boolean;
}

/** Peels default/prefault/optional/nullable/pipe wrappers, collecting what they say. */
export function unwrap(schema: Schema): Unwrapped {
  const out: Unwrapped = { core: schema, hasDefault: false, defaultValue: undefined, optional: false };
  let s = schema;
  for (;;) {
    const m = meta(s);
    if (m && out.description === undefined && typeof m.description === "string") out.description = m.description;
    if (m && out.expect === undefined && typeof m.expect === "string") out.expect = m.expect;
    if (m && out.flags === undefined && Array.isArray(m.flags)) out.flags = m.flags as string[];
    if (m && out.negations === undefined && Array.isArray(m.negations)) out.negations = m.negations as string[];
    if (m && out.valueName === undefined && typeof m.valueName === "string") out.valueName = m.valueName;
    if (m && out.flagOnly === undefined && m.flagOnly === true) out.flagOnly = true;
    if (m && out.ignored === undefined && typeof m.ignored === "string") out.ignored = m.ignored;
    if (m && out.repeatable === undefined && m.repeatable === true) out.repeatable = true;
    const d = def(s);
    if (d.type === "default" || d.type === "prefault") {
      if (!out.hasDefault) {
        out.hasDefault = true;
        out.defaultValue = d.defaultValue;
      }
      s = d.innerType as Schema;
    } else if (d.type === "optional" || d.type === "nullable") {
      out.optional = true;
      s = d.innerType as Schema;
    } else if (d.type === "pipe" && out.expect !== undefined) {
      // A transform with a declared expectation is a leaf (duration, list, bool).
      break;
    } else if (d.type === "pipe" && def(d.in as Schema).type !== "transform") {
      s = d.in as Schema;
    } else {
      break;
    }
  }
  out.core = s;
  return out;
}

export function kindOf(schema: Schema): "object" | "record" | "leaf" {
  const t = def(schema).type;
  return t === "object" ? "object" : t === "record" ? "record" : "leaf";
}

export function objectShape(schema: Schema): Record<string, Schema> {
  return def(schema).shape as Record<string, Schema>;
}

export function recordValue(schema: Schema): Schema {
  return def(schema).valueType as Schema;
}

/** The schema at a concrete path (record keys are free), or null when no such setting exists. */
export function schemaAt(root: Schema, path: readonly string[]): Schema | null {
  let s: Schema = root;
  for (const seg of path) {
    const core = unwrap(s).core;
    const kind = kindOf(core);
    if (kind === "object") {
      const next = objectShape(core)[seg];
      if (!next) return null;
      s = next;
    } else if (kind === "record") {
      s = recordValue(core);
    } else {
      return null;
    }
  }
  return s;
}

/** One documented setting. `path` uses "<name>" where a map takes a key. */
export interface Setting {
  path: string[];
  schema: Schema;
  info: Unwrapped;
  /** True inside a map entry: the default applies per entry. */
  inMap: boolean;
}

/** Every leaf setting, in schema order. */
export function settings(root: Schema): Setting[] {
  const out: Setting[] = [];
  const visit = (s: Schema, path: string[], inMap: boolean, inherited?: Unwrapped) => {
    const info = unwrap(s);
    const kind = kindOf(info.core);
    if (kind === "object") {
      for (const [k, v] of Object.entries(objectShape(info.core))) visit(v, [...path, k], inMap);
    } else if (kind === "record") {
      // A map of plain values (worker_map, default_metrics_tags) is documented on the map itself.
      visit(recordValue(info.core), [...path, "<name>"], true, info);
    } else {
      if (inherited && info.description === undefined) info.description = inherited.description;
      if (inherited && info.ignored === undefined) info.ignored = inherited.ignored;
      out.push({ path, schema: s, info, inMap });
    }
  };
  visit(root, [], false);
  return out;
}

/** Names of fields whose values are secrets (never shown). */
export const SECRET_NAME = /secret|password|token|signature/i;

/** "an integer from 0 to 65535", "one of text, json", ... for error messages and help. */
export function expectation(schema: Schema): string {
  const info = unwrap(schema);
  if (info.expect) return info.expect;
  const core = info.core as unknown as Record<string, unknown>;
  const d = def(info.core);
  switch (d.type) {
    case "number": {
      const noun = core.isInt ? "an integer" : "a number";
      const min = core.minValue as number | null;
      const max = core.maxValue as number | null;
      const finite = (n: number | null) => n !== null && Number.isFinite(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER;
      // .positive() is an exclusive minimum: "> 0", not ">= 0".
      const checks = (d.checks ?? []) as Array<{ _zod: { def: { check?: string; inclusive?: boolean } } }>;
      const exclusive = checks.some((c) => c._zod.def.check === "greater_than" && c._zod.def.inclusive === false);
      if (finite(min) && finite(max)) return `${noun} from ${min} to ${max}`;
      if (finite(min)) return `${noun} ${exclusive ? ">" : ">="} ${min}`;
      if (finite(max)) return `${noun} <= ${max}`;
      return noun;
    }
    case "enum":
      return `one of ${(core.options as string[]).join(", ")}`;
    case "string":
      return (core.minLength as number | null) ? "a non-empty string" : "a string";
    case "boolean":
      return "true or false";
    case "object":
      return "a group of settings";
    case "record":
      return "a map of named entries";
    default:
      return "a valid value";
  }
}

/** How a default is shown in --help and docs. */
export function showDefault(s: Setting): string {
  if (!s.info.hasDefault) return s.info.optional ? "(unset)" : "(required)";
  const v = s.info.defaultValue;
  if (Array.isArray(v)) return v.length === 0 ? "[]" : JSON.stringify(v);
  if (typeof v === "string") return v === "" ? '""' : v;
  return String(v);
}
