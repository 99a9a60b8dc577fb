#!/usr/bin/env bun
// The one entry point of the `taskplatform` binary: picks the subcommand and
// hands it the rest of argv. Each command is loaded with a lazy import so a
// broken or missing module fails only its own command, and `--help` stays
// fast. Exit codes: 0 done, 1 runtime failure, 2 usage or configuration error.
import { version } from "../package.json";

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  broker: async (argv) => (await import("./cli/broker.ts")).brokerCommand(argv),
  deadletters: async (argv) => (await import("./cli/deadletters.ts")).deadlettersCommand(argv),
  inspect: async (argv) => (await import("./cli/inspect.ts")).inspectCommand(argv),
  worker: async (argv) => (await import("./worker.ts")).workerCommand(argv),
  scheduler: async (argv) => (await import("./scheduler/command.ts")).schedulerCommand(argv),
  demo: async (argv) => (await import("./demo.ts")).demoCommand(argv),
};

/** Moves a leading `-c file` (given before the command) behind the command, where commands look for it. */
export function splitArgv(argv: string[]): { command: string | undefined; rest: string[] } {
  const global: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const a = argv[i]!;
    if ((a === "-c" || a === "--config") && i + 1 < argv.length) {
      global.push(a, argv[i + 1]!);
      i += 2;
    } else if (a.startsWith("--config=")) {
      global.push(a);
      i += 1;
    } else break;
  }
  return { command: argv[i], rest: [...argv.slice(i + 1), ...global] };
}

async function main(argv: string[]): Promise<number> {
  const { command, rest } = splitArgv(argv);
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    const { mainHelp } = await import("./config/help.ts");
    process.stdout.write(mainHelp());
    return command === undefined ? 2 : 0;
  }
  if (command === "--version" || command === "-V" || command === "version") {
    process.stdout.write(`taskplatform ${version}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    const { COMMANDS_HELP } = await import("./config/help.ts");
    process.stderr.write(`taskplatform: unknown command "${command}"\n\n${COMMANDS_HELP}\n`);
    return 2;
  }
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
