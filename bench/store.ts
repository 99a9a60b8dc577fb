// Store-only throughput (no RPC): durable inserts in batches of 1000, claims
// and status+fetch_next with 64 concurrent callers sharing group commits.
// Run: node_modules/.bin/bun bench/store.ts [rows=200000] [synchronous=normal]
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { newActivationId } from "../src/activation/ids.ts";
import { activationToRow } from "../src/store/row.ts";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { createIngest } from "../src/ingest/ingest.ts";
import { silentLogger } from "../src/log.ts";
import { openStore } from "../src/store/sqlite.ts";
import type { ClaimedActivation, NewRow } from "../src/store/types.ts";

const ROWS = Number(process.argv[2] ?? 200_000);
const SYNC = (process.argv[3] ?? "normal") as "normal" | "full";
const CONCURRENCY = 64;
const BATCH = 1000;

/** ~300-byte activation, like a small real task. */
function activation(): Uint8Array {
  return toBinary(
    TaskActivationSchema,
    create(TaskActivationSchema, {
      id: newActivationId(),
      namespace: `ns${Math.floor(Math.random() * 4)}`,
      taskname: "sentry.tasks.process_event",
      application: "sentry",
      headers: { "sentry-trace": "a".repeat(50), "compression-type": "zstd" },
      receivedAt: timestampFromMs(Date.now()),
      processingDeadlineDuration: 30n,
      retryState: { attempts: 0, maxAttempts: 3, onAttemptsExceeded: 1 },
      parametersBytes: new Uint8Array(120).fill(7),
    }),
  );
}

/** Wall-clock rate, and the rate per CPU-second of this process (steadier on a shared machine). */
function rate(label: string, n: number, t0: number, cpu0: NodeJS.CpuUsage): void {
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  const cpu = (c.user + c.system) / 1e6;
  console.log(
    `${label.padEnd(38)} ${(n / wall).toFixed(0).padStart(8)} /s wall   ${(n / cpu).toFixed(0).padStart(8)} /cpu-s`,
  );
}

const dir = mkdtempSync(join(tmpdir(), "tp-bench-store-"));
const store = openStore({
  path: join(dir, "bench.sqlite"),
  synchronous: SYNC,
  groupCommitWindowMs: 0,
  processingDeadlineGraceSec: 3,
});

const now = Date.now();
const batches: NewRow[][] = [];
for (let i = 0; i < ROWS; i += BATCH) {
  batches.push(
    Array.from({ length: Math.min(BATCH, ROWS - i) }, () =>
      activationToRow(activation(), now, { maxDelaySec: 3600 }, null),
    ),
  );
}
console.log(`activation size ${batches[0]![0]!.activation.byteLength} bytes, ${ROWS} rows, synchronous=${SYNC}`);

let t0 = performance.now();
let cpu0 = process.cpuUsage();
for (const b of batches) store.insert(b);
rate(`insert (batches of ${BATCH})`, ROWS, t0, cpu0);

// The whole ingest path (decode, validate, backpressure check, insert) on top of the stored rows.
{
  const PRODUCE = 50_000;
  const ingest = createIngest({
    store,
    config: brokerConfigSchema.parse({ store: { max_pending_count: 100_000_000 } }),
    log: silentLogger,
  });
  const payloads = Array.from({ length: PRODUCE / BATCH }, () => Array.from({ length: BATCH }, activation));
  t0 = performance.now();
  cpu0 = process.cpuUsage();
  for (const p of payloads) ingest.produce(p, "rpc");
  rate(`ingest.produce (batches of ${BATCH})`, PRODUCE, t0, cpu0);
}

// Recount reads the claim index: its cost grows with the pending backlog.
t0 = performance.now();
store.recount();
console.log(`recount with ${store.counts().pending} pending: ${(performance.now() - t0).toFixed(1)} ms`);

const filter = { application: "sentry" };
const half = Math.floor(ROWS / 2);

// Claims: 64 callers, each awaiting its claim before asking again (like GetTask workers).
let claimed = 0;
t0 = performance.now();
cpu0 = process.cpuUsage();
const held: ClaimedActivation[] = [];
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (claimed < half) {
      const c = await store.claim(filter);
      if (!c) break;
      claimed++;
      held.push(c);
    }
  }),
);
rate(`claim (concurrency ${CONCURRENCY})`, claimed, t0, cpu0);

// Status + fetch_next: each caller completes what it holds and gets the next.
let done = 0;
t0 = performance.now();
cpu0 = process.cpuUsage();
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    let cur = held.pop();
    while (cur && done < half) {
      const next = await store.setStatus({ id: cur.id, status: "complete" }, filter);
      done++;
      cur = next ?? held.pop();
    }
  }),
);
rate(`status+fetch_next (concurrency ${CONCURRENCY})`, done, t0, cpu0);

// Complete rows are deleted in bulk by upkeep; that cost belongs to the status path.
t0 = performance.now();
cpu0 = process.cpuUsage();
let deleted = 0;
for (let n = -1; n !== 0; ) deleted += n = store.deleteComplete(2000);
rate(`upkeep deleteComplete (${deleted} rows)`, deleted, t0, cpu0);

t0 = performance.now();
const counts = store.recount();
console.log(
  `recount over ${Object.values(counts).reduce((a, b) => a + b, 0)} rows: ${(performance.now() - t0).toFixed(1)} ms`,
);
t0 = performance.now();
store.depthsByNamespace();
console.log(`depthsByNamespace: ${(performance.now() - t0).toFixed(1)} ms`);
console.log("size", store.sizeBytes());
await store.close();
rmSync(dir, { recursive: true, force: true });
