// `taskplatform scheduler`: resolves its settings (config/scheduler.ts), loads
// schedule definitions, opens the run store and a producer (Kafka when
// TASKWORKER_KAFKA_BROKERS is set, else the broker's ingest RPC), and runs the scheduler loop until SIGTERM/SIGINT, when it stops
// sleeping, lets a fire in progress finish (bounded by --grace-ms) and exits 0.
// Exit codes: 0 stopped, 1 runtime failure, 2 usage or definition error.
import { commandHelp } from "../config/help.ts";
import { resolveSchedulerConfig, SCHEDULER_COMMAND } from "../config/scheduler.ts";
import { ConfigError } from "../config/source.ts";
import { createLogger, type Logger } from "../log.ts";
import { producerFromEnv } from "../sdk/producers.ts";
import { createRpcProducer } from "../sdk/rpc-producer.ts";
import { routerFromEnv } from "../sdk/routing.ts";
import { findTaskTemplate } from "../sdk/app.ts";
import type { ActivationProducer, TopicRouter } from "../sdk/producer.ts";
import { parseSecrets } from "../connect/secrets.ts";
import { buildScheduledActivation } from "../scheduler/activation.ts";
import { type Clock, systemClock } from "../scheduler/clock.ts";
import { ScheduleDefinitionError } from "../sdk/schedules.ts";
import { loadSchedules } from "../scheduler/loader.ts";
import type { FireFn } from "../scheduler/loop.ts";
import { startScheduler } from "../scheduler/loop.ts";
import { openRunStore } from "../scheduler/run-store.ts";

export function schedulerHelp(): string {
  return commandHelp(
    SCHEDULER_COMMAND,
    "taskplatform scheduler --schedules <module-or-file> [options]",
    `Runs periodic tasks. Schedules come from a module exporting \`schedules\` (or
defineSchedules(...)) or a YAML/JSON file mapping names to definitions:
  cleanup:  { task: "maintenance:cleanup", intervalSec: 60 }
  nightly:  { task: "reports:nightly", crontab: "0 3 * * *", kwargs: { full: true } }
SIGTERM/SIGINT: stop sleeping, let a fire in progress finish (bounded by --grace-ms), exit 0.`,
  );
}

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
  let resolved;
  try {
    resolved = resolveSchedulerConfig(argv, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`taskplatform scheduler: ${err.message}\n`);
    return 2;
  }
  if (resolved.help) {
    process.stdout.write(schedulerHelp());
    return 0;
  }
  const { schedules: source, db_path: dbPath, rpc_host: rpcHost, grace_ms: graceMs } = resolved.config;
  const log =
    run.log ??
    createLogger({ format: resolved.config.log_format, level: resolved.config.log_filter }).child({
      component: "scheduler",
    });

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
  const signals = run.stopSignal !== undefined ? null : signalled();
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
  await Promise.race([
    producer.close().catch((err: unknown) => log.warn("producer_close_failed", { error: err })),
    graceTimer,
  ]);
  runs.close();
  log.info("scheduler_stopped", {});
  return failed ? 1 : 0;
}
