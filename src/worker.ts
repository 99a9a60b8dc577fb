// The worker's composition root, as src/broker.ts is the broker's: task
// threads, broker clients, balancer, the at-most-once store, health file,
// metrics server and the pull loop (or the push server), with one stop() that
// shuts them down in order. Built from a WorkerConfig (config/worker.ts); used
// by `taskplatform worker` (cli/worker.ts), the demo and the benchmarks.
import { deprioritizeCompilerThreads } from "./compiler-threads.ts";
import type { Logger } from "./log.ts";
import { openAtMostOnceStore } from "./worker/at-most-once.ts";
import { createBalancer } from "./worker/balancer.ts";
import { type BrokerClient, createBrokerClient } from "./worker/broker-client.ts";
import type { WorkerConfig } from "./config/worker.ts";
import { createHealthFile } from "./worker/health.ts";
import type { LoopOptions } from "./worker/loop.ts";
import { startPull } from "./worker/pull.ts";
import { createWorkerMetrics, serveMetrics, type WorkerMetrics } from "./worker/metrics.ts";
import { moduleSpecifier } from "./worker/modules.ts";
import { createTaskPool } from "./worker/pool.ts";
import { startPushMode } from "./worker/push-mode.ts";

export interface RunningWorker {
  metrics: WorkerMetrics;
  metricsPort: number | undefined;
  /** Push mode: the port serving WorkerService.PushTask. */
  pushPort?: number;
  /** Resolves when the pull loop has ended (after stop()). */
  done: Promise<void>;
  /** Graceful: stop fetching, let running tasks finish within the grace period, report results, release everything. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  log: Logger;
  onResult?: LoopOptions["onResult"];
  /** Environment handed to task threads (producers for follow-up tasks). Default process.env. */
  env?: Record<string, string | undefined>;
}

export async function startWorker(config: WorkerConfig, options: StartOptions): Promise<RunningWorker> {
  deprioritizeCompilerThreads();
  // Like Sentry's worker, every log line and metric names the processing pool (and pod) it comes from.
  const identity = {
    processing_pool: config.processingPoolName ?? "unknown",
    ...(config.podName ? { pod_name: config.podName } : {}),
  };
  const log = config.processingPoolName || config.podName ? options.log.child(identity) : options.log;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.env ?? process.env)) if (v !== undefined) env[k] = v;
  // Follow-up dispatches from inside tasks go to our first broker unless configured otherwise.
  env.TASKWORKER_RPC_HOST_LIST ??= config.rpcHostList.join(",");
  if (config.secrets && !env.TASKWORKER_GRPC_SHARED_SECRET)
    env.TASKWORKER_GRPC_SHARED_SECRET = JSON.stringify(config.secrets);
  const pool = createTaskPool({
    threads: config.threads,
    log,
    init: { modules: config.tasks.map((t) => moduleSpecifier(t)), env },
    maxTasksPerThread: config.maxChildTaskCount,
    minReadyThreads: config.minConcurrency,
  });
  const clients = new Map<string, BrokerClient>();
  for (const address of config.rpcHostList)
    clients.set(address, createBrokerClient({ address, secrets: config.secrets }));
  const metrics = createWorkerMetrics(identity);
  const health = createHealthFile(config.healthCheckFile, config.healthCheckSecPerTouch * 1000);
  let server: ReturnType<typeof serveMetrics> | undefined;
  let atMostOnce: ReturnType<typeof openAtMostOnceStore> | undefined;
  let push: Awaited<ReturnType<typeof startPushMode>> | null = null;
  const unwind = async () => {
    await push?.stop(0);
    await pool.close();
    atMostOnce?.close();
    server?.stop();
    for (const c of clients.values()) c.close();
  };
  let tasks;
  try {
    server = config.metricsPort !== undefined ? serveMetrics(metrics, config.metricsPort) : undefined;
    atMostOnce = openAtMostOnceStore(config.atMostOncePath);
    // Push mode: the port (and its health service, NOT_SERVING while the task threads warm up) listens
    // before the task modules have loaded; brokers deliver there and each result goes back to the pusher.
    if (config.pushPort !== undefined) {
      push = await startPushMode({
        port: config.pushPort,
        concurrency: config.concurrency,
        signing: {
          secrets: config.secrets ?? [],
          maxAgeSec: config.signatureMaxAgeSec,
          requireTimestamp: config.signatureRequireTimestamp,
        },
        allowUnsigned: config.pushAllowUnsigned,
        knownBrokers: [...config.rpcHostList, ...config.pushCallbackHosts],
        ...(config.grpcMaxMessageSize > 0 ? { maxMessageBytes: config.grpcMaxMessageSize } : {}),
        pushTaskTimeoutMs: config.pushTaskTimeoutSec * 1000,
        warmupTimeoutMs: config.warmupTimeoutSec * 1000,
        reportTo: clients.get(config.rpcHostList[0]!)!,
        clientFor: (address) => {
          let c = clients.get(address);
          if (!c) clients.set(address, (c = createBrokerClient({ address, secrets: config.secrets })));
          return c;
        },
        pool,
        atMostOnce,
        atMostOnceTtlSec: config.atMostOnceTtlSec,
        metrics,
        health,
        log,
        onResult: options.onResult,
      });
      log.info("push_port_listening", { port: push.port, health: "NOT_SERVING until the task threads are up" });
    }
    tasks = await pool.ready;
  } catch (err) {
    await unwind();
    throw err;
  }
  log.info("task_modules_loaded", { tasks: tasks.length, threads: config.threads });
  // Like Sentry's worker, every fetch names an application, so this worker never claims tasks of an
  // application it does not run: --application, else each application the task modules define, in turn.
  const applications = config.application ? [config.application] : [...new Set(tasks.map((t) => t.application))].sort();
  const loop: Pick<ReturnType<typeof startPull>, "done" | "stop"> = push ??
  startPull({
    delivery: config.delivery,
    brokers: config.rpcHostList,
    secrets: config.secrets,
    concurrency: config.concurrency,
    filters: applications.map((application) => ({ application, namespace: config.namespace })),
    pool,
    tasks,
    clients,
    balancer: createBalancer({ brokers: config.rpcHostList, rebalanceAfter: config.rebalanceAfter }),
    atMostOnce,
    atMostOnceTtlSec: config.atMostOnceTtlSec,
    health,
    metrics,
    log,
    maxBackoffMs: config.maxBackoffMs,
    onResult: options.onResult,
  });
  health.start();
  log.info("worker_started", {
    brokers: config.rpcHostList.join(","),
    concurrency: config.concurrency,
    threads: config.threads,
    namespace: config.namespace,
    applications: applications.join(","),
    metrics_port: server?.port,
    push_port: push?.port,
  });
  let stopping: Promise<void> | undefined;
  return {
    metrics,
    metricsPort: server?.port,
    pushPort: push?.port,
    done: loop.done,
    stop(graceMs = config.shutdownGraceMs) {
      stopping ??= (async () => {
        await loop.stop(graceMs);
        health.stop();
        await pool.close();
        for (const c of clients.values()) c.close();
        atMostOnce!.close();
        server?.stop();
      })();
      return stopping;
    },
  };
}
