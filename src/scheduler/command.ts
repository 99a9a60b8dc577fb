// `taskplatform scheduler`: loads schedule definitions, opens the run store and
// a producer (Kafka when TASKWORKER_KAFKA_BROKERS is set, else the broker's
// ingest RPC), and runs the scheduler loop until SIGTERM/SIGINT, when it stops
// sleeping, lets a fire in progress finish (bounded by --grace-ms) and exits 0.
// Exit codes: 0 stopped, 1 runtime failure, 2 usage or definition error.
import { parseArgs } from "node:util";
import { createLogger, type Level, type Logger } from "../log.ts";
import { producerFromEnv } from "../producer/index.ts";
import { createRpcProducer } from "../producer/rpc.ts";
import { routerFromEnv } from "../routing.ts";
import { findTaskTemplate } from "../sdk/app.ts";
import type { ActivationProducer, TopicRouter } from "../sdk/producer.ts";
import { parseSecrets } from "../worker/secrets.ts";
import { buildScheduledActivation } from "./activation.ts";
import { type Clock, systemClock } from "./clock.ts";
import { ScheduleDefinitionError } from "./definition.ts";
import { loadSchedules } from "./loader.ts";
import type { FireFn } from "./loop.ts";
import { startScheduler } from "./loop.ts";
import { openRunStore } from "./run-store.ts";

export const SCHEDULER_HELP = `Usage: taskplatform scheduler --schedules <module-or-file> [options]

Runs periodic tasks. Schedules come from a module exporting \`schedules\` (or
defineSchedules(...)) or a YAML/JSON file mapping names to definitions:
  cleanup:  { task: "maintenance:cleanup", intervalSec: 60 }
  nightly:  { task: "reports:nightly", crontab: "0 3 * * *", kwargs: { full: true } }

Options (environment variable in brackets):
  --schedules <path|module>  schedule definitions [TASKSCHEDULER_SCHEDULES]
  --db <path>                run store, SQLite; replicas may share it [TASKSCHEDULER_DB_PATH]
                             (default ./taskscheduler.sqlite)
  --rpc-host <host:port>     produce to this broker's ingest RPC [TASKSCHEDULER_RPC_HOST];
                             otherwise Kafka when TASKWORKER_KAFKA_BROKERS is set, else
                             TASKWORKER_PRODUCE_ADDRESS / 127.0.0.1:50051
  --grace-ms <ms>            how long shutdown waits for a produce in progress (default 10000)
  --log-format text|json     [TASKSCHEDULER_LOG_FORMAT] (default text)
  --log-level <level>        trace|debug|info|warn|error [TASKSCHEDULER_LOG_FILTER] (default info)
`;

export interface SchedulerRunOptions {
  env?: Record<string, string | undefined>;
  /** Injected for tests; default the system clock. */
  clock?: Clock;
  log?: Logger;
  /** Resolves when the command should stop; default: SIGTERM or SIGINT. */
  stopSignal?: Promise<void>;
}

function signalled(): { promise: Promise<void>; dispose: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  const onSignal = () => resolve();
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return {
    promise,
    dispose: () => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    },
  };
}

export async function schedulerCommand(argv: string[], run: SchedulerRunOptions = {}): Promise<number> {
  const env = run.env ?? process.env;
  let flags;
  try {
    flags = parseArgs({
      args: argv,
      options: {
        schedules: { type: "string" },
        db: { type: "string" },
        "rpc-host": { type: "string" },
        "grace-ms": { type: "string" },
        "log-format": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`taskplatform scheduler: ${(err as Error).message}\n\n${SCHEDULER_HELP}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(SCHEDULER_HELP);
    return 0;
  }
  const format = flags["log-format"] ?? env.TASKSCHEDULER_LOG_FORMAT ?? "text";
  const level = (flags["log-level"] ?? env.TASKSCHEDULER_LOG_FILTER ?? "info").toLowerCase();
  if ((format !== "text" && format !== "json") || !["trace", "debug", "info", "warn", "error"].includes(level)) {
    process.stderr.write(`taskplatform scheduler: bad log format/level ${format}/${level}\n`);
    return 2;
  }
  const log = run.log ?? createLogger({ format, level: level as Level }).child({ component: "scheduler" });
  const source = flags.schedules ?? env.TASKSCHEDULER_SCHEDULES;
  if (!source) {
    process.stderr.write(`taskplatform scheduler: --schedules is required\n\n${SCHEDULER_HELP}`);
    return 2;
  }
  const graceMs = Number(flags["grace-ms"] ?? 10_000);
  if (!Number.isFinite(graceMs) || graceMs < 0) {
    process.stderr.write(`taskplatform scheduler: --grace-ms must be a non-negative number of ms\n`);
    return 2;
  }
  const dbPath = flags.db ?? env.TASKSCHEDULER_DB_PATH ?? "taskscheduler.sqlite";
  const rpcHost = flags["rpc-host"] ?? env.TASKSCHEDULER_RPC_HOST;

  let schedules;
  try {
    schedules = await loadSchedules(source);
  } catch (err) {
    if (!(err instanceof ScheduleDefinitionError)) throw err;
    log.error("schedules_invalid", { error: err.message });
    return 2;
  }

  const runs = openRunStore({ path: dbPath });
  let producer: ActivationProducer;
  let router: TopicRouter;
  if (rpcHost) {
    producer = createRpcProducer({ address: rpcHost, secrets: parseSecrets(env.TASKWORKER_GRPC_SHARED_SECRET) });
    router = routerFromEnv(env);
  } else {
    ({ producer, router } = producerFromEnv(env));
  }
  const clock = run.clock ?? systemClock;
  const fire: FireFn = async (schedule, slotMs) => {
    const { activation, bytes } = buildScheduledActivation(schedule, slotMs, clock.now(), findTaskTemplate);
    await producer.send(router.topicFor(activation.namespace), activation, bytes);
    log.debug("schedule_produced", { schedule: schedule.key, id: activation.id });
  };

  const scheduler = startScheduler({ schedules, runs, fire, clock, log });
  log.info("scheduler_started", { schedules: schedules.length, db: dbPath, target: rpcHost ?? "env" });
  const signals = run.stopSignal ? null : signalled();
  let failed = false;
  await Promise.race([
    run.stopSignal ?? signals!.promise,
    scheduler.done.catch(() => {
      failed = true;
    }),
  ]);
  signals?.dispose();
  const graceTimer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
  if ((await Promise.race([scheduler.stop().then(() => "ok" as const), graceTimer])) === "timeout") {
    log.warn("scheduler_stop_timeout", { grace_ms: graceMs });
  }
  await Promise.race([producer.close().catch((err: unknown) => log.warn("producer_close_failed", { error: err })), graceTimer]);
  runs.close();
  log.info("scheduler_stopped", {});
  return failed ? 1 : 0;
}
