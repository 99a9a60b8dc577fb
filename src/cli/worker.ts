// `taskplatform worker`: resolve flags, TASKWORKER_* variables and the
// optional -c file (config/worker.ts), start the worker (src/worker.ts), and
// shut down gracefully on SIGTERM/SIGINT (stop fetching, let running tasks
// finish within the grace period, report every result held, exit 0).
// Exit 2 on a usage or configuration error (one line), 1 on start-up failure.
import { commandHelp } from "../config/help.ts";
import { ConfigError } from "../config/source.ts";
import { resolveWorkerConfig, WORKER_COMMAND } from "../config/worker.ts";
import { createLogger } from "../log.ts";

export function workerHelp(): string {
  return commandHelp(
    WORKER_COMMAND,
    "taskplatform worker --tasks <module> [options]",
    `Pulls task activations from one or more brokers and runs the tasks the modules define.
With --push-port, serves WorkerService.PushTask there instead (broker in push delivery
mode) and reports each result to the broker that pushed it. Sentry's worker flag names
(--rpc-host, --rpc-host-list, --health-check-file-path, --max-child-task-count, ...) are
accepted next to ours. SIGTERM/SIGINT: stop fetching, finish running tasks within
--shutdown-grace-ms, report every result, exit 0.`,
  );
}

export async function workerCommand(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let resolved;
  try {
    resolved = resolveWorkerConfig(argv, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`taskplatform worker: ${err.message}\n`);
    return 2;
  }
  if (resolved.help) {
    process.stdout.write(workerHelp());
    return 0;
  }
  const config = resolved.config;
  const log = createLogger({ format: config.logFormat, level: config.logLevel });
  if (resolved.ignored.length > 0) log.warn("config_ignored", { settings: resolved.ignored.join("; ") });
  const { startWorker } = await import("../worker.ts");
  let worker;
  try {
    worker = await startWorker(config, { log });
  } catch (err) {
    log.error("worker_start_failed", { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
  const signalled = new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  const signal = await signalled;
  log.info("worker_stopping", { signal, grace_ms: config.shutdownGraceMs });
  await worker.stop();
  log.info("worker_stopped");
  return 0;
}
