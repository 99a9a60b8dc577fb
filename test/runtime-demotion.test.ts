// Namespace demotion written in the reference broker's runtime file format,
// against real Kafka-protocol clusters (librdkafka's mock) with the broker as
// a process. One broker, its runtime file rewritten between the steps:
//   1. rows already stored (ingested over RPC) of a namespace that becomes
//      demoted, listed without demoted_topic, go to the long topic on
//      demoted_topic_cluster (a second cluster); while that cluster refuses
//      every produce nothing is completed or lost; once it accepts, each row is
//      forwarded once and only then completed;
//   2. the same namespace consumed from Kafka meanwhile is forwarded at
//      ingest, except a task the kill switch names, which is dropped;
//   3. a demotion to a topic the broker consumes from the same cluster is
//      refused (it would loop) and the rows stay served.
// The reference broker's statsd counters for all of it arrive on a UDP socket.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./support/broker-process.ts";
import { startKafkaMock, ApiKey, KafkaError, type KafkaMock } from "./support/kafka-mock.ts";
import {
  activation as kafkaActivation,
  decodeActivation,
  kafkaEnv,
  kafkaTestbed,
  produce,
  readTopic,
  storedRows,
  unique,
  until,
} from "./support/kafka.ts";
import { activation as rpcActivation, brokerClients, drainIds } from "./support/activations.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";

const bed = kafkaTestbed();
let second: KafkaMock | undefined;
const statsdSocket = createSocket("udp4");
const statsdLines: string[] = [];
statsdSocket.on("message", (msg) => statsdLines.push(...msg.toString("utf8").split("\n")));
beforeAll(() => new Promise<void>((r) => statsdSocket.bind(0, "127.0.0.1", () => r())));
afterAll(async () => {
  statsdSocket.close();
  await second?.stop();
});
/** Sum of the statsd counter `name` over lines carrying every one of `tags`. */
const statsdTotal = (name: string, ...tags: string[]) =>
  statsdLines
    .filter(
      (l) =>
        l.startsWith(`taskbroker.${name}:`) &&
        l.includes("|c") &&
        tags.every((t) => l.split("|#")[1]?.split(",").includes(t)),
    )
    .reduce((n, l) => n + Number(l.slice(l.indexOf(":") + 1, l.indexOf("|"))), 0);

const namespaces = (dbPath: string) => storedRows(dbPath).map((r) => decodeActivation(r.activation).namespace);

test("stored and consumed rows of a demoted namespace are forwarded once, only acknowledged ones completed; killed ones dropped; loops refused", async () => {
  second = await startKafkaMock();
  await second.createTopic("taskworker-long", 1);
  const topic = unique("tasks");
  await bed.mock.createTopic(topic, 1);
  const runtimeFile = join(tempDir("runtime-"), "runtime.yaml");
  writeFileSync(runtimeFile, "drop_task_killswitch: []\ndemoted_namespaces: []\n");
  const b = await bed.broker(
    kafkaEnv(bed.mock.bootstrap, [topic], {
      TASKBROKER_RUNTIME_CONFIG_PATH: runtimeFile,
      TASKBROKER_RUNTIME_CONFIG_RELOAD_MS: "200ms",
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_STATSD_ADDR: `127.0.0.1:${statsdSocket.address().port}`,
      TASKBROKER_STATSD_INTERVAL_MS: "100ms",
    }),
  );
  const metric = async (name: string, labels: Record<string, string>) =>
    sumOf(parsePrometheusText(await (await fetch(`http://127.0.0.1:${b.adminPort}/metrics`)).text()), name, labels);
  const { ingest } = brokerClients(b.port);
  const slow = Array.from({ length: 10 }, () => rpcActivation({ namespace: "slow.ns" }));
  const fast = Array.from({ length: 5 }, () => rpcActivation({ namespace: "fast.ns" }));
  expect((await ingest.produce({ activations: [...slow, ...fast] })).accepted).toBe(15);

  // 1. The demotion cluster refuses every produce until cleared.
  await second.pushErrors(ApiKey.Produce, KafkaError.NotEnoughReplicas, 100_000);
  writeFileSync(
    runtimeFile,
    `drop_task_killswitch:\n  - tests.killed\ndemoted_namespaces:\n  - slow.ns\ndemoted_topic_cluster: ${second.bootstrap}\n`,
  );
  await b.waitForLog(/demotion_forward_failed/, 20_000);
  expect(namespaces(b.dbPath).filter((ns) => ns === "slow.ns").length).toBe(10);

  // 2. Consumed meanwhile: forwarded at ingest (held until acknowledged), the killed task dropped.
  const consumed = Array.from({ length: 4 }, (_, i) => `${"c".repeat(24)}${i.toString().padStart(8, "0")}`);
  const storedId = `${"e".repeat(24)}00000000`;
  await produce(bed.mock.bootstrap, topic, [
    ...consumed.map((id) => ({ value: kafkaActivation({ id, namespace: "slow.ns" }) })),
    { value: kafkaActivation({ namespace: "slow.ns", taskname: "tests.killed" }) },
    { value: kafkaActivation({ id: storedId, namespace: "fast.ns" }) },
  ]);
  await until(
    "the killed one counted",
    async () => (await metric("taskbroker_ingest_total", { result: "killed" })) === 1,
    20_000,
  );

  await second.clearErrors(ApiKey.Produce);
  const arrived = await readTopic(second, "taskworker-long", 14, { settleMs: 500 });
  expect(arrived.map((m) => decodeActivation(m.value!).id).sort()).toEqual(
    [...consumed, ...slow.map((a) => a.id)].sort(),
  );
  // Completed, then removed by upkeep; the other namespace is untouched and served.
  await until("forwarded rows gone from the store", () => !namespaces(b.dbPath).includes("slow.ns"));
  expect(await metric("taskbroker_runtime_demoted_forward_total", { result: "ok" })).toBe(10);
  expect(await metric("taskbroker_runtime_demoted_forward_total", { result: "error" })).toBeGreaterThan(0);
  expect(await drainIds(b.port)).toEqual(new Set([...fast.map((a) => a.id), storedId]));
  // The same events under the reference broker's statsd names and tags.
  await until("statsd caught up", () => statsdTotal("upkeep.forwarded_tasks") === 10);
  expect(statsdTotal("filter.forward_task_demoted_namespace", `topic:${topic}`)).toBe(4);
  expect(
    statsdTotal("filter.drop_task_killswitch", `topic:${topic}`, "taskname:tests.killed", "match:whole_task"),
  ).toBe(1);
  expect(statsdTotal("consumer.inflight_activation_writer.stored", `topic:${topic}`)).toBe(1);
  expect(
    statsdTotal("upkeep.forward_task_demoted_namespace", "namespace:slow.ns", "taskname:tests.noop"),
  ).toBeGreaterThan(10);
  expect(statsdTotal("upkeep.forward_task_demoted_namespace.publish_failure", "namespace:slow.ns")).toBeGreaterThan(0);

  // 3. Demoted to the consumed topic on its own cluster: refused, rows stay served.
  writeFileSync(runtimeFile, `drop_task_killswitch: []\ndemoted_namespaces: [slow.ns]\ndemoted_topic: ${topic}\n`);
  await b.waitForLog(/demotion_skipped.*namespaces=slow\.ns/);
  const kept = Array.from({ length: 3 }, () => rpcActivation({ namespace: "slow.ns" }));
  expect((await ingest.produce({ activations: kept })).accepted).toBe(3);
  expect(await drainIds(b.port)).toEqual(new Set(kept.map((a) => a.id)));
  expect(await b.stop()).toBe(0);
}, 60_000);
