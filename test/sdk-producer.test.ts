// Producers against real components: the RPC producer batches concurrent
// dispatches into few Produce calls and rides out broker backpressure
// (RESOURCE_EXHAUSTED) until a worker drains the queue; the Kafka producer
// writes each namespace to its routed topic on a real Kafka-protocol cluster.
import { afterAll, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Kafka, logLevel } from "kafkajs";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { producerFromEnv } from "../src/sdk/producers.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import { routerFromEnv } from "../src/sdk/routing.ts";
import { createApp, decodeParameters } from "../src/sdk/index.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { startKafkaMock } from "./support/kafka-mock.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";
import { spawnWorker, waitFor, type WorkerProcess } from "./support/worker-process.ts";
import { hello } from "./worker-tasks.fixture.ts";

const stops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  // kafkajs' disconnect can wait out a session timeout; don't let teardown hang on it.
  for (const s of stops.reverse()) await Promise.race([s().catch(() => {}), Bun.sleep(2000)]);
}, 20_000);

async function brokerMetric(b: BrokerProcess, name: string, labels: Record<string, string>): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/metrics`);
  return sumOf(parsePrometheusText(await res.text()), name, labels);
}

test("concurrent dispatches share Produce calls; backpressure is retried until the queue drains", async () => {
  const b = await spawnBroker({ TASKBROKER_ADMIN_ENABLED: "true", TASKBROKER_STORE__MAX_PENDING_COUNT: "50" });
  stops.push(() => b.stop("SIGKILL"));
  const producer = createRpcProducer({ address: `127.0.0.1:${b.port}`, concurrency: 1 });
  stops.push(() => producer.close());
  await Promise.all(Array.from({ length: 40 }, (_, i) => producer.send("taskworker", ...built(`batch-${i}`))));
  expect(await brokerMetric(b, "taskbroker_ingest_total", { source: "rpc", result: "accepted" })).toBe(40);
  expect(await brokerMetric(b, "taskbroker_rpc_requests_total", { method: "Produce" })).toBeLessThanOrEqual(3);

  // 40 of 50 pending: 30 more meet RESOURCE_EXHAUSTED; what fits goes in, the rest waits for room.
  const out = join(tempDir("producer-"), "out");
  let accepted = false;
  const blocked = Promise.all(
    Array.from({ length: 30 }, (_, i) => producer.send("taskworker", ...built(`bp-${i}`))),
  ).then(() => (accepted = true));
  await waitFor(
    "backpressure answered",
    async () => (await brokerMetric(b, "taskbroker_ingest_total", { source: "rpc", result: "rejected" })) >= 1,
  );
  expect(accepted).toBe(false);
  const w: WorkerProcess = await spawnWorker(
    [
      "--tasks",
      join(import.meta.dir, "worker-tasks.fixture.ts"),
      "--rpc-host-list",
      `127.0.0.1:${b.port}`,
      "--concurrency",
      "8",
      "--at-most-once-path",
      join(tempDir("amo-"), "a.sqlite"),
    ],
    { WT_OUT: out },
  );
  stops.push(() => w.stop("SIGKILL"));
  await blocked;
  await waitFor(
    "the held-back tasks ran",
    () =>
      existsSync(out) &&
      readFileSync(out, "utf8")
        .split("\n")
        .filter((l) => l.startsWith("hello bp-")).length === 30,
    20_000,
  );
}, 60_000);

function built(tag: string) {
  const b = hello.buildActivation({ args: [tag] });
  return [b.activation, b.bytes] as const;
}

test("Kafka: each namespace goes to its routed topic, bytes unchanged", async () => {
  const kafka = await startKafkaMock();
  stops.push(() => kafka.stop());
  await kafka.createTopic("taskworker", 1);
  await kafka.createTopic("taskworker-ingest", 1);
  const env = {
    TASKWORKER_KAFKA_BROKERS: kafka.bootstrap,
    TASKWORKER_ROUTES: '{"ingest.errors":"taskworker-ingest"}',
    TASKWORKER_TOPICS: "taskworker,taskworker-ingest",
  };
  expect(routerFromEnv(env).topicFor("ingest.errors")).toBe("taskworker-ingest");
  const setup = producerFromEnv(env);
  const app = createApp({ name: "kafkatest", producer: setup.producer, router: setup.router });
  const ingest = app.namespace("ingest.errors").register({ name: "process", handler: (_n: number) => undefined });
  const other = app.namespace("other").register({ name: "other", handler: (_n: number) => undefined });
  const ids = { ingest: await ingest.delay(1), other: await other.delay(2) };
  await setup.producer.close();

  const consumer = new Kafka({ brokers: kafka.bootstrap.split(","), logLevel: logLevel.NOTHING }).consumer({
    groupId: `g-${Date.now()}`,
  });
  stops.push(() => consumer.disconnect());
  await consumer.connect();
  await consumer.subscribe({ topics: ["taskworker", "taskworker-ingest"], fromBeginning: true });
  const seen: Record<string, { id: string; args: unknown[] }> = {};
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      const a = fromBinary(TaskActivationSchema, message.value!);
      seen[topic] = { id: a.id, args: decodeParameters(a.parametersBytes, a.headers["compression-type"]).args };
    },
  });
  await waitFor("both topics consumed", () => Object.keys(seen).length === 2, 30_000);
  expect(seen["taskworker-ingest"]).toEqual({ id: ids.ingest, args: [1] });
  expect(seen["taskworker"]).toEqual({ id: ids.other, args: [2] });
}, 60_000);
