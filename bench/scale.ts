// Scale-out: one broker serving 8, 100 and 500 worker connections over
// streaming delivery. 8 connections are real worker processes
// (`taskplatform worker --delivery stream`); the larger counts are simulated
// workers (bench/stream-clients.ts: one stream per HTTP/2 connection, the same
// wire traffic as a worker, completing each task at once), with an 8-stream
// simulated row as their baseline. Each row: a fresh broker, the workers
// connect and sit idle (the broker's CPU over --idle-seconds is what idle
// workers cost it), then N no-op tasks are produced in bulk and drained; the
// rate is N over the time from the first Produce to the last acknowledged
// result, read from the broker's taskbroker_status_total.
//
//   bun bench/scale.ts [--tasks 60000] [--credit 16] [--idle-seconds 5] [--counts 8,100,500]
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { toBinary, create } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { createBrokerClient } from "../src/connect/client.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "../test/support/broker-process.ts";

const argv = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : dflt;
};
const TASKS = Number(arg("tasks", "60000"));
const CREDIT = Number(arg("credit", "16"));
const IDLE_SECONDS = Number(arg("idle-seconds", "5"));
const COUNTS = arg("counts", "8,100,500").split(",").map(Number);
const ROOT = join(import.meta.dir, "..");
const APP = "bench";

/** user+system CPU of a process so far, ms (Linux /proc). */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

async function metric(broker: BrokerProcess, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${broker.adminPort}/metrics`)).text();
  const m = pattern.exec(text);
  return m ? Number(m[1]) : 0;
}
const COMPLETED = /^taskbroker_status_total\{status="complete"\} (\d+)/m;
const STREAMS = /^taskbroker_delivery_streams (\d+)/m;

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

interface Workers {
  stop(): Promise<void>;
}

async function simulated(broker: BrokerProcess, streams: number): Promise<Workers> {
  const procs = Math.min(2, streams);
  const children = Array.from({ length: procs }, (_, i) => {
    const n = Math.floor(streams / procs) + (i < streams % procs ? 1 : 0);
    return Bun.spawn([process.execPath, "bench/stream-clients.ts", broker.address, String(n), String(CREDIT), APP], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "inherit",
    });
  });
  await Promise.all(
    children.map(async (c) => {
      const reader = (c.stdout as ReadableStream<Uint8Array>).getReader();
      let text = "";
      while (!text.includes("ready\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("a simulated worker process exited before its streams were open");
        text += new TextDecoder().decode(value);
      }
      // Keep draining its output so it never blocks on a full pipe.
      void (async () => {
        while (!(await reader.read()).done);
      })();
    }),
  );
  return {
    async stop() {
      for (const c of children) c.kill(9);
      await Promise.all(children.map((c) => c.exited));
    },
  };
}

async function realWorkers(broker: BrokerProcess, count: number): Promise<Workers> {
  const dir = tempDir("bench-scale-");
  const children = Array.from({ length: count }, (_, i) =>
    Bun.spawn(
      [
        process.execPath,
        "src/main.ts",
        "worker",
        "--tasks",
        "bench/e2e-tasks.ts",
        "--rpc-host-list",
        broker.address,
        "--concurrency",
        String(CREDIT),
        "--delivery",
        "stream",
        "--at-most-once-path",
        join(dir, `amo-${i}.sqlite`),
      ],
      { cwd: ROOT, stdout: "ignore", stderr: "pipe", env: { ...process.env, TASKWORKER_LOG_FILTER: "warn" } },
    ),
  );
  await until("the workers' streams", async () => (await metric(broker, STREAMS)) >= count, 60_000, 100);
  return {
    async stop() {
      for (const c of children) c.kill("SIGTERM");
      await Promise.all(children.map((c) => c.exited));
    },
  };
}

interface Row {
  label: string;
  connections: number;
  rate?: number;
  brokerUsPerTask?: number;
  idleCorePct?: number;
  note?: string;
}

async function measure(
  label: string,
  connections: number,
  start: (b: BrokerProcess) => Promise<Workers>,
): Promise<Row> {
  const broker = await spawnBroker({
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
    // Every simulated worker connects from 127.0.0.1; in a deployment they come from many hosts.
    TASKBROKER_GRPC_MAX_CONNECTIONS_PER_CLIENT: "2048",
    TASKBROKER_STORE__MAX_PENDING_COUNT: String(TASKS * 2),
    TASKBROKER_STORE__MAX_PROCESSING_COUNT: String(TASKS * 2),
  });
  let workers: Workers | null = null;
  try {
    workers = await start(broker);
    // Idle: connected, credit granted, nothing to do.
    await Bun.sleep(500);
    const idle0 = cpuMs(broker.proc.pid);
    const t0 = performance.now();
    await Bun.sleep(IDLE_SECONDS * 1000);
    const idleCorePct = ((cpuMs(broker.proc.pid) - idle0) / (performance.now() - t0)) * 100;

    const producer = createBrokerClient({ address: broker.address });
    const template = (i: number) =>
      toBinary(
        TaskActivationSchema,
        create(TaskActivationSchema, {
          id: `${crypto.randomUUID().replaceAll("-", "")}`,
          namespace: "bench",
          taskname: "bench.noop",
          application: APP,
          receivedAt: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 },
          processingDeadlineDuration: 60n,
          retryState: { attempts: 0, maxAttempts: 1, onAttemptsExceeded: 1 },
          parametersBytes: new Uint8Array([
            0x82, 0xa4, 0x61, 0x72, 0x67, 0x73, 0x90, 0xa6, 0x6b, 0x77, 0x61, 0x72, 0x67, 0x73, 0x80,
          ]),
          headers: { n: String(i) },
        }),
      );
    const batches: Uint8Array[][] = [];
    for (let i = 0; i < TASKS; i += 1000)
      batches.push(Array.from({ length: Math.min(1000, TASKS - i) }, (_, k) => template(i + k)));
    const done0 = await metric(broker, COMPLETED);
    const cpu0 = cpuMs(broker.proc.pid);
    const p0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < batches.length) await producer.produce(batches[next++]!);
      }),
    );
    await until("the drain", async () => (await metric(broker, COMPLETED)) - done0 >= TASKS, 180_000, 20);
    const s = (performance.now() - p0) / 1000;
    const brokerUsPerTask = ((cpuMs(broker.proc.pid) - cpu0) * 1000) / TASKS;
    await producer.close();
    return { label, connections, rate: TASKS / s, brokerUsPerTask, idleCorePct };
  } catch (err) {
    return { label, connections, note: `failed: ${(err as Error).message.split("\n")[0]}` };
  } finally {
    await workers?.stop();
    await broker.stop();
  }
}

const rows: Row[] = [];
const startedAt = new Date();
rows.push(await measure("8 worker processes (--concurrency 16, stream)", 8, (b) => realWorkers(b, 8)));
for (const n of COUNTS)
  rows.push(await measure(`${n} simulated stream workers (credit ${CREDIT})`, n, (b) => simulated(b, n)));

const base = rows.find((r) => r.connections === 8 && r.label.includes("simulated"))?.rate;
const fmt = (n: number | undefined, d = 0) =>
  n === undefined ? "n/a" : n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
console.log(
  `\nScale-out: one broker, ${TASKS.toLocaleString("en-US")} no-op tasks produced in bulk and drained over streaming delivery.`,
);
console.log(`${startedAt.toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Bun ${Bun.version}\n`);
console.log(
  "| workers | connections | tasks/s | vs 8 simulated | broker CPU us/task | idle broker CPU (% of a core) |",
);
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  const vs = base && r.rate ? (r.rate / base).toFixed(2) : "n/a";
  console.log(
    `| ${r.label} | ${r.connections} | ${fmt(r.rate)} | ${vs} | ${fmt(r.brokerUsPerTask, 1)} | ${fmt(r.idleCorePct, 2)} |${r.note ? ` ${r.note}` : ""}`,
  );
}
process.exit(0);
