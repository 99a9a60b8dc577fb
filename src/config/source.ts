// Generic layered configuration: a zod schema filled from an optional YAML
// file and from PREFIX_* environment variables (`__` = nesting, map keys
// lower-cased), environment winning. It remembers where every value came from
// so a bad value is reported as the user wrote it (TASKBROKER_GRPC_PORT, or
// `grpc_port in broker.yaml`), on one line, with secrets shown as ***.
// The broker's flat aliases live in load.ts; the worker can use this as is.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { parseInlineDict } from "./types.ts";
import { expectation, kindOf, objectShape, SECRET_NAME, schemaAt, settings, unwrap } from "./walk.ts";

/** A configuration problem; the message is one line meant for the operator. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Where a value came from: the name the user wrote and the raw value. */
export interface Origin {
  label: string;
  raw: unknown;
  secret: boolean;
}

export type Tree = Record<string, unknown>;

/** A value tree plus the origin of each path ("a.b.c"). */
export interface Layer {
  tree: Tree;
  origins: Map<string, Origin>;
}

export function emptyLayer(): Layer {
  return { tree: {}, origins: new Map() };
}

const isPlainObject = (v: unknown): v is Tree => typeof v === "object" && v !== null && !Array.isArray(v);

export function setPath(tree: Tree, path: readonly string[], value: unknown): void {
  let node = tree;
  for (const seg of path.slice(0, -1)) {
    if (!isPlainObject(node[seg])) node[seg] = {};
    node = node[seg] as Tree;
  }
  node[path[path.length - 1]!] = value;
}

export function getPath(tree: Tree, path: readonly string[]): unknown {
  let node: unknown = tree;
  for (const seg of path) {
    if (!isPlainObject(node)) return undefined;
    node = node[seg];
  }
  return node;
}

/** Overlays `top` on `base` (deep for objects, replacing leaves); origins follow. */
export function mergeLayers(base: Layer, top: Layer): Layer {
  const merge = (a: unknown, b: unknown): unknown => {
    if (isPlainObject(a) && isPlainObject(b)) {
      const out: Tree = { ...a };
      for (const [k, v] of Object.entries(b)) out[k] = merge(a[k], v);
      return out;
    }
    return b === undefined ? a : b;
  };
  const origins = new Map(base.origins);
  for (const [k, v] of top.origins) origins.set(k, v);
  return { tree: merge(base.tree, top.tree) as Tree, origins };
}

/** The variable name for a path: ["store","sqlite","path"] -> TASKBROKER_STORE__SQLITE__PATH. */
export function envName(prefix: string, path: readonly string[]): string {
  return prefix + path.map((p) => p.toUpperCase()).join("__");
}

function isSecretPath(path: readonly string[]): boolean {
  return path.some((p) => SECRET_NAME.test(p));
}

/** Shows a value in an error: quoted, one line, at most 80 characters, or *** for secrets. */
export function showValue(raw: unknown, secret: boolean): string {
  if (secret) return "***";
  let s = typeof raw === "string" ? JSON.stringify(raw) : (JSON.stringify(raw) ?? String(raw));
  if (s.length > 80) s = s.slice(0, 77) + "...";
  return s;
}

/**
 * Reads PREFIX_* variables into a layer. Names not in the schema are returned
 * in `unknown` (the caller decides whether an alias explains them).
 * A group or map may also be given whole as JSON (`{"default": {...}}`).
 */
export function envLayer(
  schema: z.ZodType,
  prefix: string,
  env: Record<string, string | undefined>,
  skip: (name: string) => boolean = () => false,
): { layer: Layer; unknown: string[] } {
  const layer = emptyLayer();
  const unknown: string[] = [];
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    if (!name.startsWith(prefix) || raw === undefined || skip(name)) continue;
    // An empty variable counts as unset: `FOO= cmd` is how shells clear one.
    if (raw === "") continue;
    const path = name.slice(prefix.length).toLowerCase().split("__");
    const target = path.some((p) => p === "") ? null : schemaAt(schema, path);
    if (!target) {
      unknown.push(name);
      continue;
    }
    let value: unknown = raw;
    if (kindOf(unwrap(target).core) !== "leaf") {
      try {
        value = JSON.parse(raw);
      } catch {
        // The reference broker's environment syntax for a map: {key=value,key2=value2}.
        const dict = kindOf(unwrap(target).core) === "record" ? parseInlineDict(raw) : null;
        if (dict) {
          setPath(layer.tree, path, dict);
          layer.origins.set(path.join("."), { label: name, raw, secret: isSecretPath(path) });
          continue;
        }
        throw new ConfigError(
          `${name}=${showValue(raw, isSecretPath(path))} is invalid: expected ${expectation(target)} as JSON, ` +
            `or set its fields as ${name}__<FIELD>`,
        );
      }
    }
    setPath(layer.tree, path, value);
    layer.origins.set(path.join("."), { label: name, raw, secret: isSecretPath(path) });
  }
  return { layer, unknown };
}

/** Parses a YAML file into a layer; keys must exist in the schema unless `allow` accepts them. */
export function yamlLayer(schema: z.ZodType, file: string, allow: (topKey: string) => boolean = () => false): Layer {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const first = String((err as Error).message).split("\n")[0];
    throw new ConfigError(`config file ${file} is not valid YAML: ${first}`);
  }
  if (doc === null || doc === undefined) return emptyLayer();
  if (!isPlainObject(doc))
    throw new ConfigError(`config file ${file} must be a mapping of settings, not ${typeof doc}`);
  // An empty value (`key:` or `key: ""`) means unset, as an empty variable does.
  const prune = (node: Tree) => {
    for (const [k, v] of Object.entries(node)) {
      if (v === null || v === "") delete node[k];
      else if (isPlainObject(v)) prune(v);
    }
  };
  prune(doc);
  const layer: Layer = { tree: doc, origins: new Map() };
  const visit = (value: unknown, path: string[]) => {
    const dotted = path.join(".");
    const target = schemaAt(schema, path);
    if (!target) {
      if (path.length === 1 && allow(path[0]!)) {
        layer.origins.set(dotted, { label: `${dotted} in ${file}`, raw: value, secret: isSecretPath(path) });
        return;
      }
      const hint = siblingHint(schema, path);
      throw new ConfigError(`unknown setting ${dotted} in ${file}${hint ? ` (did you mean ${hint}?)` : ""}`);
    }
    const kind = kindOf(unwrap(target).core);
    if (kind !== "leaf" && isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) visit(v, [...path, k]);
      return;
    }
    layer.origins.set(dotted, { label: `${dotted} in ${file}`, raw: value, secret: isSecretPath(path) });
  };
  for (const [k, v] of Object.entries(doc)) visit(v, [k]);
  return layer;
}

/**
 * The setting an unknown file key was probably meant to be: the closest name
 * among the keys its parent mapping accepts, as a dotted path.
 */
function siblingHint(schema: z.ZodType, path: readonly string[]): string | undefined {
  const parent = path.length === 1 ? schema : schemaAt(schema, path.slice(0, -1));
  if (!parent) return undefined;
  const core = unwrap(parent).core;
  if (kindOf(core) !== "object") return undefined;
  const best = suggest(path[path.length - 1]!, Object.keys(objectShape(core)));
  return best === undefined ? undefined : [...path.slice(0, -1), best].join(".");
}

/** Parses the merged tree; the first problem becomes a one-line ConfigError. */
export function validate<S extends z.ZodType>(schema: S, layer: Layer, prefix: string): z.output<S> {
  const result = schema.safeParse(layer.tree);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.map(String);
  // The nearest path the user actually set names the problem; an unset
  // required field is named by the variable that would set it.
  for (let n = path.length; n > 0; n--) {
    const origin = layer.origins.get(path.slice(0, n).join("."));
    if (!origin) continue;
    const at = schemaAt(schema, path) ?? schemaAt(schema, path.slice(0, n));
    const why =
      at && unwrap(at).expect ? expectation(at) : issue.code === "custom" || !at ? issue.message : expectation(at);
    if (n === path.length)
      return fail(`${origin.label}=${showValue(origin.raw, origin.secret)} is invalid: expected ${why}`);
    return fail(`${origin.label}: ${path.slice(n).join(".")} is invalid: expected ${why} (${issue.message})`);
  }
  const at = schemaAt(schema, path);
  const missing = getPath(layer.tree, path) === undefined;
  const name = envName(prefix, path);
  const why = at && issue.code !== "custom" ? expectation(at) : issue.message;
  return fail(missing ? `${name} is required: expected ${why}` : `${name} is invalid: expected ${why}`);
}

function fail(message: string): never {
  throw new ConfigError(message);
}

/** Closest known variable name, to suggest on a typo (edit distance <= 3). */
export function suggest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 4;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** Every variable name a schema accepts, map entries shown with <NAME>. */
export function knownNames(schema: z.ZodType, prefix: string): string[] {
  return settings(schema).map((s) => envName(prefix, s.path));
}

/** Options of the generic loader. */
export interface LoadOptions<S extends z.ZodType> {
  schema: S;
  /** e.g. "TASKWORKER_" */
  prefix: string;
  env: Record<string, string | undefined>;
  yamlPath?: string;
}

/** Env over YAML over defaults, unknown PREFIX_* variables rejected. */
export function loadConfig<S extends z.ZodType>(opts: LoadOptions<S>): z.output<S> {
  const file = opts.yamlPath ? yamlLayer(opts.schema, opts.yamlPath) : emptyLayer();
  const { layer, unknown } = envLayer(opts.schema, opts.prefix, opts.env);
  if (unknown.length > 0) throw unknownVariable(unknown[0]!, knownNames(opts.schema, opts.prefix));
  return validate(opts.schema, mergeLayers(file, layer), opts.prefix);
}

export function unknownVariable(name: string, known: readonly string[], command?: string): ConfigError {
  const hint = suggest(name, known);
  const help = command ? `taskplatform ${command} --help` : "--help";
  return new ConfigError(
    `unknown variable ${name}${hint ? ` (did you mean ${hint}?)` : ""}; ${help} lists every variable`,
  );
}
