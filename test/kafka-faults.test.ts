// Kafka faults (issue 8 "start-up", issue 11 items 2, 3 and 5), against a
// real Kafka-protocol cluster (librdkafka's mock) with the broker as a
// process: the RPC port answers within 2 s of start whatever the number of
// topics while /ready waits for the groups; the broker serves its stored rows
// while Kafka is unreachable and starts consuming when it appears; Kafka
// killed under a running broker turns /ready not-ready; an outage or a
// rebalance while backpressure pauses the consumer does not leave it paused;
// and after an outage plus kill -9 nothing is dispatched again after its
// completion was acknowledged.
import { describe, expect, test } from "bun:test";
import { Code, ConnectError } from "@connectrpc/connect";
import type { BrokerProcess } from "./support/broker-process.ts";
import { ApiKey, KafkaError } from "./support/kafka-mock.ts";
import {
  activation,
  brokerClient,
  committedOffsets,
  drainAndComplete,
  kafkaEnv,
  kafkaTestbed,
  produce,
  storedRows,
  unique,
  until,
} from "./support/kafka.ts";
import { parsePrometheusText, valueOf } from "./support/prom-text.ts";

const bed = kafkaTestbed();

interface Readiness {
  status: number;
  kafka: { ok: boolean; detail: string } | undefined;
}

async function readiness(b: BrokerProcess): Promise<Readiness> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/ready`);
  const body = (await res.json()) as { checks: Record<string, { ok: boolean; detail: string }> };
  return { status: res.status, kafka: body.checks.kafka };
}

async function metric(b: BrokerProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${b.adminPort}/metrics`)).text();
  return valueOf(parsePrometheusText(text), name, labels) ?? 0;
}

/** True when GetTask has nothing to hand out. */
async function nothingToDispatch(port: number): Promise<boolean> {
  try {
    const res = await brokerClient(port).getTask({ application: "app" });
    return !res.task;
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.NotFound) return true;
    throw err;
  }
}

describe("start-up", () => {
  test("with 9 topics the RPC port answers within 2 s of start; /ready waits until every group joined", async () => {
    const topics = Array.from({ length: 9 }, (_, i) => unique(`t${i}`));
    for (const t of topics) await bed.mock.createTopic(t, 1);
    const env = kafkaEnv(bed.mock.bootstrap, topics, {
      TASKBROKER_KAFKA_RETRY_TOPIC: topics[0]!,
      TASKBROKER_ADMIN_ENABLED: "true",
    });
    const t0 = Date.now();
    const b = await bed.broker(env);
    expect(await nothingToDispatch(b.port)).toBe(true);
    const rpcMs = Date.now() - t0;
    expect(rpcMs).toBeLessThan(2000);
    // The groups join concurrently in the background; until then the broker is not ready.
    const early = await readiness(b);
    expect(early.status).toBe(503);
    expect(early.kafka?.ok).toBe(false);
    await until("every group joined", async () => (await readiness(b)).status === 200, 20_000, 50);
    const readyMs = Date.now() - t0;
    expect(b.logs().match(/kafka_group_joined/g)?.length).toBe(9);
    console.log(`start-up with 9 topics: RPC answered after ${rpcMs} ms, /ready after ${readyMs} ms`);
    expect(await b.stop()).toBe(0);
  }, 60_000);
});

describe("Kafka unreachable", () => {
  test("at start the broker serves its stored rows and consumes once Kafka appears; Kafka killed under it turns /ready not-ready", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    const env = kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_ADMIN_ENABLED: "true" });
    const before = Array.from({ length: 5 }, (_, i) => `b${i}`.padEnd(32, "0"));
    await produce(
      bed.mock.bootstrap,
      topic,
      before.map((id) => ({ value: activation({ id }) })),
    );
    const first = await bed.broker(env);
    await until("stored", () => storedRows(first.dbPath).length === 5);
    await until("ready", async () => (await readiness(first)).status === 200);

    // Kafka dies under a running broker: readiness says so within seconds.
    await bed.mock.brokerDown(1);
    const downAt = Date.now();
    await until("not ready", async () => (await readiness(first)).status === 503, 15_000, 100);
    const notReadyMs = Date.now() - downAt;
    expect(notReadyMs).toBeLessThan(10_000);
    expect((await readiness(first)).kafka?.detail).toMatch(/no answer from Kafka|crashed|connect/);
    expect(await first.stop()).toBe(0);

    // Restart while Kafka is still away: the port opens and the stored rows are served.
    const b = await bed.broker(env, { dbPath: first.dbPath });
    const served = await drainAndComplete(b.port, 2, 10_000);
    expect(served.length).toBe(2);
    expect(before).toEqual(expect.arrayContaining(served));
    const waiting = await readiness(b);
    expect(waiting.status).toBe(503);
    expect(waiting.kafka?.detail).toMatch(/connect|joining/);

    // Kafka comes back: the broker joins and consumes what is produced from then on.
    await bed.mock.brokerUp(1);
    await until("ready once Kafka is back", async () => (await readiness(b)).status === 200, 30_000, 100);
    const after = Array.from({ length: 5 }, (_, i) => `a${i}`.padEnd(32, "0"));
    await produce(
      bed.mock.bootstrap,
      topic,
      after.map((id) => ({ value: activation({ id }) })),
    );
    const rest = await drainAndComplete(b.port, 8, 30_000);
    expect(new Set([...served, ...rest])).toEqual(new Set([...before, ...after]));
    console.log(`Kafka killed: /ready not-ready after ${notReadyMs} ms`);
    expect(await b.stop()).toBe(0);
  }, 90_000);
});

describe("backpressure and faults", () => {
  const pausedEnv = (topic: string) =>
    kafkaEnv(bed.mock.bootstrap, [topic], {
      TASKBROKER_STORE__MAX_PENDING_COUNT: "100",
      TASKBROKER_ADMIN_ENABLED: "true",
    });

  test("a rebalance while paused does not leave the consumer paused", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    await produce(
      bed.mock.bootstrap,
      topic,
      Array.from({ length: 300 }, () => ({ value: activation() })),
    );
    const b = await bed.broker(pausedEnv(topic));
    await b.waitForLog(/kafka_consumer_paused/);
    // The group rebalances while the only batch handler holds the refused chunk.
    await bed.mock.pushErrors(ApiKey.Heartbeat, KafkaError.RebalanceInProgress, 1);
    await b.waitForLog(/kafka_commit_rejected|REBALANCE_IN_PROGRESS|rebalancing/i);
    const seen = await drainAndComplete(b.port, 300, 30_000);
    expect(new Set(seen).size).toBe(300);
    expect(await b.stop()).toBe(0);
  }, 60_000);

  test("Kafka down for 10 s while the consumer is paused: everything is consumed once it is back", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 2);
    const total = 1000;
    await produce(
      bed.mock.bootstrap,
      topic,
      Array.from({ length: total }, () => ({ value: activation() })),
    );
    const b = await bed.broker(pausedEnv(topic));
    await b.waitForLog(/kafka_consumer_paused/);
    await bed.mock.brokerDown(1);
    await Bun.sleep(10_000); // the outage itself is the fault under test
    await bed.mock.brokerUp(1);
    const t0 = Date.now();
    const seen = await drainAndComplete(b.port, total, 40_000);
    expect(new Set(seen).size).toBe(total);
    console.log(`after a 10 s outage while paused: ${total} consumed in ${Date.now() - t0} ms`);
    expect(await b.stop()).toBe(0);
  }, 90_000);

  test("kill -9 after offset commits failed: nothing is dispatched again after its completion was acknowledged", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    const n = 200;
    const env = kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_ADMIN_ENABLED: "true" });
    // Offset commits fail (a coordinator that cannot be reached), fetches work.
    await bed.mock.pushErrors(ApiKey.OffsetCommit, KafkaError.RequestTimedOut, 100_000);
    await produce(
      bed.mock.bootstrap,
      topic,
      Array.from({ length: n }, () => ({ value: activation() })),
    );
    const b = await bed.broker(env);
    const done = await drainAndComplete(b.port, n);
    expect(new Set(done).size).toBe(n);
    // Upkeep runs its cleanup a few times after the last acknowledged completion.
    const passes = await metric(b, "taskbroker_upkeep_duration_seconds_count");
    await until(
      "two more upkeep passes",
      async () => (await metric(b, "taskbroker_upkeep_duration_seconds_count")) >= passes + 2,
    );
    expect((await committedOffsets(bed.mock.bootstrap, `taskbroker-${topic}`, topic)).get(0) ?? -1).toBe(-1);
    b.kill9();
    await b.proc.exited;

    // Kafka accepts commits again; the restarted broker re-reads every offset.
    await bed.mock.clearErrors(ApiKey.OffsetCommit);
    const again = await bed.broker(env, { dbPath: b.dbPath });
    await until(
      "re-read and committed",
      async () => (await committedOffsets(bed.mock.bootstrap, `taskbroker-${topic}`, topic)).get(0) === n,
    );
    expect(await metric(again, "taskbroker_kafka_messages_total", { topic, result: "duplicate" })).toBe(n);
    expect(await nothingToDispatch(again.port)).toBe(true);
    // And once committed, the completed rows are cleaned up.
    await until("completed rows deleted", () => storedRows(again.dbPath).length === 0);
    expect(await again.stop()).toBe(0);
  }, 90_000);

  test("a broker killed before its commits went through drops, at its next join, the rows another broker has since consumed and committed", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    const n = 50;
    const env = kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_ADMIN_ENABLED: "true" });
    await produce(
      bed.mock.bootstrap,
      topic,
      Array.from({ length: n }, () => ({ value: activation() })),
    );
    // Broker A stores everything, but Kafka refuses every offset commit; then A dies.
    await bed.mock.pushErrors(ApiKey.OffsetCommit, KafkaError.CoordinatorNotAvailable, 100_000);
    const a = await bed.broker(env);
    await until("A stored every message", () => storedRows(a.dbPath).length === n);
    a.kill9();
    await a.proc.exited;
    await bed.mock.clearErrors(ApiKey.OffsetCommit);

    // Broker B (its own database) takes the partition, stores and commits the same offsets.
    const b = await bed.broker(env);
    await until(
      "B committed everything",
      async () => (await committedOffsets(bed.mock.bootstrap, `taskbroker-${topic}`, topic)).get(0) === n,
    );
    expect(storedRows(b.dbPath).length).toBe(n);
    expect(await b.stop()).toBe(0);

    // A comes back: at its join it sees the group committed past rows it never committed, and drops them.
    const again = await bed.broker(env, { dbPath: a.dbPath });
    await again.waitForLog(/kafka_rows_consumed_elsewhere.*rows_dropped=50/);
    expect(storedRows(again.dbPath).length).toBe(0);
    expect(await metric(again, "taskbroker_kafka_messages_total", { topic, result: "reconsumed_elsewhere" })).toBe(n);
    expect(await nothingToDispatch(again.port)).toBe(true);
    expect(await again.stop()).toBe(0);
  }, 90_000);
});

describe("shutdown", () => {
  test("SIGTERM while the group join waits for a member killed with -9 exits at once, as librdkafka's close does", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    // A session long enough that waiting it out is unmistakable (the mock holds the join until the dead member's session expires).
    const env = kafkaEnv(bed.mock.bootstrap, [topic], {
      [`TASKBROKER_KAFKA_TOPICS__${topic.toUpperCase()}__SESSION_TIMEOUT_MS`]: "30000",
    });
    const a = await bed.broker(env);
    await a.waitForLog(/kafka_group_joined/);
    a.kill9();
    await a.proc.exited;

    const b = await bed.broker(env);
    await b.waitForLog(/kafka_consuming/);
    const t0 = Date.now();
    expect(await b.stop()).toBe(0);
    // Before, stop waited for the pending JoinGroup: until the dead member's session expired (about 30 s here).
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(b.logs()).not.toContain("kafka_group_joined");
  }, 90_000);
});
