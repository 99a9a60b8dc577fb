// `taskplatform worker`: parse flags and TASKWORKER_* settings, start the
// worker, and shut down gracefully on SIGTERM/SIGINT (stop fetching, let
// running tasks finish within the grace period, report every result held,
// exit 0). Exit 2 on bad configuration, 1 on start-up failure.
import { createLogger } from "./log.ts";
import { parseWorkerArgs, WORKER_HELP, WorkerConfigError } from "./worker/config.ts";
import { startWorker } from "./worker/start.ts";

export async function workerCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseWorkerArgs(argv, process.env);
  } catch (err) {
    if (err instanceof WorkerConfigError) {
      process.stderr.write(`taskplatform worker: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(WORKER_HELP);
    return 0;
  }
  const config = parsed.config;
  const log = createLogger({ format: config.logFormat, level: config.logLevel });
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
