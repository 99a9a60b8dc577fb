// The one command-line parser of every `taskplatform` command. Tokenising
// (`--name value`, `--name=value`, `-c file`, `--`) is node:util parseArgs,
// which ships with Bun and Node, so there is no parser of our own to keep
// correct; what it cannot do for us is word the mistakes, so it runs in
// non-strict mode and this file checks the tokens against the declared options
// and turns every problem into a one-line ConfigError naming the option.
// Options are declared as data (OptionSpec); config/command.ts derives them
// from a command's zod schema so --help and the parser never disagree.
import { parseArgs } from "node:util";
import { ConfigError, suggest } from "./source.ts";

/** One command-line option. `names` are spelled as typed: "--tasks", "-c". */
export interface OptionSpec {
  /** Canonical name first (the key in ParsedCommandLine), then aliases. */
  names: readonly string[];
  /** "value" takes an argument; "flag" does not (a boolean switch). */
  kind: "value" | "flag";
  /** Names that switch a flag off (`--no-skip-awaiting-futures`). */
  negations?: readonly string[];
}

export interface ParsedCommandLine {
  /** Canonical option name -> every value given, in order (flags: "true"/"false"), with the name as typed. */
  values: Map<string, Array<{ value: string; as: string }>>;
  positional: string[];
  /** -h / --help was given (everything else is then ignored). */
  help: boolean;
}

const HELP = ["-h", "--help"];

/** Parses argv against `options`; -h/--help is always known. Throws ConfigError. */
export function parseCommandLine(
  argv: readonly string[],
  options: readonly OptionSpec[],
  opts: { positionals?: boolean; command?: string } = {},
): ParsedCommandLine {
  const byName = new Map<string, { spec: OptionSpec; negated: boolean }>();
  for (const spec of options) {
    for (const n of spec.names) byName.set(n, { spec, negated: false });
    for (const n of spec.negations ?? []) byName.set(n, { spec, negated: true });
  }
  // parseArgs needs to know which options take a value so `--tasks a.ts` is one token.
  const declared: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, { spec }] of byName) {
    const type = spec.kind === "value" ? "string" : "boolean";
    if (name.startsWith("--")) declared[name.slice(2)] = { ...declared[name.slice(2)], type, multiple: true };
    else declared[`short-${name.slice(1)}`] = { type, short: name.slice(1), multiple: true };
  }
  declared.help = { type: "boolean", short: "h", multiple: true };
  const { tokens } = parseArgs({
    args: [...argv],
    options: declared,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const out: ParsedCommandLine = { values: new Map(), positional: [], help: false };
  const known = [...byName.keys(), ...HELP].filter((n) => n.startsWith("--"));
  for (const token of tokens) {
    if (token.kind === "positional") {
      out.positional.push(token.value);
      continue;
    }
    if (token.kind === "option-terminator") continue;
    const typed = token.rawName;
    if (HELP.includes(typed)) {
      out.help = true;
      continue;
    }
    const entry = byName.get(typed);
    if (!entry) {
      const hint = typed.startsWith("--") ? suggest(typed, known) : undefined;
      const where = opts.command ? ` (taskplatform ${opts.command} --help lists every option)` : "";
      throw new ConfigError(`unknown option ${typed}${hint ? ` (did you mean ${hint}?)` : ""}${where}`);
    }
    const canonical = entry.spec.names[0]!;
    let value: string;
    if (entry.spec.kind === "value") {
      if (token.value === undefined) throw new ConfigError(`option ${typed} needs a value`);
      value = token.value;
    } else {
      if (token.inlineValue) throw new ConfigError(`option ${typed} takes no value (got ${typed}=${token.value})`);
      value = entry.negated ? "false" : "true";
    }
    const list = out.values.get(canonical) ?? [];
    list.push({ value, as: typed });
    out.values.set(canonical, list);
  }
  if (!out.help && !opts.positionals && out.positional.length > 0) {
    throw new ConfigError(`unexpected argument "${out.positional[0]}"`);
  }
  return out;
}

/** The last value given for an option (later wins, as shells users expect). */
export function lastValue(parsed: ParsedCommandLine, name: string): string | undefined {
  const list = parsed.values.get(name);
  return list?.[list.length - 1]?.value;
}

/** Options the top level understands before the command name (`taskplatform -c f.yaml broker`). */
const GLOBAL: readonly OptionSpec[] = [
  { names: ["--config", "-c"], kind: "value" },
  { names: ["--run", "-r"], kind: "value" },
  { names: ["--version", "-V"], kind: "flag" },
];

export interface SplitCommand {
  /** The command name, or undefined when none was given. */
  command: string | undefined;
  /** The command's own arguments, with a leading -c/--config moved behind them. */
  rest: string[];
  /** `--run` of the reference broker (`-r broker`, `-r migrations`). */
  run?: string;
  help: boolean;
  version: boolean;
  /** A -c given before the command (or with no command at all). */
  config?: string;
}

/**
 * Splits `taskplatform [global options] <command> [command arguments]`.
 * Global options are tokenised by the same parser; everything from the
 * command name on belongs to the command.
 */
export function splitCommand(argv: readonly string[]): SplitCommand {
  const { tokens } = parseArgs({
    args: [...argv],
    options: {
      config: { type: "string", short: "c" },
      run: { type: "string", short: "r" },
      version: { type: "boolean", short: "V" },
      help: { type: "boolean", short: "h" },
    },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const first = tokens.find((t) => t.kind === "positional" || t.kind === "option-terminator");
  const cut = first ? first.index : argv.length;
  const globals = parseCommandLine(argv.slice(0, cut), GLOBAL);
  const command = first?.kind === "positional" ? first.value : undefined;
  const config = lastValue(globals, "--config");
  const rest = command !== undefined ? [...argv.slice(cut + 1)] : [];
  if (config !== undefined && command !== undefined) rest.push("--config", config);
  return {
    command,
    rest,
    run: lastValue(globals, "--run"),
    help: globals.help,
    version: globals.values.has("--version"),
    config,
  };
}
