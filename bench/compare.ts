// End-to-end comparison in one run: taskplatform (broker process + worker,
// bench/e2e.ts) next to the peers of bench/peers.ts (BullMQ on Redis, bunqueue
// embedded and TCP), each in its own process, one after another, with the same
// scenarios: drain N queued no-op jobs at concurrency 64, and latency
// (enqueue -> job run) at a steady offered rate. Prints a markdown table.
//
//   bun bench/compare.ts [--jobs 50000] [--rate 500] [--seconds 10]
// Peers need `npm ci --prefix bench` first (their packages live in bench/package.json).
import { cpus } from "node:os";

const argv = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const JOBS = arg("jobs", 50_000);
const RATE = arg("rate", 500);
const SECONDS = arg("seconds", 10);

interface Row {
  system: string;
  drain?: number;
  p50?: number;
  p99?: number;
  note?: string;
}

async function run(args: string[]): Promise<string> {
  const p = Bun.spawn([process.execPath, ...args], { cwd: import.meta.dir + "/..", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${args.join(" ")} exited ${code}: ${err.slice(-2000)}`);
  return out;
}

async function ours(): Promise<Row> {
  const out = await run(["bench/e2e.ts", "--tasks", String(JOBS), "--concurrency", "64", "--rate", String(RATE), "--seconds", String(SECONDS)]);
  const drain = /= (\d+) tasks\/s/.exec(out);
  const lat = /p50 ([\d.]+) ms.*p99 ([\d.]+) ms/.exec(out);
  return {
    system: "taskplatform (broker process + worker, SQLite WAL, durable)",
    drain: drain ? Number(drain[1]) : undefined,
    p50: lat ? Number(lat[1]) : undefined,
    p99: lat ? Number(lat[2]) : undefined,
  };
}

async function peer(system: string, label: string): Promise<Row> {
  try {
    const out = await run(["bench/peers.ts", system, "--jobs", String(JOBS), "--rate", String(RATE), "--seconds", String(SECONDS)]);
    const line = out.trim().split("\n").pop()!;
    const r = JSON.parse(line) as { skipped?: string; drain_jobs_per_s?: number; p50_ms?: number; p99_ms?: number };
    if (r.skipped) return { system: label, note: r.skipped };
    return { system: label, drain: r.drain_jobs_per_s, p50: r.p50_ms, p99: r.p99_ms };
  } catch (err) {
    return { system: label, note: `failed: ${(err as Error).message.split("\n")[0]}` };
  }
}

const rows: Row[] = [];
rows.push(await ours());
rows.push(await peer("bullmq", "BullMQ 6.7 + Redis (no persistence)"));
rows.push(await peer("bunqueue-tcp", "bunqueue 2.9 TCP server, SQLite"));
rows.push(await peer("bunqueue-embedded", "bunqueue 2.9 embedded, SQLite"));

const base = rows[0]!.drain ?? NaN;
const fmt = (n: number | undefined, digits = 0) => (n === undefined || Number.isNaN(n) ? "n/a" : n.toLocaleString("en-US", { maximumFractionDigits: digits }));
console.log(`\nEnd-to-end, ${JOBS.toLocaleString("en-US")} no-op jobs, concurrency 64; latency at ${RATE}/s for ${SECONDS} s.`);
console.log(`${new Date().toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Bun ${Bun.version}\n`);
console.log("| system | drain (jobs/s) | taskplatform / system | latency p50 (ms) | latency p99 (ms) |");
console.log("|---|---:|---:|---:|---:|");
for (const r of rows) {
  const ratio = r.drain ? (base / r.drain).toFixed(2) : "n/a";
  console.log(`| ${r.system} | ${fmt(r.drain)} | ${r === rows[0] ? "1.00" : ratio} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} |${r.note ? ` ${r.note}` : ""}`);
}
process.exit(0);
