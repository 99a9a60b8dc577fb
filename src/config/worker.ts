// The worker's settings (`taskplatform worker`): one zod schema whose keys are
// the TASKWORKER_* variables in lower case and whose meta `flags` are the
// command-line names, ours first and then the names Sentry's Python worker
// uses for the same thing (`sentry run taskworker` and taskbroker_client's
// `worker pull|push`), so an operator's existing command line keeps working.
// Loaded by config/command.ts (flags > environment > -c file > defaults) and
// turned here into the WorkerConfig the runtime (src/worker/) is built from.
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { loadCommand, type CommandSpec } from "./command.ts";
import { ConfigError } from "./source.ts";
import {
  ADDRESS,
  bool,
  commaList,
  count,
  logFormat,
  logLevel,
  port,
  positiveNumber,
  secretList,
  seconds,
} from "./types.ts";

export const WORKER_PREFIX = "TASKWORKER_";

/** What a running worker is built from (src/worker.ts). */
export interface WorkerConfig {
  /** Task modules to load (paths or module names); at least one. */
  tasks: string[];
  /** Broker addresses host:port. */
  rpcHostList: string[];
  /** Tasks run at once (fetch loops / push slots). */
  concurrency: number;
  /** Task threads the runs are spread over. Default min(concurrency, max(2, CPUs)); = concurrency isolates every task. */
  threads: number;
  namespace?: string;
  application?: string;
  healthCheckFile?: string;
  /** Seconds between two touches of the health file by its timer. */
  healthCheckSecPerTouch: number;
  /** Serve /metrics on this port (0 = free port); unset = no server. */
  metricsPort?: number;
  /** Push mode: serve WorkerService.PushTask on this port (0 = free port) instead of pulling; unset = pull mode. */
  pushPort?: number;
  /** Pull mode: the delivery stream (taskplatform.v1.DeliveryService), the v1 unary calls, or the stream where every broker offers it. */
  delivery: "unary" | "stream" | "auto";
  atMostOncePath: string;
  /** Seconds an at-most-once id is remembered. */
  atMostOnceTtlSec: number;
  /** How long running tasks may finish after SIGTERM/SIGINT, ms. */
  shutdownGraceMs: number;
  /** Longest back-off when brokers have nothing or fail, ms. */
  maxBackoffMs: number;
  rebalanceAfter: number;
  /** Replace a task thread after it ran this many tasks; unset = never. */
  maxChildTaskCount?: number;
  /** Fewest task slots kept running (Sentry's --min-concurrency). */
  minConcurrency: number;
  /** Name of the processing pool, for metrics and logs. */
  processingPoolName?: string;
  /** Name of the pod the worker runs in (push mode), for metrics and logs. */
  podName?: string;
  /** Push mode: largest PushTask message accepted, bytes; -1 = no limit of our own. */
  grpcMaxMessageSize: number;
  /** Push mode: longest a pushed task waits for a free slot before the push is answered busy, seconds. */
  pushTaskTimeoutSec: number;
  /** Push mode: longest the health service waits for the task threads to warm up before SERVING, seconds. */
  warmupTimeoutSec: number;
  secrets?: string[];
  /** Push mode: serve unsigned pushes when no secret is set (anyone who reaches the port may push). */
  pushAllowUnsigned: boolean;
  /** Push mode: brokers (host:port) besides rpcHostList that an unsigned push's callback_url may name. */
  pushCallbackHosts: string[];
  /** Timestamped signatures (ours) are accepted within this many seconds. */
  signatureMaxAgeSec: number;
  /** Refuse signed pushes without our timestamped signature. */
  signatureRequireTimestamp: boolean;
  logFormat: "text" | "json";
  logLevel: "trace" | "debug" | "info" | "warn" | "error";
}

const address = z.string().regex(ADDRESS, "host:port").meta({ expect: "host:port" });
const addressList = commaList
  .pipe(z.array(z.string().regex(ADDRESS, "host:port")).min(1))
  .meta({ expect: "a comma separated list of host:port" });
const int = (min: number) => z.coerce.number().int().min(min);
const flags = (...names: string[]) => ({ flags: names });
const PYTHON_ONLY = "a setting of the Python worker's process model; tasks run in threads here";

export const workerSchema = z.object({
  tasks: commaList
    .default([])
    .describe("Task modules to load: paths or package names, comma separated or the flag repeated (at least one).")
    .meta({ ...flags("--tasks", "--app-module"), valueName: "module", repeatable: true }),
  rpc_host: address
    .default("127.0.0.1:50051")
    .describe(
      "The broker to connect to, host:port; with --num-brokers the host of broker i is <host>-<i> (Sentry's --rpc-host).",
    )
    .meta({ ...flags("--rpc-host", "--broker-service"), valueName: "host:port" }),
  num_brokers: count
    .optional()
    .describe("Number of brokers behind --rpc-host, reached as <host>-0 ... <host>-(N-1) on the same port.")
    .meta({ ...flags("--num-brokers"), valueName: "N" }),
  rpc_host_list: addressList
    .optional()
    .describe("Brokers to spread over, comma separated host:port (or the flag repeated); wins over --rpc-host.")
    .meta({ ...flags("--rpc-host-list", "--broker-host"), valueName: "host:port,...", repeatable: true }),
  concurrency: int(1)
    .default(4)
    .describe("Tasks run at once.")
    .meta({ ...flags("--concurrency"), valueName: "N" }),
  threads: int(1)
    .optional()
    .describe(
      "Task threads the runs are spread over; default min(concurrency, max(2, CPUs)); equal to concurrency isolates every task.",
    )
    .meta({ ...flags("--threads"), valueName: "N" }),
  namespace: z
    .string()
    .min(1)
    .optional()
    .describe("Claim only tasks of this namespace.")
    .meta({ ...flags("--namespace"), valueName: "name" }),
  application: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Claim only tasks of this application; default the application of the loaded tasks when --namespace is set.",
    )
    .meta({ ...flags("--application"), valueName: "name" }),
  health_check_file: z
    .string()
    .min(1)
    .optional()
    .describe("File touched while the worker is healthy (liveness probes); unset disables it.")
    .meta({ ...flags("--health-check-file", "--health-check-file-path"), valueName: "path" }),
  health_check_sec_per_touch: positiveNumber
    .default(1)
    .describe("Seconds between two touches of the health file (by a timer, and at most this often on broker RPCs).")
    .meta({ ...flags("--health-check-sec-per-touch"), valueName: "seconds" }),
  metrics_port: port
    .optional()
    .describe("Serve Prometheus /metrics on this port (0 picks a free port); unset: no server.")
    .meta({ ...flags("--metrics-port", "--prometheus-port"), valueName: "port" }),
  push_port: port
    .optional()
    .describe(
      "Push mode: serve WorkerService.PushTask on this port (0 picks a free port) instead of pulling; results go to the broker that pushed.",
    )
    .meta({ ...flags("--push-port", "--grpc-port"), valueName: "port" }),
  delivery: z
    .enum(["unary", "stream", "auto"])
    .default("auto")
    .describe(
      "How tasks are pulled: stream (one delivery stream per broker, batched; docs/streaming.md), unary (the v1 GetTask/SetTaskStatus calls " +
        "every broker speaks), auto (the stream when every broker that answers offers it, else unary).",
    )
    .meta({ ...flags("--delivery"), valueName: "unary|stream|auto" }),
  at_most_once_path: z
    .string()
    .min(1)
    .default(join(tmpdir(), "taskplatform-at-most-once.sqlite"))
    .describe("SQLite file remembering at-most-once task ids (share it between workers on one machine).")
    .meta({ ...flags("--at-most-once-path"), valueName: "path" }),
  at_most_once_ttl_sec: int(1)
    .default(86_400)
    .describe("Seconds an at-most-once id is remembered.")
    .meta({ ...flags("--at-most-once-ttl-sec"), valueName: "seconds" }),
  shutdown_grace_ms: int(0)
    .default(10_000)
    .describe("On SIGTERM/SIGINT, how long running tasks may finish, ms.")
    .meta({ ...flags("--shutdown-grace-ms"), valueName: "ms" }),
  max_backoff_ms: int(1)
    .default(2000)
    .describe("Longest wait between fetches when brokers have nothing or fail, ms.")
    .meta({ ...flags("--max-backoff-ms"), valueName: "ms" }),
  rebalance_after: int(1)
    .default(32)
    .describe("Tasks fetched from one broker before moving to another.")
    .meta({ ...flags("--rebalance-after"), valueName: "N" }),
  max_child_task_count: int(1)
    .optional()
    .describe("Replace a task thread after it ran this many tasks (Sentry's child recycling); unset: never.")
    .meta({ ...flags("--max-child-task-count"), valueName: "N" }),
  min_concurrency: int(0)
    .default(0)
    .describe(
      "Fewest task threads that keep taking runs while threads are recycled; a recycled thread works on until its replacement is up if fewer would.",
    )
    .meta({ ...flags("--min-concurrency"), valueName: "N" }),
  processing_pool_name: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Name of the processing pool this worker belongs to: the processing_pool label of every metric (default unknown) and a field of every log line.",
    )
    .meta({ ...flags("--processing-pool-name"), valueName: "name" }),
  pod_name: z
    .string()
    .min(1)
    .optional()
    .describe("Name of the pod this worker runs in: the pod_name label of every metric and a field of every log line.")
    .meta({ ...flags("--pod-name"), valueName: "name" }),
  grpc_max_message_size: z.coerce
    .number()
    .int()
    .min(-1)
    .default(-1)
    .describe("Push mode: largest PushTask message accepted, bytes; -1: the push server's default (16 MiB).")
    .meta({ ...flags("--grpc-max-message-size"), valueName: "bytes" }),
  push_task_timeout: seconds()
    .default(5)
    .describe(
      "Push mode: longest a pushed task waits for a free slot before the push is answered busy (never past the broker's call deadline), seconds.",
    )
    .meta({ ...flags("--push-task-timeout"), valueName: "seconds" }),
  warmup_timeout: seconds()
    .default(90)
    .describe(
      "Push mode: the push port's grpc.health.v1 service answers NOT_SERVING until every task thread is up, or this many seconds passed.",
    )
    .meta({ ...flags("--warmup-timeout"), valueName: "seconds" }),
  child_tasks_queue_maxsize: int(1)
    .default(5)
    .describe("Python worker: tasks buffered for child processes.")
    .meta({
      ...flags("--child-tasks-queue-maxsize"),
      valueName: "N",
      ignored: "fetched tasks go straight to a free thread slot; there is no child queue",
    }),
  result_queue_maxsize: int(1)
    .default(5)
    .describe("Python worker: results buffered from child processes.")
    .meta({
      ...flags("--result-queue-maxsize"),
      valueName: "N",
      ignored: "results go straight to the status batcher; there is no result queue",
    }),
  process_type: z
    .enum(["fork", "spawn", "forkserver"])
    .default("spawn")
    .describe("Python worker: multiprocessing start method of child processes.")
    .meta({ ...flags("--process-type"), valueName: "fork|spawn|forkserver", ignored: PYTHON_ONLY }),
  skip_awaiting_futures: bool
    .default(true)
    .describe("Python worker: skip awaiting Kafka producer futures when completing tasks.")
    .meta({ ...flags("--skip-awaiting-futures"), negations: ["--no-skip-awaiting-futures"], ignored: PYTHON_ONLY }),
  future_checking_frequency: positiveNumber
    .default(0.1)
    .describe("Python worker: how often producer futures are checked, seconds.")
    .meta({ ...flags("--future-checking-frequency"), valueName: "seconds", ignored: PYTHON_ONLY }),
  track_producer_futures: bool
    .default(false)
    .describe("Python worker: track arroyo producer futures.")
    .meta({ ...flags("--track-producer-futures"), negations: ["--no-track-producer-futures"], ignored: PYTHON_ONLY }),
  autoreload: bool
    .default(false)
    .describe("Sentry's worker: reload when the code changes.")
    .meta({
      ...flags("--autoreload"),
      ignored: "Sentry's own worker does not implement it either; restart the worker",
    }),
  grpc_shared_secret: secretList
    .optional()
    .describe('Request-signing secrets: a JSON array ["new","old"] (the first signs, all verify) or one secret.'),
  grpc_signature_max_age_sec: int(1)
    .default(300)
    .describe(
      "Pushes carrying our timestamped signature (sent by our brokers) are accepted only within this many seconds of this worker's clock.",
    )
    .meta({ ...flags("--grpc-signature-max-age-sec"), valueName: "seconds" }),
  grpc_signature_require_timestamp: bool
    .default(false)
    .describe(
      "Push mode: refuse signed pushes without our timestamped signature (no replayed pushes; Sentry's brokers do not send it).",
    )
    .meta({ ...flags("--grpc-signature-require-timestamp") }),
  push_allow_unsigned: bool
    .default(false)
    .describe(
      "Push mode without a secret: serve unsigned pushes anyway (anyone who can reach the push port can run tasks on this worker). Without it such a worker does not start.",
    )
    .meta({ ...flags("--push-allow-unsigned") }),
  push_callback_hosts: commaList
    .optional()
    .describe(
      "Push mode: brokers (host:port, comma separated) besides --rpc-host-list that an unsigned push's callback_url may send results to; others get the first configured broker.",
    )
    .meta({ ...flags("--push-callback-hosts"), valueName: "host:port,..." }),
  produce_address: z
    .string()
    .min(1)
    .optional()
    .describe("Producers inside tasks: the broker's ingest RPC host:port; default the first broker of the worker."),
  kafka_brokers: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Producers inside tasks: produce to Kafka at these bootstrap servers (comma separated) instead of the ingest RPC.",
    ),
  topics: z
    .string()
    .min(1)
    .optional()
    .describe("Producers inside tasks: topics the deployment declares (comma separated); routes must name one."),
  default_topic: z
    .string()
    .min(1)
    .optional()
    .describe("Producers inside tasks: topic of namespaces without a route (default taskworker)."),
  routes: z
    .string()
    .min(1)
    .optional()
    .describe('Producers inside tasks: namespace -> topic as JSON, e.g. {"ingest.errors":"taskworker-ingest"}.'),
  log_format: logFormat
    .default("text")
    .describe("Log line format.")
    .meta({ ...flags("--log-format", "--logformat"), valueName: "text|json" }),
  log_filter: logLevel
    .default("info")
    .describe("Minimum log level.")
    .meta({ ...flags("--log-level", "--loglevel", "-l"), valueName: "level" }),
});

export type WorkerSettings = z.output<typeof workerSchema>;

export const WORKER_COMMAND: CommandSpec<typeof workerSchema> = {
  command: "worker",
  schema: workerSchema,
  prefix: WORKER_PREFIX,
  configFile: true,
};

/** Sentry's make_broker_hosts: the list wins; else <host>-<i>:<port> for i < num_brokers; else the one host. */
export function brokerHosts(rpcHost: string, numBrokers: number | undefined, hostList: string[] | undefined): string[] {
  if (hostList?.length) return hostList;
  if (!numBrokers) return [rpcHost];
  const cut = rpcHost.lastIndexOf(":");
  const host = rpcHost.slice(0, cut);
  const portText = rpcHost.slice(cut + 1);
  return Array.from({ length: numBrokers }, (_, i) => `${host}-${i}:${portText}`);
}

export function defaultThreads(concurrency: number): number {
  return Math.max(1, Math.min(concurrency, Math.max(2, cpus().length)));
}

/** The runtime configuration from validated settings. */
export function toWorkerConfig(s: WorkerSettings): WorkerConfig {
  return {
    tasks: s.tasks,
    rpcHostList: brokerHosts(s.rpc_host, s.num_brokers, s.rpc_host_list),
    concurrency: s.concurrency,
    threads: s.threads ?? defaultThreads(s.concurrency),
    namespace: s.namespace,
    application: s.application,
    healthCheckFile: s.health_check_file,
    healthCheckSecPerTouch: s.health_check_sec_per_touch,
    metricsPort: s.metrics_port,
    pushPort: s.push_port,
    delivery: s.delivery,
    atMostOncePath: s.at_most_once_path,
    atMostOnceTtlSec: s.at_most_once_ttl_sec,
    shutdownGraceMs: s.shutdown_grace_ms,
    maxBackoffMs: s.max_backoff_ms,
    rebalanceAfter: s.rebalance_after,
    maxChildTaskCount: s.max_child_task_count,
    minConcurrency: s.min_concurrency,
    processingPoolName: s.processing_pool_name,
    podName: s.pod_name,
    grpcMaxMessageSize: s.grpc_max_message_size,
    pushTaskTimeoutSec: s.push_task_timeout,
    warmupTimeoutSec: s.warmup_timeout,
    secrets: s.grpc_shared_secret?.length ? s.grpc_shared_secret : undefined,
    pushAllowUnsigned: s.push_allow_unsigned,
    pushCallbackHosts: s.push_callback_hosts ?? [],
    signatureMaxAgeSec: s.grpc_signature_max_age_sec,
    signatureRequireTimestamp: s.grpc_signature_require_timestamp,
    logFormat: s.log_format,
    logLevel: s.log_filter,
  };
}

export type WorkerArgs = { help: true } | { help: false; config: WorkerConfig; ignored: string[] };

/** `taskplatform worker` arguments and TASKWORKER_* variables -> WorkerConfig; throws ConfigError (one line). */
export function resolveWorkerConfig(argv: readonly string[], env: Record<string, string | undefined>): WorkerArgs {
  const loaded = loadCommand(WORKER_COMMAND, argv, env);
  if (loaded.help) return loaded;
  if (loaded.config.tasks.length === 0) {
    throw new ConfigError(
      "no task module given: expected --tasks <module> (or TASKWORKER_TASKS), e.g. --tasks ./tasks.ts",
    );
  }
  if (loaded.config.min_concurrency > loaded.config.concurrency) {
    throw new ConfigError(
      `--min-concurrency=${loaded.config.min_concurrency} is invalid: expected at most --concurrency (${loaded.config.concurrency})`,
    );
  }
  const config = toWorkerConfig(loaded.config);
  if (config.pushPort !== undefined && config.secrets === undefined && !config.pushAllowUnsigned) {
    throw new ConfigError(
      "the push port serves signed pushes only: set TASKWORKER_GRPC_SHARED_SECRET to the brokers' secret, or pass --push-allow-unsigned to accept pushes from anyone who can reach the port",
    );
  }
  return { help: false, config, ignored: loaded.ignored };
}
