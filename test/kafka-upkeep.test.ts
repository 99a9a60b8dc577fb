// Upkeep with Kafka (docs/spec/broker.md "Upkeep" steps 1 and 7, issue 3 "Publishing"):
// retries go to the retry topic with attempts + 1 and come back through the
// consumer; dead letters go to the dead-letter topic as original bytes; a row
// is marked done only after the publish is acknowledged.
import { describe, expect, test } from "bun:test";
import { ConnectError, Code } from "@connectrpc/connect";
import { ApiKey, KafkaError } from "./support/kafka-mock.ts";
import {
  activation,
  brokerClient,
  decodeActivation,
  kafkaEnv,
  OnAttemptsExceeded,
  produce,
  readTopic,
  storedRows,
  unique,
  until,
  kafkaTestbed,
} from "./support/kafka.ts";

const bed = kafkaTestbed();
const broker = (env: Record<string, string>) => bed.broker(env);

/** Claims up to `n` activations and reports `status` for each (fetch_next keeps one call per task). */
async function claimAndReport(port: number, n: number, status: 3 | 4 | 5, timeoutMs = 60_000) {
  const client = brokerClient(port);
  const seen: ReturnType<typeof decodeActivation>[] = [];
  const deadline = Date.now() + timeoutMs;
  let next: ReturnType<typeof decodeActivation> | undefined;
  while (seen.length < n && Date.now() < deadline) {
    try {
      if (!next) next = (await client.getTask({ application: "app" })).task;
      if (!next) continue;
      seen.push(next);
      const res = await client.setTaskStatus({ id: next.id, status, fetchNextTask: { application: "app" } });
      next = seen.length < n ? res.task : undefined;
    } catch (err) {
      next = undefined;
      if (err instanceof ConnectError && err.code === Code.NotFound) await Bun.sleep(50);
      else throw err;
    }
  }
  return seen;
}

describe("retries", () => {
  test("reach the retry topic with attempts + 1 and are consumed and dispatched again", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    const ids = Array.from({ length: 5 }, (_, i) => `${i}`.repeat(32));
    await produce(
      bed.mock.bootstrap,
      topic,
      ids.map((id) => ({ value: activation({ id, maxAttempts: 3 }) })),
    );
    // The single consumed topic is the retry topic by default.
    const b = await broker(kafkaEnv(bed.mock.bootstrap, [topic]));

    const first = await claimAndReport(b.port, 5, 4);
    expect(first.map((a) => a.id).sort()).toEqual(ids);
    const second = await claimAndReport(b.port, 5, 5);
    expect(second.map((a) => a.retryState?.attempts)).toEqual([1, 1, 1, 1, 1]);
    expect(second.every((a) => !ids.includes(a.id))).toBe(true);

    const onTopic = await readTopic(bed.mock, topic, 10, { settleMs: 300 });
    expect(onTopic.length).toBe(10);
    const retried = onTopic.slice(5).map((m) => decodeActivation(m.value!));
    expect(retried.map((a) => a.retryState?.attempts)).toEqual([1, 1, 1, 1, 1]);
    expect(retried.map((a) => a.namespace)).toEqual(["ns", "ns", "ns", "ns", "ns"]);
    await until("store empty", () => storedRows(b.dbPath).length === 0);
    await b.stop();
  }, 90_000);
});

describe("dead letters", () => {
  test("10k failed tasks, half DISCARD and half DEADLETTER, leave exactly 5k dead letters and an empty store", async () => {
    const topic = unique("tasks");
    const dlq = unique("dlq");
    await bed.mock.createTopic(topic, 4);
    await bed.mock.createTopic(dlq, 2);
    const n = 10_000;
    const deadIds = new Set<string>();
    const messages = Array.from({ length: n }, (_, i) => {
      const id = crypto.randomUUID().replaceAll("-", "");
      const policy = i % 2 === 0 ? OnAttemptsExceeded.DISCARD : OnAttemptsExceeded.DEADLETTER;
      if (policy === OnAttemptsExceeded.DEADLETTER) deadIds.add(id);
      return { value: activation({ id, onAttemptsExceeded: policy }) };
    });
    await produce(bed.mock.bootstrap, topic, messages);
    const b = await broker(
      kafkaEnv(bed.mock.bootstrap, [topic], {
        TASKBROKER_KAFKA_DEADLETTER_TOPIC: dlq,
        TASKBROKER_STORE__MAX_PENDING_COUNT: "20000",
        TASKBROKER_KAFKA_BATCH_MAX_ROWS: "1000",
      }),
    );
    // Sixteen concurrent claimers take every task, then report them all FAILURE in batches.
    const client = brokerClient(b.port);
    const claimed: string[] = [];
    const deadline = Date.now() + 120_000;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (claimed.length < n && Date.now() < deadline) {
          try {
            const res = await client.getTask({ application: "app" });
            if (res.task) claimed.push(res.task.id);
          } catch (err) {
            if (err instanceof ConnectError && err.code === Code.NotFound) await Bun.sleep(20);
            else throw err;
          }
        }
      }),
    );
    expect(new Set(claimed).size).toBe(n);
    for (let i = 0; i < n; i += 500) {
      await client.setBatchActivationStatus({ updates: claimed.slice(i, i + 500).map((id) => ({ id, status: 3 })) });
    }

    await until("store empty", () => storedRows(b.dbPath).length === 0, 60_000);
    const dead = await readTopic(bed.mock, dlq, n / 2, { settleMs: 1000, timeoutMs: 60_000 });
    expect(dead.length).toBe(n / 2);
    expect(new Set(dead.map((m) => decodeActivation(m.value!).id))).toEqual(deadIds);
    await b.stop();
  }, 240_000);

  test("a failing publish keeps the row until a later publish succeeds", async () => {
    const topic = unique("tasks");
    const dlq = unique("dlq");
    await bed.mock.createTopic(topic, 1);
    await bed.mock.createTopic(dlq, 1);
    const ids = ["a".repeat(32), "b".repeat(32), "c".repeat(32)];
    await produce(
      bed.mock.bootstrap,
      topic,
      ids.map((id) => ({ value: activation({ id, onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER }) })),
    );
    const b = await broker(kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_KAFKA_DEADLETTER_TOPIC: dlq }));
    await until("stored", () => storedRows(b.dbPath).length === 3);

    // From now on every produce request fails for a while (the broker's publisher is the only producer).
    // Enough for three failed sends (the producer tries each send 3 times).
    await bed.mock.pushErrors(ApiKey.Produce, KafkaError.NotEnoughReplicas, 9);
    await claimAndReport(b.port, 3, 3);
    await b.waitForLog(/kafka_publish_failed/);
    // The publish failed: the Failure rows are still there (state 6), nothing lost.
    const held = storedRows(b.dbPath);
    expect(held.map((r) => r.id).sort()).toEqual(ids);

    // Once Kafka accepts again, upkeep's next pass publishes them and only then drops the rows.
    await until("rows published and removed", () => storedRows(b.dbPath).length === 0, 60_000);
    const dead = await readTopic(bed.mock, dlq, 3, { settleMs: 500 });
    expect(dead.map((m) => decodeActivation(m.value!).id).sort()).toEqual(ids);
    await b.stop();
  }, 120_000);
});
