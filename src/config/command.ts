// Loads a command's settings from its zod schema: defaults, then the YAML file
// given with -c/--config (when the command takes one), then PREFIX_*
// environment variables, then command-line flags, each later source winning
// field by field. The flags are declared on the schema (meta `flags`), so the
// parser (args.ts), the loader and --help (help.ts) all read one declaration.
// Every mistake is a one-line ConfigError naming the flag or variable as the
// user wrote it, the value, and what is expected.
import type { z } from "zod";
import { lastValue, parseCommandLine, type OptionSpec, type ParsedCommandLine } from "./args.ts";
import {
  emptyLayer,
  envLayer,
  envName,
  knownNames,
  mergeLayers,
  setPath,
  unknownVariable,
  validate,
  yamlLayer,
  type Layer,
} from "./source.ts";
import { SECRET_NAME, settings, type Setting } from "./walk.ts";

/** A command's configuration surface. */
export interface CommandSpec<S extends z.ZodType> {
  /** As typed after `taskplatform`, e.g. "worker" (used in messages). */
  command: string;
  schema: S;
  /** Environment prefix, e.g. "TASKWORKER_"; omitted: the environment is not read. */
  prefix?: string;
  /** Whether -c/--config FILE (YAML, same keys as the variables in lower case) is accepted. */
  configFile?: boolean;
  /** Whether positional arguments are allowed (e.g. `deadletters replay ID`). */
  positionals?: boolean;
  /** Variables under the prefix that other parts read and this command must not reject. */
  alsoKnown?: readonly string[];
}

export type Loaded<S extends z.ZodType> =
  | { help: true }
  | { help: false; config: z.output<S>; positional: string[]; given: ParsedCommandLine; ignored: string[] };

const CONFIG_OPTION: OptionSpec = { names: ["--config", "-c"], kind: "value" };

/** Settings that have a flag, with the option each one declares. */
export function flagSettings(schema: z.ZodType): Array<{ setting: Setting; option: OptionSpec }> {
  const out: Array<{ setting: Setting; option: OptionSpec }> = [];
  for (const s of settings(schema)) {
    if (!s.info.flags?.length) continue;
    // A boolean setting is a switch: `--autoreload`, `--no-skip-awaiting-futures`.
    const isFlag = s.info.expect === "true or false";
    out.push({
      setting: s,
      option: { names: s.info.flags, kind: isFlag ? "flag" : "value", negations: s.info.negations },
    });
  }
  return out;
}

/** The options a command accepts, in declaration order. */
export function commandOptions(spec: CommandSpec<z.ZodType>): OptionSpec[] {
  const options = flagSettings(spec.schema).map((f) => f.option);
  if (spec.configFile) options.unshift(CONFIG_OPTION);
  return options;
}

/** A layer holding what the flags set, each origin labelled with the flag as typed. */
function flagLayer(schema: z.ZodType, given: ParsedCommandLine): Layer {
  const layer = emptyLayer();
  for (const { setting, option } of flagSettings(schema)) {
    const values = given.values.get(option.names[0]!);
    if (!values?.length) continue;
    const last = values[values.length - 1]!;
    // A repeated flag of a list setting adds to the list (`--broker-host a --broker-host b`).
    const raw = setting.info.repeatable && values.length > 1 ? values.map((v) => v.value) : last.value;
    setPath(layer.tree, setting.path, raw);
    layer.origins.set(setting.path.join("."), {
      label: last.as,
      raw,
      secret: setting.path.some((p) => SECRET_NAME.test(p)),
    });
  }
  return layer;
}

/** Settings without effect here that the user set, named once for the start-up log. */
function ignoredGiven(schema: z.ZodType, merged: Layer): string[] {
  const out: string[] = [];
  for (const s of settings(schema)) {
    if (!s.info.ignored) continue;
    const origin = merged.origins.get(s.path.join("."));
    if (origin) out.push(`${origin.label.split(" ")[0]} (${s.info.ignored})`);
  }
  return out;
}

/**
 * Parses argv and the environment into the command's validated settings.
 * Returns `{ help: true }` for -h/--help. Throws ConfigError (one line).
 */
export function loadCommand<S extends z.ZodType>(
  spec: CommandSpec<S>,
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Loaded<S> {
  const given = parseCommandLine(argv, commandOptions(spec), { positionals: spec.positionals, command: spec.command });
  if (given.help) return { help: true };
  const file = spec.configFile ? lastValue(given, "--config") : undefined;
  const fileLayer = file ? yamlLayer(spec.schema, file) : emptyLayer();
  let envNested = emptyLayer();
  if (spec.prefix) {
    const also = new Set(spec.alsoKnown ?? []);
    const { layer, unknown } = envLayer(spec.schema, spec.prefix, env, (name) => also.has(name));
    // Flag-only settings are not variables: setting one in the environment is a mistake.
    const flagOnly = settings(spec.schema).filter((s) => s.info.flagOnly);
    for (const s of flagOnly) {
      const o = layer.origins.get(s.path.join("."));
      if (o) unknown.push(o.label);
    }
    if (unknown.length > 0) {
      const onlyFlags = new Set(flagOnly.map((s) => envName(spec.prefix!, s.path)));
      const known = [...knownNames(spec.schema, spec.prefix).filter((n) => !onlyFlags.has(n)), ...also];
      throw unknownVariable(unknown.sort()[0]!, known, spec.command);
    }
    envNested = layer;
  }
  const merged = [fileLayer, envNested, flagLayer(spec.schema, given)].reduce(mergeLayers);
  const config = validate(spec.schema, merged, spec.prefix ?? "");
  return { help: false, config, positional: given.positional, given, ignored: ignoredGiven(spec.schema, merged) };
}
