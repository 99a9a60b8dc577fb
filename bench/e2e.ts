// End-to-end benchmark of our broker + worker: (1) drain 50k queued no-op
// tasks with concurrency 64 (queued by the SDK's producer in a child process,
// so the worker process starts the drain with a clean heap); (2) latency p50/p99 (enqueue -> the task starts
// in a worker thread, as bench/peers.ts measures the peers) at a steady 500 tasks/s. The broker runs as its own process; the
// producer and the worker run in this process (the producer is idle during the
// drain). Usage: bun bench/e2e.ts [--delivery stream|unary] [--tasks 50000] [--concurrency 64] [--rate 500] [--seconds 10] [--threads N]
// [--warmup-seconds 1] (sent at the rate before the measured seconds, not counted) [--timeline] (the latency
// run's worst case per half second: when the outliers happened) [--profile-broker DIR] (bun --cpu-prof-md)
// [--produce-transport auto|stream|unary] (how the SDK producer sends: docs/streaming.md "Producing over a stream").
import { spawnBroker, tempDir } from "../test/support/broker-process.ts";
import { createLogger } from "../src/log.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import { resolveWorkerConfig } from "../src/config/worker.ts";
import { startWorker } from "../src/worker.ts";
import { LATENCY_CHANNEL, absoluteNow, noop, probe } from "./e2e-tasks.ts";
import { join } from "node:path";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const TOTAL = arg("tasks", 50_000);
const CONCURRENCY = arg("concurrency", 64);
const RATE = arg("rate", 500);
const SECONDS = arg("seconds", 10);
const THREADS = arg("threads", 0);
const WARMUP_SECONDS = arg("warmup-seconds", 1);
const DELIVERY = process.argv.includes("--delivery") ? process.argv[process.argv.indexOf("--delivery") + 1]! : "stream";
const PRODUCE_TRANSPORT = (
  process.argv.includes("--produce-transport") ? process.argv[process.argv.indexOf("--produce-transport") + 1]! : "auto"
) as "auto" | "stream" | "unary";
const log = createLogger({ format: "text", level: "warn" });
const dir = tempDir("bench-e2e-");

if (process.argv.includes("--fill")) {
  // Child: queue TOTAL no-op tasks through the SDK's producer, then exit.
  const p = createRpcProducer({ address: process.argv[process.argv.indexOf("--fill") + 1]!, concurrency: 4 });
  noop.app.setProducer(p);
  const sends: Promise<string>[] = [];
  for (let i = 0; i < TOTAL; i++) sends.push(noop.delay());
  await Promise.all(sends);
  await p.close();
  process.exit(0);
}

const PROFILE_BROKER = process.argv.includes("--profile-broker")
  ? process.argv[process.argv.indexOf("--profile-broker") + 1]!
  : null;
const broker = await spawnBroker(
  {
    TASKBROKER_STORE__MAX_PENDING_COUNT: String(TOTAL * 2),
    TASKBROKER_STORE__MAX_PROCESSING_COUNT: String(TOTAL * 2),
  },
  PROFILE_BROKER ? { bunArgs: ["--cpu-prof-md", "--cpu-prof-interval=200", `--cpu-prof-dir=${PROFILE_BROKER}`] } : {},
);
const address = `127.0.0.1:${broker.port}`;
const producer = createRpcProducer({ address, concurrency: 4, transport: PRODUCE_TRANSPORT });
noop.app.setProducer(producer);

function workerConfig() {
  const args = [
    "--tasks",
    join(import.meta.dir, "e2e-tasks.ts"),
    "--rpc-host-list",
    address,
    "--concurrency",
    String(CONCURRENCY),
    "--at-most-once-path",
    join(dir, "amo.sqlite"),
    "--max-backoff-ms",
    "100",
    "--delivery",
    DELIVERY,
  ];
  if (THREADS > 0) args.push("--threads", String(THREADS));
  const parsed = resolveWorkerConfig(args, {});
  if (parsed.help) throw new Error("unreachable");
  return parsed.config;
}

/** CPU time (user+system) the broker process used so far, ms (Linux /proc). */
function brokerCpuMs(): number {
  try {
    const f = require("node:fs").readFileSync(`/proc/${broker.proc.pid}/stat`, "utf8").split(") ")[1].split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

// ---- drain ----
{
  const t0 = performance.now();
  const fill = Bun.spawn([process.execPath, import.meta.path, "--fill", address, "--tasks", String(TOTAL)], {
    stdout: "inherit",
    stderr: "inherit",
  });
  if ((await fill.exited) !== 0) throw new Error("queueing the tasks failed");
  const produceS = (performance.now() - t0) / 1000;
  console.log(`produced ${TOTAL} in ${produceS.toFixed(2)} s (${Math.round(TOTAL / produceS)}/s)`);
  let done = 0;
  let start = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const worker = await startWorker(workerConfig(), {
    log,
    onResult: () => {
      if (done === 0) start = performance.now();
      if (++done === TOTAL) resolveAll();
    },
  });
  const cpu0 = process.cpuUsage();
  const bcpu0 = brokerCpuMs();
  await all;
  const cpu = process.cpuUsage(cpu0);
  const s = (performance.now() - start) / 1000;
  console.log(
    `cpu per task: worker process ${((cpu.user + cpu.system) / TOTAL).toFixed(1)} us, broker ${(((brokerCpuMs() - bcpu0) * 1000) / TOTAL).toFixed(1)} us`,
  );
  console.log(
    `drain (${DELIVERY}): ${TOTAL} no-op tasks, concurrency ${CONCURRENCY}: ${s.toFixed(2)} s = ${Math.round(TOTAL / s)} tasks/s`,
  );
  await worker.stop(5000);
}

// ---- latency at a steady rate ----
{
  const latencies: number[] = [];
  const samples: [number, number][] = [];
  const channel = new BroadcastChannel(LATENCY_CHANNEL);
  const worker = await startWorker(workerConfig(), { log });
  await Bun.sleep(500);
  // A warm-up at the same rate first, not counted (as bench/peers.ts does): the task threads and the producer start cold.
  const warm = Math.round(RATE * WARMUP_SECONDS);
  const n = RATE * SECONDS;
  const t0 = performance.now();
  channel.addEventListener("message", (e) => {
    const [at, ms, counted] = (e as { data: [number, number, boolean] }).data;
    if (!counted) return;
    samples.push([at, ms]);
    latencies.push(ms);
  });
  // This process's own event-loop holds during the run (the broker logs its own: event_loop_stalled).
  const holds: string[] = [];
  let lastTick = performance.now();
  const lagTimer = setInterval(() => {
    const now = performance.now();
    if (now - lastTick - 50 >= 100)
      holds.push(`${((now - t0) / 1000).toFixed(1)}s: ${Math.round(now - lastTick - 50)} ms`);
    lastTick = now;
  }, 50);
  const pending: Promise<unknown>[] = [];
  let cpu0 = process.cpuUsage();
  let bcpu0 = brokerCpuMs();
  for (let i = 0; i < warm + n; i++) {
    if (i === warm) {
      cpu0 = process.cpuUsage();
      bcpu0 = brokerCpuMs();
    }
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    const built = probe.buildActivation({ args: [absoluteNow(), i >= warm] });
    pending.push(producer.send("taskworker", built.activation, built.bytes));
  }
  await Promise.all(pending);
  const until = performance.now() + 10_000;
  while (latencies.length < n && performance.now() < until) await Bun.sleep(20);
  channel.close();
  clearInterval(lagTimer);
  const brokerHolds = broker
    .logs()
    .split("\n")
    .filter((l) => l.includes("event_loop_stalled"));
  if (holds.length > 0 || brokerHolds.length > 0)
    console.log(
      `event-loop holds >= 100 ms: bench process ${holds.join(", ") || "none"}; broker ${brokerHolds.length}`,
      brokerHolds.join(" | "),
    );
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `latency run cpu per task: worker process (producer included) ${((cpu.user + cpu.system) / n).toFixed(1)} us, broker ${(((brokerCpuMs() - bcpu0) * 1000) / n).toFixed(1)} us`,
  );
  if (process.argv.includes("--timeline")) {
    // Worst latency per 500 ms of enqueue time, and how many tasks in it waited over 5 ms: when the outliers happen.
    const base = samples.length > 0 ? Math.min(...samples.map((s) => s[0])) : 0;
    const slots = new Map<number, { max: number; slow: number; n: number }>();
    for (const [at, ms] of samples) {
      const k = Math.floor((at - base) / 500);
      const s = slots.get(k) ?? { max: 0, slow: 0, n: 0 };
      s.max = Math.max(s.max, ms);
      if (ms > 5) s.slow++;
      s.n++;
      slots.set(k, s);
    }
    for (const [k, s] of [...slots].sort((a, b) => a[0] - b[0]))
      console.log(`  t=${(k / 2).toFixed(1)}s n=${s.n} max ${s.max.toFixed(2)} ms, ${s.slow} over 5 ms`);
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  console.log(
    `latency at ${RATE}/s for ${SECONDS}s (${latencies.length}/${n} seen): p50 ${q(0.5).toFixed(2)} ms, p90 ${q(0.9).toFixed(2)} ms, p95 ${q(0.95).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms, max ${q(1).toFixed(2)} ms`,
  );
  await worker.stop(5000);
}

await producer.close();
await broker.stop();
process.exit(0);
