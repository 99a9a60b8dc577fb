// One logger for every component: one line per event, text or JSON
// (TASKBROKER_LOG_FORMAT / TASKWORKER_LOG_FORMAT), a minimum level, and
// redaction of fields that hold secrets. The broker's log_filter uses the
// reference broker's directive syntax (`info,librdkafka=warn,h2=off`: a
// default level, then target=level pairs); targets are our components (the
// `component` field of a line) or the reference's module names mapped onto
// them (parseLogFilter).
export type Level = "trace" | "debug" | "info" | "warn" | "error";
const RANK: Record<Level | "off", number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, off: 5 };

/** A parsed log_filter: the level of lines without a more specific directive, and per-component levels. */
export interface LogFilter {
  level: Level | "off";
  /** component -> level; "*" is never a key (that is `level`). */
  targets: Record<string, Level | "off">;
}

/**
 * The reference broker's module names (its tracing targets) and the component
 * of ours that does the same job. `taskbroker` is the whole program, so it
 * sets the default; names not listed here are taken as our component names.
 */
export const LOG_TARGET_ALIASES: Readonly<Record<string, readonly string[]>> = {
  librdkafka: ["kafka_client"],
  rdkafka: ["kafka_client"],
  kafkajs: ["kafka_client"],
  "taskbroker::kafka": ["kafka"],
  "taskbroker::grpc": ["rpc"],
  "taskbroker::upkeep": ["upkeep"],
  "taskbroker::store": ["store"],
  sqlx: ["store"],
  "taskbroker::push": ["push"],
  "taskbroker::fetch": ["push"],
  "taskbroker::runtime_config": ["runtime_config"],
  "taskbroker::metrics": ["statsd"],
  // The HTTP/2 and gRPC libraries of the reference; our transport logs as rpc.
  h2: ["rpc_transport"],
  hyper: ["rpc_transport"],
  tonic: ["rpc_transport"],
  tower: ["rpc_transport"],
};

const LEVEL_NAMES = new Set(["trace", "debug", "info", "warn", "warning", "error", "off"]);
const levelOf = (s: string): Level | "off" => (s === "warning" ? "warn" : (s as Level | "off"));

/**
 * Parses `info,librdkafka=warn,h2=off` (also a bare level, `TRACE`, or
 * `target` alone meaning trace for it). Span filters (`target[span]=level`)
 * apply to the whole target here. Returns a one-line problem instead of
 * throwing, for the configuration loader to word.
 */
export function parseLogFilter(text: string): LogFilter | { problem: string } {
  const out: LogFilter = { level: "error", targets: {} };
  let sawDefault = false;
  for (const raw of text.split(",")) {
    const directive = raw.trim();
    if (directive === "") continue;
    const eq = directive.lastIndexOf("=");
    const targetPart = (eq >= 0 ? directive.slice(0, eq) : directive).replace(/\[.*\]$/, "").trim();
    const levelPart =
      eq >= 0
        ? directive
            .slice(eq + 1)
            .trim()
            .toLowerCase()
        : "";
    if (eq < 0 && LEVEL_NAMES.has(targetPart.toLowerCase())) {
      out.level = levelOf(targetPart.toLowerCase());
      sawDefault = true;
      continue;
    }
    if (eq >= 0 && !LEVEL_NAMES.has(levelPart)) return { problem: `"${levelPart}" in "${directive}" is not a level` };
    if (targetPart === "" || !/^[A-Za-z0-9_:.-]+$/.test(targetPart))
      return { problem: `"${directive}" is not a directive` };
    const level = eq >= 0 ? levelOf(levelPart) : "trace";
    if (targetPart === "taskbroker" || targetPart === "taskplatform") {
      out.level = level;
      sawDefault = true;
      continue;
    }
    for (const component of LOG_TARGET_ALIASES[targetPart] ?? [targetPart]) out.targets[component] = level;
  }
  // Like the reference (EnvFilter): with no default directive only the named targets log, at error otherwise.
  if (!sawDefault) out.level = "error";
  return out;
}

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
  /** A minimum level, or a parsed log_filter (per-component levels). */
  level: Level | LogFilter;
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
  const filter = options.level;
  const component = typeof bound.component === "string" ? bound.component : undefined;
  const min =
    typeof filter === "string"
      ? RANK[filter]
      : RANK[(component !== undefined ? filter.targets[component] : undefined) ?? filter.level];
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
