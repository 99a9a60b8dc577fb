// Kafka benchmarks (issue 3) against librdkafka's mock cluster:
// (1) Kafka -> SQLite ingest rate: N activations pre-produced to a topic, then
//     the Kafka pipeline (src/kafka) with the real store and ingest, in this
//     process, measured from the first stored row to the last (group join excluded);
// (2) end to end: the broker as its own process consuming the topic, a worker
//     (src/worker) running no-op tasks, measured from the first finished task
//     to the last. Prints a markdown table.
// Usage: bun bench/kafka.ts [--ingest 100000] [--e2e 20000] [--partitions 4]
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { createIngest } from "../src/ingest/ingest.ts";
import { startKafka } from "../src/kafka/index.ts";
import { createLogger, silentLogger } from "../src/log.ts";
import { openStore } from "../src/store/sqlite.ts";
import { resolveWorkerConfig } from "../src/config/worker.ts";
import { startWorker } from "../src/worker.ts";
import { spawnBroker } from "../test/support/broker-process.ts";
import { startKafkaMock } from "../test/support/kafka-mock.ts";
import { noop } from "./e2e-tasks.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const INGEST = arg("ingest", 100_000);
const E2E = arg("e2e", 20_000);
const PARTITIONS = arg("partitions", 4);
const dir = mkdtempSync(join(tmpdir(), "bench-kafka-"));
const mock = await startKafkaMock();
const rows: string[] = [];

async function produceNoops(topic: string, n: number): Promise<number> {
  const producer = new Kafka({ brokers: mock.bootstrap.split(","), logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  let bytes = 0;
  for (let i = 0; i < n; i += 2000) {
    const messages = Array.from({ length: Math.min(2000, n - i) }, () => {
      const value = Buffer.from(noop.buildActivation().bytes);
      bytes += value.byteLength;
      return { value };
    });
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();
  return bytes / n;
}

async function ingestRate(batchRows: number): Promise<void> {
  const topic = `ingest-${batchRows}-${Date.now()}`;
  await mock.createTopic(topic, PARTITIONS);
  const avgBytes = await produceNoops(topic, INGEST);
  const config = brokerConfigSchema.parse({
    store: {
      sqlite: { path: join(dir, `${topic}.sqlite`) },
      max_pending_count: INGEST * 2,
      insert_batch_max_length: batchRows,
      insert_batch_max_time_ms: "100ms",
    },
    kafka_clusters: { default: { address: mock.bootstrap } },
    kafka_topics: { [topic]: { session_timeout_ms: "6s" } },
    kafka_auto_offset_reset: "earliest",
  });
  const store = openStore({
    path: config.store.sqlite.path,
    synchronous: "normal",
    groupCommitWindowMs: 0,
    processingDeadlineGraceSec: 3,
  });
  const ingest = createIngest({ store, config, log: silentLogger });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const kafka = await startKafka({ config, ingest, store, log: silentLogger });
  let first = 0;
  for (;;) {
    const n = store.counts().pending;
    if (n > 0 && first === 0) first = performance.now();
    if (n >= INGEST) break;
    await Bun.sleep(2);
  }
  const end = performance.now();
  const cpu = process.cpuUsage(cpu0);
  await kafka.stop();
  await store.close();
  const s = (end - first) / 1000;
  rows.push(
    `| Kafka -> SQLite ingest, batch ${batchRows} rows, ${PARTITIONS} partitions | ${INGEST} | ${Math.round(avgBytes)} B | ${s.toFixed(2)} s | **${Math.round(INGEST / s).toLocaleString("en")}/s** | ${((cpu.user + cpu.system) / INGEST).toFixed(1)} us/activation (incl. join ${((first - t0) / 1000).toFixed(1)} s) |`,
  );
}

async function endToEnd(): Promise<void> {
  const topic = `e2e-${Date.now()}`;
  await mock.createTopic(topic, PARTITIONS);
  await produceNoops(topic, E2E);
  const broker = await spawnBroker({
    TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: mock.bootstrap,
    TASKBROKER_KAFKA_AUTO_OFFSET_RESET: "earliest",
    [`TASKBROKER_KAFKA_TOPICS__${topic.toUpperCase()}__SESSION_TIMEOUT_MS`]: "6000",
    TASKBROKER_STORE__MAX_PENDING_COUNT: String(E2E * 2),
    TASKBROKER_STORE__MAX_PROCESSING_COUNT: String(E2E * 2),
    TASKBROKER_KAFKA_BATCH_MAX_ROWS: "1000",
  });
  const parsed = resolveWorkerConfig(
    [
      "--tasks",
      join(import.meta.dir, "e2e-tasks.ts"),
      "--rpc-host-list",
      broker.address,
      "--concurrency",
      "64",
      "--at-most-once-path",
      join(dir, "amo.sqlite"),
      "--max-backoff-ms",
      "100",
    ],
    {},
  );
  if (parsed.help) throw new Error("unreachable");
  let done = 0;
  let start = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const worker = await startWorker(parsed.config, {
    log: createLogger({ format: "text", level: "warn" }),
    onResult: () => {
      if (done === 0) start = performance.now();
      if (++done === E2E) resolveAll();
    },
  });
  await all;
  const s = (performance.now() - start) / 1000;
  rows.push(
    `| Kafka -> broker process -> worker (64 slots), no-op tasks | ${E2E} | | ${s.toFixed(2)} s | **${Math.round(E2E / s).toLocaleString("en")}/s** | broker consumes while the worker drains |`,
  );
  await worker.stop(5000);
  await broker.stop();
}

await ingestRate(256);
await ingestRate(1000);
if (E2E > 0) await endToEnd();
console.log("\n| scenario | activations | avg size | time | rate | notes |\n|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
await mock.stop();
process.exit(0);
