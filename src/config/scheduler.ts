// The scheduler's settings (`taskplatform scheduler`): one zod schema whose
// keys are the TASKSCHEDULER_* variables in lower case and whose meta `flags`
// are the command-line names. Loaded by config/command.ts like every other
// command (flags > environment > -c file > defaults). Where the scheduler
// produces to (Kafka or the ingest RPC) is the producer's TASKWORKER_*
// settings unless --rpc-host names a broker.
import { z } from "zod";
import { loadCommand, type CommandSpec } from "./command.ts";
import { ConfigError } from "./source.ts";
import { ADDRESS, duration, logFormat, logLevel } from "./types.ts";

export const SCHEDULER_PREFIX = "TASKSCHEDULER_";

export const schedulerSchema = z.object({
  schedules: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Schedule definitions: a module exporting `schedules` (or defineSchedules(...)), or a YAML/JSON file mapping names to definitions (required).",
    )
    .meta({ flags: ["--schedules"], valueName: "module-or-file" }),
  db_path: z
    .string()
    .min(1)
    .default("taskscheduler.sqlite")
    .describe("Run store (SQLite): the last slot each schedule fired; replicas may share it.")
    .meta({ flags: ["--db"], valueName: "path" }),
  rpc_host: z
    .string()
    .regex(ADDRESS, "host:port")
    .optional()
    .describe(
      "Produce to this broker's ingest RPC; unset: Kafka when TASKWORKER_KAFKA_BROKERS is set, else TASKWORKER_PRODUCE_ADDRESS or 127.0.0.1:50051.",
    )
    .meta({ flags: ["--rpc-host"], valueName: "host:port", expect: "host:port" }),
  grace_ms: duration(1)
    .default(10_000)
    .describe("On SIGTERM/SIGINT, how long a produce in progress may finish, ms.")
    .meta({ flags: ["--grace-ms"], valueName: "ms" }),
  log_format: logFormat
    .default("text")
    .describe("Log line format.")
    .meta({ flags: ["--log-format"], valueName: "text|json" }),
  log_filter: logLevel
    .default("info")
    .describe("Minimum log level.")
    .meta({ flags: ["--log-level"], valueName: "level" }),
});

export type SchedulerSettings = z.output<typeof schedulerSchema> & { schedules: string };

export const SCHEDULER_COMMAND: CommandSpec<typeof schedulerSchema> = {
  command: "scheduler",
  schema: schedulerSchema,
  prefix: SCHEDULER_PREFIX,
  configFile: true,
};

export type SchedulerArgs = { help: true } | { help: false; config: SchedulerSettings };

/** `taskplatform scheduler` arguments and TASKSCHEDULER_* variables; throws ConfigError (one line). */
export function resolveSchedulerConfig(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): SchedulerArgs {
  const loaded = loadCommand(SCHEDULER_COMMAND, argv, env);
  if (loaded.help) return loaded;
  const { schedules } = loaded.config;
  if (!schedules)
    throw new ConfigError("no schedules given: expected --schedules <module-or-file> (or TASKSCHEDULER_SCHEDULES)");
  return { help: false, config: { ...loaded.config, schedules } };
}
