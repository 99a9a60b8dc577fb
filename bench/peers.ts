// Peer queues measured with the same two scenarios as bench/e2e.ts, so the
// numbers can sit in one table: drain N queued no-op jobs with concurrency 64,
// and latency (enqueue -> handler start) p50/p99 at a fixed offered rate,
// after --warmup-seconds (default 1) at that rate whose jobs are not counted.
//
//   bun bench/peers.ts <bullmq|bullmq-aof|bunqueue-embedded|bunqueue-tcp> [--jobs 50000] [--rate 500] [--seconds 10] [--warmup-seconds 1] [--max-drain-seconds 40]
//
// Prints one JSON line: {"system", "drain_jobs_per_s", "p50_ms", "p99_ms", ...}.
// Peers come from bench/package.json (run `npm ci --prefix bench` first). BullMQ
// needs a Redis on 127.0.0.1: we start Debian's redis-server on a free port in a
// temp dir, with persistence off (bullmq) or with the append-only file fsynced
// every second (bullmq-aof: `--appendonly yes --appendfsync everysec`, Redis's
// durable setting), and skip BullMQ when redis-server is not installed. A drain
// slower than --max-drain-seconds is cut there and its rate taken over the jobs
// that ran (reported as partial), so one slow peer cannot stretch the run.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { percentile, nowMs } from "./stats.ts";

const args = process.argv.slice(2);
const system = args[0];
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const JOBS = opt("jobs", 50_000);
const RATE = opt("rate", 500);
const SECONDS = opt("seconds", 10);
const MAX_DRAIN_SECONDS = opt("max-drain-seconds", 40);
const CONCURRENCY = 64;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = require("node:net").connect(port, "127.0.0.1");
      sock.once("connect", () => (sock.destroy(), resolve(true)));
      sock.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} not listening after ${timeoutMs} ms`);
    await Bun.sleep(50);
  }
}

/** A job's data: when it was enqueued (ms since the epoch), and true for a warm-up job (not counted). */
interface Job {
  t: number;
  warm?: boolean;
}

/** Latency jobs sent at the rate before the measured seconds and not counted (the consumer starts cold), as bench/e2e.ts does. */
const WARMUP_SECONDS = opt("warmup-seconds", 1);

interface Scenario {
  /** Enqueue `n` jobs in bulk; resolves when all are stored. */
  fill(n: number): Promise<void>;
  /** Start consuming with `onJob(data)` per job; returns a stop function. */
  consume(onJob: (data: Job) => void): Promise<() => Promise<void>>;
  add(data: Job): Promise<void>;
  close(): Promise<void>;
}

async function drain(s: Scenario): Promise<{ rate: number; done: number }> {
  await s.fill(JOBS);
  let done = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const t0 = nowMs();
  const stop = await s.consume(() => {
    if (++done === JOBS) finish();
  });
  const cut = setTimeout(finish, MAX_DRAIN_SECONDS * 1000);
  await all;
  clearTimeout(cut);
  const ran = done;
  const rate = ran / ((nowMs() - t0) / 1000);
  await stop();
  return { rate, done: ran };
}

async function latency(s: Scenario): Promise<{ p50: number; p99: number; n: number }> {
  const samples: number[] = [];
  const warm = Math.round(RATE * WARMUP_SECONDS);
  const total = RATE * SECONDS;
  let seen = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const stop = await s.consume((data) => {
    if (!data.warm) samples.push(nowMs() - data.t);
    if (++seen === warm + total) finish();
  });
  const t0 = nowMs();
  for (let i = 0; i < warm + total; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - nowMs();
    if (wait > 1) await Bun.sleep(wait);
    void s.add(i < warm ? { t: nowMs(), warm: true } : { t: nowMs() });
  }
  await all;
  await stop();
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), n: samples.length };
}

async function bullmq(aof: boolean): Promise<Scenario & { proc: ChildProcess }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "bench-redis-"));
  const persistence = aof ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"];
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...persistence, "--dir", dir],
    {
      stdio: "ignore",
    },
  );
  await waitForPort(port);
  const { Queue, Worker } = await import("bullmq");
  const connection = { host: "127.0.0.1", port };
  const name = `bench-${Date.now()}`;
  const queue = new Queue(name, { connection });
  return {
    proc,
    async fill(n) {
      for (let i = 0; i < n; i += 1000) {
        const batch = Array.from({ length: Math.min(1000, n - i) }, () => ({
          name: "noop",
          data: { t: 0 },
          opts: { removeOnComplete: true },
        }));
        await queue.addBulk(batch);
      }
    },
    async consume(onJob) {
      const worker = new Worker(name, async (job) => onJob(job.data), {
        connection,
        concurrency: CONCURRENCY,
        removeOnComplete: { count: 0 },
      });
      await worker.waitUntilReady();
      return async () => worker.close();
    },
    async add(data) {
      await queue.add("noop", data, { removeOnComplete: true });
    },
    async close() {
      await queue.close();
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// bunqueue's embedded manager is a process-wide singleton bound to one file, so
// both scenarios share it (each with its own queue name).
const bunqueueDir = mkdtempSync(join(tmpdir(), "bench-bunqueue-"));
let bunqueueRun = 0;

async function bunqueue(mode: "embedded" | "tcp"): Promise<Scenario> {
  const dir = bunqueueDir;
  const dataPath = join(dir, mode === "tcp" ? `tcp-${++bunqueueRun}.db` : "embedded.db");
  let server: ChildProcess | undefined;
  let opts: Record<string, unknown>;
  if (mode === "tcp") {
    const tcp = await freePort();
    const http = await freePort();
    server = spawn(
      process.execPath,
      [
        join(import.meta.dir, "node_modules/bunqueue/dist/cli/index.js"),
        "start",
        "--tcp-port",
        String(tcp),
        "--http-port",
        String(http),
        "--host",
        "127.0.0.1",
        "--data-path",
        dataPath,
      ],
      {
        stdio: "ignore",
      },
    );
    await waitForPort(tcp);
    opts = { connection: { host: "127.0.0.1", port: tcp } };
  } else {
    opts = { embedded: true, dataPath };
  }
  const { Queue, Worker } = await import("bunqueue/client");
  const name = `bench-${Date.now()}`;
  const queue = new Queue(name, opts as never);
  return {
    async fill(n) {
      for (let i = 0; i < n; i += 1000) {
        const batch = Array.from({ length: Math.min(1000, n - i) }, () => ({ name: "noop", data: { t: 0 } }));
        await queue.addBulk(batch as never);
      }
    },
    async consume(onJob) {
      const worker = new Worker(name, async (job: { data: Job }) => onJob(job.data), {
        ...opts,
        concurrency: CONCURRENCY,
      } as never);
      return async () => {
        await (worker as unknown as { close(): Promise<void> }).close();
      };
    },
    async add(data) {
      await queue.add("noop", data as never);
    },
    async close() {
      await (queue as unknown as { close?: () => Promise<void> }).close?.();
      server?.kill("SIGKILL");
    },
  };
}

async function main(): Promise<void> {
  const make =
    system === "bullmq"
      ? () => bullmq(false)
      : system === "bullmq-aof"
        ? () => bullmq(true)
        : system === "bunqueue-embedded"
          ? () => bunqueue("embedded")
          : system === "bunqueue-tcp"
            ? () => bunqueue("tcp")
            : null;
  if (!make) {
    console.error(
      "usage: bun bench/peers.ts <bullmq|bullmq-aof|bunqueue-embedded|bunqueue-tcp> [--jobs N] [--rate R] [--seconds S] [--max-drain-seconds S]",
    );
    process.exit(2);
  }
  if (system.startsWith("bullmq") && !Bun.which("redis-server")) {
    console.log(JSON.stringify({ system, skipped: "redis-server not installed" }));
    return;
  }
  const a = await make();
  const drained = await drain(a);
  await a.close();
  const b = await make();
  const lat = await latency(b);
  await b.close();
  rmSync(bunqueueDir, { recursive: true, force: true });
  console.log(
    JSON.stringify({
      system,
      jobs: JOBS,
      drained: drained.done,
      drain_jobs_per_s: Math.round(drained.rate),
      rate: RATE,
      p50_ms: lat.p50,
      p99_ms: lat.p99,
      samples: lat.n,
    }),
  );
  process.exit(0);
}

await main();
