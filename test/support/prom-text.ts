// A small Prometheus text exposition format (0.0.4) parser for tests: turns a
// /metrics body into samples so tests assert on values, not on substrings.
// Handles HELP/TYPE comments, label values with escapes (\\, \", \n),
// +Inf/-Inf/NaN, optional timestamps; rejects lines it does not understand.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseValue(s: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  const v = Number(s);
  if (s === "" || Number.isNaN(v)) throw new Error(`bad sample value ${JSON.stringify(s)}`);
  return v;
}

function parseLabels(line: string, start: number, lineNo: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1; // after "{"
  const fail = (why: string) => {
    throw new Error(`line ${lineNo}: ${why}: ${line}`);
  };
  for (;;) {
    while (line[i] === " ") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!m) fail("bad label name");
    const key = m![0];
    i += key.length;
    if (line[i] !== "=" || line[i + 1] !== '"') fail('expected ="');
    i += 2;
    let value = "";
    for (;;) {
      const c = line[i];
      if (c === undefined) fail("unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const n = line[i + 1];
        if (n === "n") value += "\n";
        else if (n === "\\" || n === '"') value += n;
        else fail("bad escape");
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++; // closing quote
    if (key in labels) fail(`duplicate label ${key}`);
    labels[key] = value;
    while (line[i] === " ") i++;
    if (line[i] === ",") i++;
    else if (line[i] !== "}") fail("expected , or }");
  }
}

export function parsePrometheusText(text: string): Exposition {
  const out: Exposition = { samples: [], types: new Map(), help: new Map() };
  const lines = text.split("\n");
  lines.forEach((raw, idx) => {
    const line = raw.trimEnd();
    const lineNo = idx + 1;
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line);
      if (!m) return; // plain comment
      if (m[1] === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(m[3]!)) {
          throw new Error(`line ${lineNo}: unknown type ${m[3]}`);
        }
        out.types.set(m[2]!, m[3]!);
      } else out.help.set(m[2]!, m[3]!);
      return;
    }
    const nm = NAME.exec(line);
    if (!nm) throw new Error(`line ${lineNo}: bad metric name: ${line}`);
    let i = nm[0].length;
    let labels: Record<string, string> = {};
    if (line[i] === "{") {
      const parsed = parseLabels(line, i, lineNo);
      labels = parsed.labels;
      i = parsed.end;
    }
    const rest = line.slice(i).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2) throw new Error(`line ${lineNo}: expected value [timestamp]: ${line}`);
    out.samples.push({ name: nm[0], labels, value: parseValue(rest[0]!) });
  });
  return out;
}

/** Sum of the samples of `name` whose labels include `match`. */
export function sumOf(exp: Exposition, name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const s of exp.samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

/** The single sample of `name` with exactly these labels, or undefined. */
export function valueOf(exp: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const keys = Object.keys(labels);
  return exp.samples.find(
    (s) =>
      s.name === name && Object.keys(s.labels).length === keys.length && keys.every((k) => s.labels[k] === labels[k]),
  )?.value;
}
