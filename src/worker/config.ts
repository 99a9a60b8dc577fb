// Worker configuration from flags and TASKWORKER_* environment variables
// (flags win), validated once at start-up into a fully-defaulted object.
// Errors are one line: the setting, the value, the expectation.
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { defaultThreads } from "./pool.ts";
import { parseSecrets } from "./secrets.ts";

export class WorkerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkerConfigError";
  }
}

export interface WorkerConfig {
  /** Task modules to load (paths or module names). */
  tasks: string[];
  /** Broker addresses host:port; default ["127.0.0.1:50051"]. */
  rpcHostList: string[];
  /** Tasks run at once (fetch loops). Default 4. */
  concurrency: number;
  /** Task threads the runs are spread over. Default min(concurrency, max(2, CPUs)); = concurrency isolates every task. */
  threads: number;
  namespace?: string;
  application?: string;
  healthCheckFile?: string;
  /** Serve /metrics on this port (0 = free port); unset = no server. */
  metricsPort?: number;
  /** Push mode: serve WorkerService.PushTask on this port (0 = free port) instead of pulling; unset = pull mode. */
  pushPort?: number;
  atMostOncePath: string;
  /** Seconds an at-most-once id is remembered. Default 86400. */
  atMostOnceTtlSec: number;
  /** How long running tasks may finish after SIGTERM/SIGINT. Default 10 000 ms. */
  shutdownGraceMs: number;
  /** Longest back-off when brokers have nothing or fail. Default 2000 ms. */
  maxBackoffMs: number;
  rebalanceAfter: number;
  secrets?: string[];
  logFormat: "text" | "json";
  logLevel: "trace" | "debug" | "info" | "warn" | "error";
}

const FLAGS: Record<string, { env: string; key: keyof WorkerConfig }> = {
  "--tasks": { env: "TASKWORKER_TASKS", key: "tasks" },
  "--rpc-host-list": { env: "TASKWORKER_RPC_HOST_LIST", key: "rpcHostList" },
  "--concurrency": { env: "TASKWORKER_CONCURRENCY", key: "concurrency" },
  "--threads": { env: "TASKWORKER_THREADS", key: "threads" },
  "--namespace": { env: "TASKWORKER_NAMESPACE", key: "namespace" },
  "--application": { env: "TASKWORKER_APPLICATION", key: "application" },
  "--health-check-file": { env: "TASKWORKER_HEALTH_CHECK_FILE", key: "healthCheckFile" },
  "--metrics-port": { env: "TASKWORKER_METRICS_PORT", key: "metricsPort" },
  "--push-port": { env: "TASKWORKER_PUSH_PORT", key: "pushPort" },
  "--at-most-once-path": { env: "TASKWORKER_AT_MOST_ONCE_PATH", key: "atMostOncePath" },
  "--at-most-once-ttl-sec": { env: "TASKWORKER_AT_MOST_ONCE_TTL_SEC", key: "atMostOnceTtlSec" },
  "--shutdown-grace-ms": { env: "TASKWORKER_SHUTDOWN_GRACE_MS", key: "shutdownGraceMs" },
  "--max-backoff-ms": { env: "TASKWORKER_MAX_BACKOFF_MS", key: "maxBackoffMs" },
  "--rebalance-after": { env: "TASKWORKER_REBALANCE_AFTER", key: "rebalanceAfter" },
  "--log-format": { env: "TASKWORKER_LOG_FORMAT", key: "logFormat" },
  "--log-level": { env: "TASKWORKER_LOG_FILTER", key: "logLevel" },
};

export const WORKER_HELP = `Usage: taskplatform worker [options]

Pulls task activations from one or more brokers and runs them. With --push-port, serves
WorkerService.PushTask there instead (broker in push delivery mode) and reports results
to the first broker of --rpc-host-list.

Options (each also settable by the environment variable shown):
${Object.entries(FLAGS)
  .map(([flag, { env }]) => `  ${flag.padEnd(24)} ${env}`)
  .join("\n")}
  (signing)                TASKWORKER_GRPC_SHARED_SECRET  JSON list of secrets; the first signs
  -h, --help
`;

const list = z.string().transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean));
const int = (min: number) => z.coerce.number().int().min(min);
const address = z.string().regex(/^[^\s:]+:\d{1,5}$/, "host:port");

const schema = z.object({
  tasks: list.default([]),
  rpcHostList: list.pipe(z.array(address).min(1)).default(["127.0.0.1:50051"]),
  concurrency: int(1).default(4),
  threads: int(1).optional(),
  namespace: z.string().min(1).optional(),
  application: z.string().min(1).optional(),
  healthCheckFile: z.string().min(1).optional(),
  metricsPort: int(0).max(65535).optional(),
  pushPort: int(0).max(65535).optional(),
  atMostOncePath: z.string().min(1).default(join(tmpdir(), "taskplatform-at-most-once.sqlite")),
  atMostOnceTtlSec: int(1).default(86_400),
  shutdownGraceMs: int(0).default(10_000),
  maxBackoffMs: int(1).default(2000),
  rebalanceAfter: int(1).default(32),
  logFormat: z.enum(["text", "json"]).default("text"),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
});

export type ParsedArgs = { help: true } | { help: false; config: WorkerConfig };

export function parseWorkerArgs(argv: string[], env: Record<string, string | undefined>): ParsedArgs {
  const raw: Record<string, string> = {};
  const source: Record<string, string> = {};
  for (const [flag, { env: name, key }] of Object.entries(FLAGS)) {
    const v = env[name];
    if (v !== undefined && v !== "") {
      raw[key] = v;
      source[key] = name;
    }
    void flag;
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h" || arg === "--help") return { help: true };
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const spec = FLAGS[name];
    if (!spec) throw new WorkerConfigError(`unknown option ${name} (see taskplatform worker --help)`);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new WorkerConfigError(`option ${name} needs a value`);
    raw[spec.key] = value;
    source[spec.key] = name;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? "");
    throw new WorkerConfigError(`${source[key] ?? key}=${JSON.stringify(raw[key] ?? "")}: ${issue.message}`);
  }
  let secrets: string[] | undefined;
  try {
    secrets = parseSecrets(env.TASKWORKER_GRPC_SHARED_SECRET);
  } catch (err) {
    throw new WorkerConfigError((err as Error).message);
  }
  const c = parsed.data;
  return {
    help: false,
    config: { ...c, threads: c.threads ?? defaultThreads(c.concurrency), secrets },
  };
}
