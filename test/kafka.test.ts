// Kafka ingestion end to end (issue 3): a real Kafka-protocol cluster
// (librdkafka's mock, test/kafka-mock/), the broker as a separate process
// consuming it, producers and readers using kafkajs from outside, workers
// talking real gRPC. One mock cluster for the file; unique topics per test.
import { describe, expect, test } from "bun:test";
import { spawnBroker } from "./support/broker-process.ts";
import {
  activation,
  kafkaEnv,
  produce,
  readTopic,
  storedRows,
  unique,
  until,
  kafkaTestbed,
  drainAndComplete,
} from "./support/kafka.ts";

const bed = kafkaTestbed();
const broker = (env: Record<string, string>) => bed.broker(env);

describe("kafka ingest", () => {
  test("every produced activation is stored with its offset, dispatched over gRPC and completed", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 3);
    const n = 300;
    const ids = Array.from({ length: n }, (_, i) => `a${i.toString().padStart(31, "0")}`);
    await produce(
      bed.mock.bootstrap,
      topic,
      ids.map((id) => ({ value: activation({ id }) })),
    );
    const b = await broker(kafkaEnv(bed.mock.bootstrap, [topic]));

    const seen = await drainAndComplete(b.port, n);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect(seen.length).toBe(n);
    // Completed rows are deleted by upkeep; every one of them was consumed once.
    await until("completed rows deleted", () => storedRows(b.dbPath).length === 0);
    await b.stop();
  }, 90_000);
});

describe("undecodable messages", () => {
  test("go to the dead-letter topic as their original bytes, are committed, and consumption goes on", async () => {
    const topic = unique("tasks");
    const dlq = unique("dlq");
    await bed.mock.createTopic(topic, 1);
    await bed.mock.createTopic(dlq, 1);
    const garbage = new Uint8Array([0xff, 0xfe, 0x01, 0x02, 0x03]);
    const noApp = activation({ application: "" });
    await produce(bed.mock.bootstrap, topic, [
      { value: activation({ id: "1".repeat(32) }) },
      { value: new Uint8Array(0), key: "empty" },
      { value: garbage, headers: { trace: "t1" } },
      { value: noApp },
      { value: activation({ id: "2".repeat(32) }) },
    ]);
    const b = await broker(kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_KAFKA_DEADLETTER_TOPIC: dlq }));

    const dead = await readTopic(bed.mock, dlq, 3, { settleMs: 500 });
    expect(dead.length).toBe(3);
    expect(dead.map((m) => Buffer.from(m.value ?? new Uint8Array(0)).toString("hex")).sort()).toEqual(
      [new Uint8Array(0), garbage, noApp].map((v) => Buffer.from(v).toString("hex")).sort(),
    );
    expect(dead.find((m) => m.value && m.value[0] === 0xff)?.headers.trace).toBe("t1");
    await until("both good activations stored", () => storedRows(b.dbPath).length === 2);
    expect(b.logs()).toMatch(/kafka_message_undecodable.*partition=0.*offset=1/);

    // Consumption goes on after the bad ones.
    await produce(bed.mock.bootstrap, topic, [{ value: activation({ id: "3".repeat(32) }) }]);
    await until("later activation stored", () => storedRows(b.dbPath).length === 3);
    // Everything was committed: a restart on the same database re-reads nothing.
    expect(await b.stop()).toBe(0);
    const again = await bed.broker(kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_KAFKA_DEADLETTER_TOPIC: dlq }), {
      dbPath: b.dbPath,
    });
    await again.waitForLog(/kafka_group_joined/);
    expect((await readTopic(bed.mock, dlq, 4, { timeoutMs: 2000 })).length).toBe(3);
    await again.stop();
  }, 90_000);
});

describe("backpressure", () => {
  test("pauses the consumer at max_pending_count and resumes as workers drain, losing nothing", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 2);
    const n = 400;
    await produce(
      bed.mock.bootstrap,
      topic,
      Array.from({ length: n }, () => ({ value: activation() })),
    );
    const b = await broker(kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_STORE__MAX_PENDING_COUNT: "50" }));

    await b.waitForLog(/kafka_consumer_paused/);
    // Paused with the store full: never more than the limit stored.
    await until("store filled to the limit", () => storedRows(b.dbPath).length >= 40);
    expect(storedRows(b.dbPath).length).toBeLessThanOrEqual(50);

    const seen = await drainAndComplete(b.port, n);
    expect(new Set(seen).size).toBe(n);
    expect(b.logs()).toMatch(/kafka_consumer_resumed/);
    await b.stop();
  }, 90_000);
});

describe("several topics", () => {
  test("each consumed by its own group into one store", async () => {
    const topics = [unique("ta"), unique("tb"), unique("tc")];
    for (const t of topics) await bed.mock.createTopic(t, 2);
    const retry = unique("retry");
    await bed.mock.createTopic(retry, 1);
    for (const t of topics)
      await produce(
        bed.mock.bootstrap,
        t,
        Array.from({ length: 20 }, () => ({ value: activation() })),
      );
    const b = await broker(kafkaEnv(bed.mock.bootstrap, topics, { TASKBROKER_KAFKA_RETRY_TOPIC: retry }));
    await until("all stored", () => storedRows(b.dbPath).length === 60);
    const byTopic = new Map<string, number>();
    for (const r of storedRows(b.dbPath)) byTopic.set(r.topic!, (byTopic.get(r.topic!) ?? 0) + 1);
    expect(Object.fromEntries(byTopic)).toEqual(Object.fromEntries(topics.map((t) => [t, 20])));
    for (const t of topics) expect(b.logs()).toContain(`group=taskbroker-${t}`);
    await b.stop();
  }, 90_000);

  test("several consumed topics without a retry topic is a start-up error naming the setting", async () => {
    const env = kafkaEnv(bed.mock.bootstrap, [unique("ta"), unique("tb")]);
    await expect(spawnBroker(env, { startTimeoutMs: 10_000 })).rejects.toThrow(/TASKBROKER_KAFKA_RETRY_TOPIC/);
  }, 30_000);
});
