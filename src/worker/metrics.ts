// The worker process's Prometheus metrics (its own registry, not the broker's):
// executions by namespace/task/outcome, run duration, attempt number,
// occupancy (busy fraction of slots) and results held for a retried report;
// served on /metrics when a port is set.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export interface WorkerMetrics {
  registry: Registry;
  executions: Counter<"namespace" | "taskname" | "outcome">;
  duration: Histogram<"namespace" | "taskname">;
  attempt: Histogram<"namespace" | "taskname">;
  occupancy: Gauge;
  fetches: Counter<"broker" | "result">;
  resultsHeld: Gauge;
}

/** `labels` go on every series (processing_pool, pod_name), as Sentry's worker tags its metrics. */
export function createWorkerMetrics(labels: Record<string, string> = {}): WorkerMetrics {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  return {
    registry,
    executions: new Counter({
      name: "taskworker_executions_total",
      help: "Task runs by namespace, task and outcome (complete, retry, failure, deadline, unknown_task, expired, skipped)",
      labelNames: ["namespace", "taskname", "outcome"] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: "taskworker_execution_duration_seconds",
      help: "Task run duration",
      labelNames: ["namespace", "taskname"] as const,
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
      registers: [registry],
    }),
    attempt: new Histogram({
      name: "taskworker_execution_attempt",
      help: "Attempt number of each run (0 = first run)",
      labelNames: ["namespace", "taskname"] as const,
      buckets: [0, 1, 2, 3, 5, 10],
      registers: [registry],
    }),
    occupancy: new Gauge({
      name: "taskworker_occupancy_ratio",
      help: "Busy fraction of the worker's concurrency slots",
      registers: [registry],
    }),
    resultsHeld: new Gauge({
      name: "taskworker_results_held",
      help: "Results the worker keeps because reporting them failed; retried until the broker takes them",
      registers: [registry],
    }),
    fetches: new Counter({
      name: "taskworker_fetch_total",
      help: "GetTask / fetch_next answers by broker and result (task, empty, error)",
      labelNames: ["broker", "result"] as const,
      registers: [registry],
    }),
  };
}

/** Serves /metrics on `port` (0 = a free port); returns the port and a stop function. */
export function serveMetrics(
  metrics: WorkerMetrics,
  port: number,
  hostname = "0.0.0.0",
): { port: number; stop(): void } {
  const server = Bun.serve({
    port,
    hostname,
    async fetch(req) {
      if (new URL(req.url).pathname !== "/metrics") return new Response("not found\n", { status: 404 });
      return new Response(await metrics.registry.metrics(), {
        headers: { "content-type": metrics.registry.contentType },
      });
    },
  });
  return { port: server.port ?? port, stop: () => void server.stop(true) };
}

/**
 * Records one run. Label children are cached per namespace/task/outcome:
 * prom-client's label hashing on every call costs more than the rest of a no-op task.
 */
export function createRecorder(metrics: WorkerMetrics) {
  type Children = {
    duration: ReturnType<WorkerMetrics["duration"]["labels"]>;
    attempt: ReturnType<WorkerMetrics["attempt"]["labels"]>;
    outcomes: Map<string, ReturnType<WorkerMetrics["executions"]["labels"]>>;
  };
  const cache = new Map<string, Children>();
  return {
    record(namespace: string, taskname: string, outcome: string, durationMs: number | undefined, attempt: number) {
      const key = namespace + "\u0000" + taskname;
      let c = cache.get(key);
      if (!c) {
        c = {
          duration: metrics.duration.labels(namespace, taskname),
          attempt: metrics.attempt.labels(namespace, taskname),
          outcomes: new Map(),
        };
        cache.set(key, c);
      }
      let counter = c.outcomes.get(outcome);
      if (!counter) c.outcomes.set(outcome, (counter = metrics.executions.labels(namespace, taskname, outcome)));
      counter.inc();
      if (durationMs !== undefined) {
        c.duration.observe(durationMs / 1000);
        c.attempt.observe(attempt);
      }
    },
  };
}
