// Offsets are committed only after rows are durable, and partitions move
// between broker processes without loss or duplication (issue 3:
// "Durable-then-commit", "Rebalancing"). Every row stores its Kafka origin,
// so "exactly once" is checked on (topic, partition, offset) across databases.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir, type BrokerProcess } from "./support/broker-process.ts";
import {
  activation,
  kafkaEnv,
  produce,
  storedRows,
  unique,
  until,
  type StoredOrigin,
  kafkaTestbed,
} from "./support/kafka.ts";

const bed = kafkaTestbed();
const broker = (env: Record<string, string>, dbPath: string) => bed.broker(env, { dbPath });

/** Produces `total` activations in small batches, spread over time, until done. */
function produceInBackground(topic: string, total: number, perBatch: number, pauseMs: number) {
  let sent = 0;
  const done = (async () => {
    while (sent < total) {
      const n = Math.min(perBatch, total - sent);
      await produce(
        bed.mock.bootstrap,
        topic,
        Array.from({ length: n }, () => ({ value: activation() })),
      );
      sent += n;
      await Bun.sleep(pauseMs);
    }
  })();
  return { done, sent: () => sent };
}

/** The partitions of `topic` a broker process was given at its last group join (from its log). */
function lastAssignment(b: BrokerProcess, topic: string): number[] {
  const joins = b
    .logs()
    .split("\n")
    .filter((l) => l.includes("kafka_group_joined"));
  const last = joins[joins.length - 1];
  const found = last ? new RegExp(`partitions=\\S*?${topic}:([0-9|]*)`).exec(last)?.[1] : undefined;
  return found ? found.split("|").map(Number) : [];
}

/** Asserts every (partition, offset) below each partition's end appears exactly once across `rows`. */
function expectExactlyOnce(rows: StoredOrigin[], total: number) {
  const seen = new Map<string, number>();
  for (const r of rows) {
    const key = `${r.partition}:${r.offset}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const twice = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
  expect(twice).toEqual([]);
  expect(rows.length).toBe(total);
  expect(new Set(rows.map((r) => r.id)).size).toBe(total);
  // No gaps: offsets of each partition are 0..n-1.
  const byPartition = new Map<number, number[]>();
  for (const r of rows) byPartition.set(r.partition!, [...(byPartition.get(r.partition!) ?? []), Number(r.offset)]);
  for (const offsets of byPartition.values()) {
    offsets.sort((a, b) => a - b);
    expect(offsets[offsets.length - 1]).toBe(offsets.length - 1);
  }
}

describe("durable then commit", () => {
  test("kill -9 mid-stream and restart: every message stored exactly once", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 4);
    const dbPath = join(tempDir("kafka-kill-"), "inflight.sqlite");
    const env = kafkaEnv(bed.mock.bootstrap, [topic], {
      TASKBROKER_STORE__MAX_PENDING_COUNT: "100000",
      TASKBROKER_KAFKA_BATCH_MAX_ROWS: "20",
    });
    const total = 4000;
    const producer = produceInBackground(topic, total, 100, 20);
    let b = await broker(env, dbPath);
    await until("some rows stored", () => storedRows(dbPath).length > 300);
    b.kill9();
    await b.proc.exited;
    const atKill = storedRows(dbPath).length;
    expect(atKill).toBeLessThan(total);

    b = await broker(env, dbPath);
    await producer.done;
    await until("all stored after restart", () => storedRows(dbPath).length >= total, 60_000);
    expectExactlyOnce(storedRows(dbPath), total);
    await b.stop();
  }, 120_000);
});

describe("rebalancing", () => {
  test("3 broker processes share 12 partitions through random restarts: every offset stored exactly once", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 12);
    const env = kafkaEnv(bed.mock.bootstrap, [topic], {
      TASKBROKER_STORE__MAX_PENDING_COUNT: "100000",
      TASKBROKER_KAFKA_BATCH_MAX_ROWS: "25",
    });
    const dbs = [0, 1, 2].map((i) => join(tempDir(`kafka-member-${i}-`), "inflight.sqlite"));
    const members = await Promise.all(dbs.map((db) => broker(env, db)));
    // Production starts once the group has settled with all three members
    // holding partitions, so each of them stores part of the stream.
    await until(
      "the 12 partitions shared by the three members",
      () => {
        const parts = members.map((m) => lastAssignment(m, topic));
        return parts.every((p) => p.length > 0) && new Set(parts.flat()).size === 12 && parts.flat().length === 12;
      },
      30_000,
    );
    const total = 6000;
    const producer = produceInBackground(topic, total, 60, 25);

    // Random graceful restarts while messages flow: each one makes the group rebalance twice.
    for (let round = 0; round < 3; round++) {
      await Bun.sleep(1500 + Math.random() * 1500);
      const i = Math.floor(Math.random() * members.length);
      const old = members[i]!;
      expect(await old.stop()).toBe(0);
      members[i] = await broker(env, dbs[i]!);
    }
    await producer.done;
    const all = () => dbs.flatMap((db) => storedRows(db));
    await until("every message stored", () => all().length >= total, 90_000);
    // A late duplicate would show up right behind; give the group a moment.
    await Bun.sleep(1000);
    expectExactlyOnce(all(), total);
    // The work really was shared.
    expect(dbs.filter((db) => storedRows(db).length > 0).length).toBeGreaterThan(1);
    await Promise.all(members.map((m) => m.stop()));
  }, 180_000);
});
