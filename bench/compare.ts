// End-to-end comparison in one run, one command: taskplatform in both
// delivery modes (broker process + worker, bench/e2e.ts --delivery stream and
// --delivery unary) next to every peer of bench/peers.ts (BullMQ on Redis with
// AOF appendfsync everysec and without persistence, bunqueue TCP and
// embedded), each in its own process, one after another, same scenarios:
// drain N queued no-op jobs at concurrency 64, and latency (enqueue -> job
// runs) at a steady offered rate, after a 1 s warm-up at that rate that is not
// counted (every system alike). Prints one markdown table and the ratios the
// throughput goal is judged by, then runs bench/scale.ts (one broker serving 8,
// 100 and 500 worker connections; skip with --no-scale). Installs the peers
// (npm ci --prefix bench) when they are missing; needs Debian's redis-server
// for the BullMQ rows. About 3.5 minutes on the project's 2-core machine.
//
//   bun bench/compare.ts [--jobs 50000] [--rate 500] [--seconds 10] [--max-drain-seconds 40] [--no-scale]
import { existsSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";

const argv = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const JOBS = arg("jobs", 50_000);
const RATE = arg("rate", 500);
const SECONDS = arg("seconds", 10);
const MAX_DRAIN_SECONDS = arg("max-drain-seconds", 40);
const ROOT = join(import.meta.dir, "..");

interface Row {
  key: string;
  system: string;
  drain?: number;
  p50?: number;
  p99?: number;
  cpu?: string;
  note?: string;
}

async function run(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err.slice(-2000)}`);
  return out;
}

async function ours(delivery: "stream" | "unary"): Promise<Row> {
  const system =
    delivery === "stream"
      ? "taskplatform, stream delivery (broker process + worker, SQLite WAL, durable)"
      : "taskplatform, v1 unary delivery (broker process + worker, SQLite WAL, durable)";
  try {
    const out = await run([
      process.execPath,
      "bench/e2e.ts",
      "--delivery",
      delivery,
      "--tasks",
      String(JOBS),
      "--concurrency",
      "64",
      "--rate",
      String(RATE),
      "--seconds",
      String(SECONDS),
    ]);
    const drain = /= (\d+) tasks\/s/.exec(out);
    const lat = /p50 ([\d.]+) ms.*p99 ([\d.]+) ms/.exec(out);
    const cpu = /cpu per task: worker process ([\d.]+) us, broker ([\d.]+) us/.exec(out);
    return {
      key: delivery,
      system,
      drain: drain ? Number(drain[1]) : undefined,
      p50: lat ? Number(lat[1]) : undefined,
      p99: lat ? Number(lat[2]) : undefined,
      cpu: cpu ? `${cpu[2]} / ${cpu[1]}` : undefined,
    };
  } catch (err) {
    return { key: delivery, system, note: `failed: ${(err as Error).message.split("\n")[0]}` };
  }
}

async function peer(name: string, label: string): Promise<Row> {
  try {
    const out = await run([
      process.execPath,
      "bench/peers.ts",
      name,
      "--jobs",
      String(JOBS),
      "--rate",
      String(RATE),
      "--seconds",
      String(SECONDS),
      "--max-drain-seconds",
      String(MAX_DRAIN_SECONDS),
    ]);
    const line = out.trim().split("\n").pop()!;
    const r = JSON.parse(line) as {
      skipped?: string;
      drained?: number;
      drain_jobs_per_s?: number;
      p50_ms?: number;
      p99_ms?: number;
    };
    if (r.skipped) return { key: name, system: label, note: r.skipped };
    const partial =
      r.drained !== undefined && r.drained < JOBS
        ? `drain cut at ${MAX_DRAIN_SECONDS} s: ${r.drained} of ${JOBS} jobs`
        : undefined;
    return { key: name, system: label, drain: r.drain_jobs_per_s, p50: r.p50_ms, p99: r.p99_ms, note: partial };
  } catch (err) {
    return { key: name, system: label, note: `failed: ${(err as Error).message.split("\n")[0]}` };
  }
}

if (!existsSync(join(import.meta.dir, "node_modules/bullmq"))) {
  console.error("installing the peers: npm ci --prefix bench");
  await run(["npm", "ci", "--prefix", "bench", "--no-audit", "--no-fund"]);
}

const startedAt = new Date();
const load0 = loadavg()[0]!;
const t0 = performance.now();
const rows: Row[] = [];
// The pairs the goal compares run next to each other, so machine load drifts least between them.
rows.push(await ours("stream"));
rows.push(await peer("bullmq-aof", "BullMQ 6.7 + Redis 7, AOF appendfsync everysec (durable)"));
rows.push(await ours("unary"));
rows.push(await peer("bullmq", "BullMQ 6.7 + Redis 7, no persistence"));
rows.push(await peer("bunqueue-tcp", "bunqueue 2.9 TCP server, SQLite"));
rows.push(await peer("bunqueue-embedded", "bunqueue 2.9 embedded, SQLite"));
const minutes = (performance.now() - t0) / 60_000;

const byKey = new Map(rows.map((r) => [r.key, r]));
const stream = byKey.get("stream")!;
const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || Number.isNaN(n)
    ? "n/a"
    : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratio = (a: number | undefined, b: number | undefined) => (a && b ? (a / b).toFixed(2) : "n/a");

console.log(
  `\nEnd-to-end, ${JOBS.toLocaleString("en-US")} no-op jobs drained at concurrency 64; latency enqueue -> job at ${RATE}/s for ${SECONDS} s.`,
);
console.log(
  `${startedAt.toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, ` +
    `load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end, ${minutes.toFixed(1)} min\n`,
);
console.log(
  "| system | drain (jobs/s) | stream / system | latency p50 (ms) | latency p99 (ms) | CPU us/task broker / worker |",
);
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(
    `| ${r.system} | ${fmt(r.drain)} | ${r === stream ? "1.00" : ratio(stream.drain, r.drain)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.cpu ?? ""} |${r.note ? ` ${r.note}` : ""}`,
  );
}
const aof = byKey.get("bullmq-aof")!;
const unary = byKey.get("unary")!;
console.log("");
console.log(`stream drain / BullMQ AOF drain: ${ratio(stream.drain, aof.drain)} (goal >= 2.00)`);
console.log(
  `stream latency p50 ${fmt(stream.p50, 2)} ms vs BullMQ AOF ${fmt(aof.p50, 2)} ms; p99 ${fmt(stream.p99, 2)} ms vs ${fmt(aof.p99, 2)} ms (goal: below at both)`,
);
console.log(
  `unary drain / BullMQ AOF drain: ${ratio(unary.drain, aof.drain)}; stream / unary: ${ratio(stream.drain, unary.drain)}`,
);

if (!argv.includes("--no-scale")) {
  try {
    const out = await run([process.execPath, "bench/scale.ts"]);
    console.log(out.slice(out.indexOf("\nScale-out")).trimEnd());
  } catch (err) {
    console.log(`\nscale-out bench failed: ${(err as Error).message.split("\n")[0]}`);
  }
}
console.log(`\n${((performance.now() - t0) / 60_000).toFixed(1)} min in all`);
process.exit(0);
