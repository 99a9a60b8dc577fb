// Operating a Kafka-fed broker (issue 5 on top of issue 3), against a real
// Kafka-protocol cluster (librdkafka's mock) with the broker as a process:
// namespace demotion from the hot-reloaded runtime config (forwarded to
// another topic, committed only once the forward is acknowledged, stored again
// after the demotion is removed) and the consumer lag / paused gauges on the
// admin server's /metrics.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { ApiKey, KafkaError } from "./support/kafka-mock.ts";
import {
  activation,
  committedOffsets as committed,
  decodeActivation,
  kafkaEnv,
  produce,
  readTopic,
  storedRows,
  unique,
  until,
  kafkaTestbed,
  drainAndComplete,
} from "./support/kafka.ts";
import { parsePrometheusText, sumOf, valueOf, type Exposition } from "./support/prom-text.ts";
import { activationNamespace } from "../src/activation/wire.ts";
import { lagOf } from "../src/kafka/lag.ts";

const bed = kafkaTestbed();
const broker = (env: Record<string, string>) => bed.broker(env);

async function scrape(b: BrokerProcess): Promise<Exposition> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/metrics`);
  expect(res.status).toBe(200);
  return parsePrometheusText(await res.text());
}

const committedOffsets = (group: string, topic: string) => committed(bed.mock.bootstrap, group, topic);

const namespacesOf = (dbPath: string) => storedRows(dbPath).map((r) => decodeActivation(r.activation).namespace);

describe("pure parts", () => {
  test("the namespace read from activation bytes agrees with the protobuf decoder; malformed bytes give null", () => {
    for (const namespace of ["slow.ns", "", "ünïcode", "x".repeat(300)]) {
      const bytes = activation({ namespace });
      expect(activationNamespace(bytes)).toBe(decodeActivation(bytes).namespace);
    }
    const good = activation({ namespace: "ns" });
    expect(activationNamespace(good.subarray(0, good.length - 3))).toBeNull();
    expect(activationNamespace(new Uint8Array([0xff, 0xfe, 0x01, 0x02, 0x03]))).toBeNull();
    expect(activationNamespace(new Uint8Array([0x12, 0x02, 0xc3, 0x28]))).toBeNull(); // field 2, invalid UTF-8
  });

  test("lag is the high watermark minus the next offset, never negative", () => {
    expect(lagOf("300", "0")).toBe(300);
    expect(lagOf("300", "300")).toBe(0);
    expect(lagOf("5", "7")).toBe(0);
    expect(lagOf("", "1")).toBeNull();
  });
});

describe("namespace demotion (runtime config)", () => {
  test("a demoted namespace is forwarded to its topic, committed only after the forward is acknowledged, and stored again once the demotion is removed", async () => {
    const topic = unique("tasks");
    const long = unique("long");
    await bed.mock.createTopic(topic, 1);
    await bed.mock.createTopic(long, 1);
    const runtimeFile = join(tempDir("runtime-"), "runtime.yaml");
    writeFileSync(runtimeFile, `demoted_namespaces:\n  slow.ns: ${long}\n`);

    const xIds = Array.from({ length: 20 }, (_, i) => `${"d".repeat(24)}${i.toString().padStart(8, "0")}`);
    const yIds = Array.from({ length: 20 }, (_, i) => `${"e".repeat(24)}${i.toString().padStart(8, "0")}`);
    const messages = xIds.flatMap((id, i) => [
      { value: activation({ id, namespace: "slow.ns" }), key: `k${i}`, headers: { trace: `t${i}` } },
      { value: activation({ id: yIds[i]!, namespace: "fast.ns" }) },
    ]);
    await produce(bed.mock.bootstrap, topic, messages);

    // Every produce request fails until cleared: the forward cannot be acknowledged.
    await bed.mock.pushErrors(ApiKey.Produce, KafkaError.NotEnoughReplicas, 100_000);
    const b = await broker(
      kafkaEnv(bed.mock.bootstrap, [topic], {
        TASKBROKER_RUNTIME_CONFIG_PATH: runtimeFile,
        TASKBROKER_RUNTIME_CONFIG_RELOAD_MS: "200ms",
        TASKBROKER_ADMIN_ENABLED: "true",
      }),
    );
    await b.waitForLog(/kafka_demoted_forward_failed.*attempt=2/);
    // The other namespace is stored meanwhile, the demoted one is not, and the
    // batch's offsets stay uncommitted while its forward is unacknowledged.
    await until("fast.ns stored", () => namespacesOf(b.dbPath).length === 20);
    expect(new Set(namespacesOf(b.dbPath))).toEqual(new Set(["fast.ns"]));
    expect((await committedOffsets(`taskbroker-${topic}`, topic)).get(0) ?? -1).toBe(-1);

    await bed.mock.clearErrors(ApiKey.Produce);
    const forwarded = await readTopic(bed.mock, long, 20, { settleMs: 500 });
    expect(forwarded.map((m) => decodeActivation(m.value!).id).sort()).toEqual(xIds);
    // Original bytes, key and headers.
    const first = forwarded.find((m) => decodeActivation(m.value!).id === xIds[3]);
    expect(Buffer.from(first!.value!).equals(Buffer.from(messages[6]!.value))).toBe(true);
    expect(first!.headers.trace).toBe("t3");
    await until(
      "offsets committed after the forward",
      async () => (await committedOffsets(`taskbroker-${topic}`, topic)).get(0) === 40,
    );

    const metrics = await scrape(b);
    expect(valueOf(metrics, "taskbroker_kafka_demoted_total", { from: topic, to: long })).toBe(20);
    expect(sumOf(metrics, "taskbroker_kafka_publish_total", { kind: "demoted", result: "error" })).toBeGreaterThan(0);
    expect(namespacesOf(b.dbPath).filter((ns) => ns === "slow.ns")).toEqual([]);
    expect(new Set(await drainAndComplete(b.port, 20))).toEqual(new Set(yIds));

    // Removing the demotion (hot reload) stores the namespace again.
    writeFileSync(runtimeFile, "demoted_namespaces: {}\n");
    await b.waitForLog(/runtime_config_loaded.*demoted_namespaces=0/);
    const later = Array.from({ length: 5 }, (_, i) => `${"f".repeat(24)}${i.toString().padStart(8, "0")}`);
    await produce(
      bed.mock.bootstrap,
      topic,
      later.map((id) => ({ value: activation({ id, namespace: "slow.ns" }) })),
    );
    expect(new Set(await drainAndComplete(b.port, 5))).toEqual(new Set(later));
    expect((await readTopic(bed.mock, long, 21, { timeoutMs: 1500 })).length).toBe(20);
    expect(valueOf(await scrape(b), "taskbroker_kafka_demoted_total", { from: topic, to: long })).toBe(20);
    expect(await b.stop()).toBe(0);
  }, 60_000);
});

describe("consumer lag and paused gauges", () => {
  test("lag counts waiting messages while backpressure pauses the consumer and returns to 0 once drained", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    const n = 300;
    await produce(
      bed.mock.bootstrap,
      topic,
      Array.from({ length: n }, () => ({ value: activation() })),
    );
    const b = await broker(
      kafkaEnv(bed.mock.bootstrap, [topic], {
        TASKBROKER_STORE__MAX_PENDING_COUNT: "50",
        TASKBROKER_ADMIN_ENABLED: "true",
      }),
    );
    await b.waitForLog(/kafka_consumer_paused/);

    const paused = await scrape(b);
    expect(valueOf(paused, "taskbroker_kafka_paused", { topic })).toBe(1);
    const lag = valueOf(paused, "taskbroker_kafka_consumer_lag", { topic, partition: "0" });
    // Committed <= stored <= 50, so at least n - stored messages wait.
    expect(lag).toBeGreaterThanOrEqual(n - storedRows(b.dbPath).length);
    expect(paused.types.get("taskbroker_kafka_consumer_lag")).toBe("gauge");

    expect(new Set(await drainAndComplete(b.port, n)).size).toBe(n);
    const drained = (await until("lag back to 0", async () => {
      const m = await scrape(b);
      return valueOf(m, "taskbroker_kafka_consumer_lag", { topic, partition: "0" }) === 0 ? m : null;
    }))!;
    expect(valueOf(drained, "taskbroker_kafka_paused", { topic })).toBe(0);
    expect(await b.stop()).toBe(0);
  }, 60_000);
});
