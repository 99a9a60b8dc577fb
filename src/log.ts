// One logger for every component: one line per event, text or JSON
// (TASKBROKER_LOG_FORMAT / TASKWORKER_LOG_FORMAT), a minimum level
// (…_LOG_FILTER), and redaction of fields that hold secrets.
export type Level = "trace" | "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

/** Field names whose values never reach a log line. */
const SECRET = /secret|password|token|signature/i;

export interface Logger {
  trace(event: string, fields?: Record<string, unknown>): void;
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LogOptions {
  format: "text" | "json";
  level: Level;
  /** Defaults to stderr, so stdout stays free for command output (--json). */
  write?: (line: string) => void;
}

/** Replaces secret-looking values anywhere in a (nested) structure. */
export function redact(value: unknown, key = ""): unknown {
  if (SECRET.test(key) && value !== undefined && value !== null) {
    return Array.isArray(value) ? value.map(() => "***") : "***";
  }
  if (Array.isArray(value)) return value.map((v) => redact(v));
  if (value && typeof value === "object" && !(value instanceof Uint8Array) && !(value instanceof Error)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redact(v, k);
    return out;
  }
  return value;
}

function plain(value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  return value;
}

function textValue(value: unknown): string {
  const v = plain(value);
  const s = typeof v === "string" ? v : JSON.stringify(v, (_k, x) => plain(x));
  return s !== undefined && /[\s"=]/.test(s) ? JSON.stringify(s) : String(s);
}

let stderrGuarded = false;
/**
 * Writes one line to stderr. A closed stderr (the reader of our pipe went
 * away: EPIPE) must not take a serving broker down with it, so write errors
 * are swallowed: losing log lines beats losing the process.
 */
function writeStderr(line: string): void {
  if (!stderrGuarded) {
    stderrGuarded = true;
    process.stderr.on("error", () => {});
  }
  try {
    process.stderr.write(line + "\n");
  } catch {
    // EPIPE and friends: see above.
  }
}

export function createLogger(options: LogOptions, bound: Record<string, unknown> = {}): Logger {
  const min = RANK[options.level];
  const write = options.write ?? writeStderr;
  const emit = (level: Level, event: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < min) return;
    const all = redact({ ...bound, ...fields }) as Record<string, unknown>;
    const ts = new Date().toISOString();
    if (options.format === "json") {
      write(JSON.stringify({ ts, level, event, ...all }, (_k, x) => plain(x)));
    } else {
      let line = `${ts} ${level.toUpperCase().padEnd(5)} ${event}`;
      for (const [k, v] of Object.entries(all)) if (v !== undefined) line += ` ${k}=${textValue(v)}`;
      write(line);
    }
  };
  return {
    trace: (e, f) => emit("trace", e, f),
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
    child: (fields) => createLogger(options, { ...bound, ...fields }),
  };
}

/** A logger that drops everything, for library use and tests that do not look. */
export const silentLogger: Logger = createLogger({ format: "text", level: "error", write: () => {} });
