// Value types shared by every command's schema (broker, worker, scheduler,
// small CLI commands): durations with units, ports, counts, booleans spelled
// the ways operators spell them, and lists given as JSON, comma lists or YAML
// lists. Each declares (meta `expect`) how a valid value is worded in errors.
import { z } from "zod";

/** "250ms", "5s", "2m", "1h" or a bare number in the field's own unit. */
export function duration(unitMs: number) {
  return z
    .union([z.number(), z.string()])
    .transform((value, ctx) => {
      if (typeof value === "number") return value * unitMs;
      const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
      if (!m) {
        ctx.addIssue({ code: "custom", message: 'a duration such as "250ms", "5s", "2m" or a number' });
        return z.NEVER;
      }
      const n = Number(m[1]);
      const scale = m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : m[2] === "m" ? 60_000 : m[2] === "h" ? 3_600_000 : unitMs;
      return n * scale;
    })
    .meta({ expect: 'a duration such as "250ms", "5s", "2m" or a number' });
}

/** A duration whose field is in seconds ("_sec"): "5s", "2m", "1h", or a bare number of seconds. */
export function seconds() {
  return duration(1000)
    .transform((ms) => ms / 1000)
    .meta({ expect: 'seconds, or a duration such as "5s", "2m", "1h"' });
}

export const port = z.coerce.number().int().min(0).max(65535);
export const count = z.coerce.number().int().min(1);
export const bool = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"])])
  .transform((v) => (typeof v === "boolean" ? v : v === "true" || v === "1" || v === "yes"))
  .meta({ expect: "true or false" });
/** A list given as a JSON array string (`["a","b"]`), a comma list, or a YAML list. */
export const stringList = z
  .union([z.array(z.string()), z.string()])
  .transform((v, ctx) => {
    if (Array.isArray(v)) return v;
    const s = v.trim();
    if (s === "") return [];
    if (s.startsWith("[")) {
      try {
        const parsed: unknown = JSON.parse(s);
        if (Array.isArray(parsed) && parsed.every((x) => typeof x === "string")) return parsed as string[];
      } catch {}
      // The reference broker's environment syntax: [a, b] without quotes.
      if (s.endsWith("]") && !s.includes('"'))
        return s
          .slice(1, -1)
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean);
      ctx.addIssue({ code: "custom", message: 'a JSON array of strings such as ["a","b"]' });
      return z.NEVER;
    }
    return s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean);
  })
  .meta({ expect: 'a JSON array of strings such as ["a","b"], or a comma list' });

/** A list whose entries may also be comma lists: `--tasks a.ts,b.ts --tasks c.ts` is three entries. */
export const commaList = z
  .union([z.array(z.string()), z.string()])
  .transform((v) =>
    (Array.isArray(v) ? v : [v])
      .flatMap((s) => s.split(","))
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .meta({ expect: "a comma separated list" });

/** host:port, IPv6 hosts in brackets. */
export const ADDRESS = /^([^\s:[\]]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/;

/** A positive number (fractions allowed), e.g. seconds between two health-file touches. */
export const positiveNumber = z.coerce.number().positive();

/**
 * Request-signing secrets as Sentry's Python client reads them: a JSON array
 * of strings (the first signs, all verify), or one plain string.
 */
export const secretList = z
  .string()
  .transform((raw, ctx) => {
    const text = raw.trim();
    if (text === "") return [] as string[];
    if (!text.startsWith("[")) return [text];
    try {
      const value: unknown = JSON.parse(text);
      if (Array.isArray(value) && value.every((s) => typeof s === "string" && s !== "")) return value as string[];
    } catch {}
    ctx.addIssue({ code: "custom", message: 'a JSON array of non-empty strings such as ["new","old"], or one secret' });
    return z.NEVER;
  })
  .meta({ expect: 'a JSON array of non-empty strings such as ["new","old"], or one secret' });

/** A log level; Sentry's spellings (WARNING, CRITICAL, FATAL, any case) map onto ours. */
export const logLevel = z
  .string()
  .transform((v, ctx) => {
    const s = v.trim().toLowerCase();
    const mapped = s === "warning" ? "warn" : s === "critical" || s === "fatal" ? "error" : s;
    if (mapped === "trace" || mapped === "debug" || mapped === "info" || mapped === "warn" || mapped === "error")
      return mapped;
    ctx.addIssue({ code: "custom", message: "one of trace, debug, info, warn, error" });
    return z.NEVER;
  })
  .meta({ expect: "one of trace, debug, info, warn, error (Sentry's WARNING, CRITICAL, FATAL accepted)" });

/** Log line format; Sentry's `human` and `machine` mean text and json. */
export const logFormat = z
  .string()
  .transform((v, ctx) => {
    const s = v.trim().toLowerCase();
    if (s === "text" || s === "human") return "text" as const;
    if (s === "json" || s === "machine") return "json" as const;
    ctx.addIssue({ code: "custom", message: "one of text, json" });
    return z.NEVER;
  })
  .meta({ expect: "one of text, json (Sentry's human, machine accepted)" });

/** figment's inline dict syntax, which the reference broker's environment accepts: `{key=value,key2=value2}`. */
export function parseInlineDict(text: string): Record<string, string> | null {
  const s = text.trim();
  if (!s.startsWith("{") || !s.endsWith("}")) return null;
  const out: Record<string, string> = {};
  const inner = s.slice(1, -1).trim();
  if (inner === "") return out;
  for (const part of inner.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) return null;
    const unquote = (x: string) => x.trim().replace(/^"(.*)"$/, "$1");
    out[unquote(part.slice(0, eq))] = unquote(part.slice(eq + 1));
  }
  return out;
}

/**
 * A string -> string map: a YAML mapping, a JSON object, the reference's
 * `{key=value}` syntax, or one variable per entry (PREFIX_NAME__KEY=value).
 */
export const stringMap = z.record(z.string(), z.coerce.string());
