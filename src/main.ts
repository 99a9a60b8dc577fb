#!/usr/bin/env bun
// The one entry point of the `taskplatform` binary: picks the subcommand and
// hands it the rest of argv (config/args.ts splits the two, so `-c file` may
// come before the command). Each command is loaded with a lazy import so a
// broken or missing module fails only its own command, and `--help` stays
// fast. Like the reference broker, `taskplatform -c config.yml` with no
// command (or `--run broker`) runs the broker, so an existing container
// command line works unchanged.
// Exit codes: 0 done, 1 runtime failure, 2 usage or configuration error.
import { version } from "../package.json";

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  broker: async (argv) => (await import("./cli/broker.ts")).brokerCommand(argv),
  deadletters: async (argv) => (await import("./cli/deadletters.ts")).deadlettersCommand(argv),
  inspect: async (argv) => (await import("./cli/inspect.ts")).inspectCommand(argv),
  worker: async (argv) => (await import("./cli/worker.ts")).workerCommand(argv),
  scheduler: async (argv) => (await import("./cli/scheduler.ts")).schedulerCommand(argv),
  demo: async (argv) => (await import("./cli/demo.ts")).demoCommand(argv),
};

async function main(argv: string[]): Promise<number> {
  const { splitCommand } = await import("./config/args.ts");
  const { ConfigError } = await import("./config/source.ts");
  let split;
  try {
    split = splitCommand(argv);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const { COMMANDS_HELP } = await import("./config/help.ts");
    process.stderr.write(`taskplatform: ${err.message}\n\n${COMMANDS_HELP}\n`);
    return 2;
  }
  let { command, rest } = split;
  if (command === "help") split.help = true;
  if (split.version || command === "version") {
    process.stdout.write(`taskplatform ${version}\n`);
    return 0;
  }
  if (split.help && (command === undefined || command === "help")) {
    const { mainHelp } = await import("./config/help.ts");
    process.stdout.write(mainHelp());
    return 0;
  }
  // The reference broker's command line: `taskbroker [-r broker|migrations] [-c file]`.
  if (command === undefined && (split.config !== undefined || split.run !== undefined)) {
    if (split.run === "migrations") {
      process.stderr.write(
        "taskplatform: no standalone migrations with the SQLite store; the broker migrates its file at start-up\n",
      );
      return 0;
    }
    if (split.run !== undefined && split.run !== "broker") {
      process.stderr.write(
        `taskplatform: --run=${JSON.stringify(split.run)} is invalid: expected broker or migrations\n`,
      );
      return 2;
    }
    command = "broker";
    rest = split.config !== undefined ? ["--config", split.config] : [];
  } else if (split.run !== undefined) {
    process.stderr.write(
      `taskplatform: --run names the command of the reference broker's command line; give either it or "${command}"\n`,
    );
    return 2;
  }
  if (command === undefined) {
    const { mainHelp } = await import("./config/help.ts");
    process.stdout.write(mainHelp());
    return 2;
  }
  const run = COMMANDS[command];
  if (!run) {
    const { COMMANDS_HELP } = await import("./config/help.ts");
    process.stderr.write(`taskplatform: unknown command "${command}"\n\n${COMMANDS_HELP}\n`);
    return 2;
  }
  if (!split.help) (await import("./cli/runtime-tuning.ts")).applyRuntimeTuning(command);
  return run(rest);
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`taskplatform: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
