// Profiling aid: a broker process pre-filled with N no-op tasks, then this
// process runs only the worker and drains them, so `bun --cpu-prof` on this
// script profiles the worker's run path alone (and TASKBROKER_PROFILE_DIR set
// profiles the broker too). Prints the drain rate and the CPU per task of each
// process (ECHO=1 echoes the broker log, BROKER_ENV adds broker settings).
// Usage: bun [--cpu-prof-md] bench/drain-profile.ts [--delivery stream|unary] [--tasks 100000]
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { createBrokerClient } from "../src/connect/client.ts";
import { resolveWorkerConfig } from "../src/config/worker.ts";
import { createLogger } from "../src/log.ts";
import { startWorker } from "../src/worker.ts";
import { spawnBroker } from "../test/support/broker-process.ts";

const arg = (name: string, dflt: string) =>
  process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1]! : dflt;
const TASKS = Number(arg("tasks", "100000"));
const DELIVERY = arg("delivery", "stream");
const CONCURRENCY = arg("concurrency", "64");
const profileDir = process.env.TASKBROKER_PROFILE_DIR;
if (process.argv.includes("--fill")) {
  const producer = createBrokerClient({ address: arg("fill", "") });
  const params = new Uint8Array([
    0x82, 0xa4, 0x61, 0x72, 0x67, 0x73, 0x90, 0xa6, 0x6b, 0x77, 0x61, 0x72, 0x67, 0x73, 0x80,
  ]);
  for (let i = 0; i < TASKS; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, TASKS - i) }, () =>
      toBinary(
        TaskActivationSchema,
        create(TaskActivationSchema, {
          id: crypto.randomUUID().replaceAll("-", ""),
          namespace: "bench",
          taskname: "bench.noop",
          application: "bench",
          receivedAt: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 },
          processingDeadlineDuration: 60n,
          retryState: { attempts: 0, maxAttempts: 1, onAttemptsExceeded: 1 },
          parametersBytes: params,
        }),
      ),
    );
    await producer.produce(batch);
  }
  await producer.close();
  process.exit(0);
}
const broker = await spawnBroker(
  {
    TASKBROKER_STORE__MAX_PENDING_COUNT: String(TASKS * 2),
    TASKBROKER_STORE__MAX_PROCESSING_COUNT: String(TASKS * 2),
    // Extra broker settings for experiments, e.g. BROKER_ENV='{"TASKBROKER_STORE__GROUP_COMMIT_WINDOW_MS":"1"}'.
    ...(JSON.parse(process.env.BROKER_ENV ?? "{}") as Record<string, string>),
  },
  profileDir ? { bunArgs: ["--cpu-prof-md", `--cpu-prof-dir=${profileDir}`] } : { echo: !!process.env.ECHO },
);
// Filled from a child process, so a profile of this one shows the worker alone.
const fill = Bun.spawn([process.execPath, import.meta.path, "--fill", broker.address, "--tasks", String(TASKS)], {
  stdout: "inherit",
  stderr: "inherit",
});
if ((await fill.exited) !== 0) throw new Error("filling the broker failed");
const cpuMs = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};
const dir = mkdtempSync(join(tmpdir(), "drain-profile-"));
const parsed = resolveWorkerConfig(
  [
    "--tasks",
    join(import.meta.dir, "e2e-tasks.ts"),
    "--rpc-host-list",
    broker.address,
    "--concurrency",
    CONCURRENCY,
    "--delivery",
    DELIVERY,
    "--at-most-once-path",
    join(dir, "amo.sqlite"),
    "--max-backoff-ms",
    "100",
  ],
  {},
);
if (parsed.help) throw new Error("unreachable");
let done = 0;
let resolveAll!: () => void;
const all = new Promise<void>((r) => (resolveAll = r));
let start = 0;
const worker = await startWorker(parsed.config, {
  log: createLogger({ format: "text", level: "warn" }),
  onResult: () => {
    if (done === 0) start = performance.now();
    if (++done === TASKS) resolveAll();
  },
});
/** CPU ms of each thread of this process, by thread name (Linux /proc). */
const threadCpu = () => {
  const out = new Map<string, number>();
  for (const tid of require("node:fs").readdirSync("/proc/self/task")) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.split(") ")[1]!.split(" ");
      out.set(`${name}#${tid}`, ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    } catch {}
  }
  return out;
};
const t0cpu = threadCpu();
const c0 = process.cpuUsage();
const b0 = cpuMs(broker.proc.pid);
await all;
const s = (performance.now() - start) / 1000;
const c = process.cpuUsage(c0);
console.log(
  `drain (${DELIVERY}) ${TASKS} tasks: ${Math.round(TASKS / s)}/s; cpu per task: worker process ${((c.user + c.system) / TASKS).toFixed(1)} us, broker ${(((cpuMs(broker.proc.pid) - b0) * 1000) / TASKS).toFixed(1)} us`,
);
const t1cpu = threadCpu();
const perThread = [...t1cpu]
  .map(([k, v]) => [k, ((v - (t0cpu.get(k) ?? 0)) * 1000) / TASKS] as const)
  .filter(([, v]) => v >= 0.5);
console.log("per thread, us/task:", perThread.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", "));
await worker.stop(5000);
await broker.stop();
process.exit(0);
