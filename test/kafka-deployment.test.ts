// A deployment-shaped configuration (issue 8): a config file laid out like a
// real self-hosted deployment's - nine declared topics in the map form (plus
// one consumer_disabled topic), raw topics, one consumer group shared by four
// raw topics, a produce-only dead-letter topic that names the same group as
// the task topic, flat
// settings acting as defaults for the maps - with the cluster address from
// the environment. The broker starts, joins each group once, consumes
// librdkafka-produced messages from every topic, wraps raw messages for their
// configured tasks and dead-letters garbage.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decode as msgpackDecode } from "@msgpack/msgpack";
import { tempDir } from "./support/broker-process.ts";
import {
  activation,
  brokerClient,
  type decodeActivation,
  kafkaTestbed,
  readTopic,
  unique,
  until,
} from "./support/kafka.ts";

const bed = kafkaTestbed();

/** Raw topics: [name, consumer group, namespace, task]; four of them share one group. */
function rawTopics(suffix: string) {
  const shared = `query-subscription-consumer-${suffix}`;
  return [
    [`events-subscription-results-${suffix}`, shared, "subscriptions.events.raw", "subscriptions.process_events"],
    [
      `transactions-subscription-results-${suffix}`,
      shared,
      "subscriptions.transactions.raw",
      "subscriptions.process_transactions",
    ],
    [`metrics-subscription-results-${suffix}`, shared, "subscriptions.metrics.raw", "subscriptions.process_metrics"],
    [
      `generic-metrics-subscription-results-${suffix}`,
      shared,
      "subscriptions.generic_metrics.raw",
      "subscriptions.process_generic_metrics",
    ],
    [
      `subscription-results-eap-items-${suffix}`,
      `subscription-results-eap-items-${suffix}`,
      "subscriptions.eap.raw",
      "subscriptions.process_eap",
    ],
    [`profiles-${suffix}`, `ingest-profiles-${suffix}`, "profiling.passthrough", "profiles.process_profile"],
    [
      `ingest-replay-recordings-${suffix}`,
      `ingest-replay-recordings-${suffix}`,
      "replays.raw",
      "replays.process_recording",
    ],
  ] as const;
}

describe("deployment-shaped configuration", () => {
  test("ten topics, raw topics, a shared group, a produce-only dead-letter topic and a disabled consumer: starts, consumes, wraps raw messages, dead-letters garbage", async () => {
    const suffix = unique("d");
    const tasks = `taskworker-${suffix}`;
    const dlq = `taskworker-dlq-${suffix}`;
    const disabled = `ingest-monitors-${suffix}`;
    const raw = rawTopics(suffix);
    for (const t of [tasks, dlq, disabled, ...raw.map((r) => r[0])]) await bed.mock.createTopic(t, 1);
    const file = join(tempDir("deployment-"), "config.yml");
    writeFileSync(
      file,
      [
        "# Flat settings act as defaults for every topic of the map below.",
        "kafka_session_timeout_ms: 3000",
        "kafka_auto_offset_reset: earliest",
        `kafka_deadletter_topic: ${dlq}`,
        `kafka_retry_topic: ${tasks}`,
        "kafka_topics:",
        `  ${tasks}:`,
        "    cluster: default",
        `    consumer_group: taskworker-${suffix}`,
        `  ${dlq}:`,
        "    cluster: default",
        `    consumer_group: taskworker-${suffix}`,
        "    produce_only: true",
        "  # Declared, counted as consumed, but no consumer joins its group: only checked.",
        `  ${disabled}:`,
        "    cluster: default",
        `    consumer_group: ingest-monitors-${suffix}`,
        "    consumer_disabled: true",
        ...raw.flatMap(([topic, group, namespace, taskname]) => [
          `  ${topic}:`,
          "    cluster: default",
          `    consumer_group: ${group}`,
          "    raw:",
          `      namespace: ${namespace}`,
          "      application: sentry",
          `      taskname: ${taskname}`,
          "      processing_deadline_duration: 60",
        ]),
        "",
      ].join("\n"),
    );
    const t0 = Date.now();
    const b = await bed.broker(
      {
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: bed.mock.bootstrap,
        TASKBROKER_ADMIN_ENABLED: "true",
        TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "200",
      },
      { args: ["-c", file] },
    );
    await until("ready", async () => (await fetch(`http://127.0.0.1:${b.adminPort}/ready`)).status === 200, 20_000, 50);
    const readyMs = Date.now() - t0;
    // One join per group: the four subscription topics share one consumer; the dead-letter topic joins none.
    const joins = b
      .logs()
      .split("\n")
      .filter((l) => l.includes("kafka_group_joined"));
    expect(joins.length).toBe(5);
    const shared = joins.find((l) => l.includes(`group=query-subscription-consumer-${suffix}`))!;
    for (const [topic] of raw.slice(0, 4)) expect(shared).toContain(`${topic}:0`);
    expect(b.logs()).not.toContain(`${dlq}:`);
    expect(joins.filter((l) => l.includes(disabled))).toEqual([]);
    await b.waitForLog(new RegExp(`kafka_consumer_disabled.*topic=${disabled}.*partitions=1`));

    // librdkafka producers write to every topic: activations and garbage to the task topic, payloads to the raw ones.
    const ids = Array.from({ length: 5 }, (_, i) => `${i}`.repeat(32));
    const garbage = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
    await bed.mock.produce(tasks, [...ids.map((id) => ({ value: activation({ id }) })), { value: garbage }], {
      codec: "lz4",
    });
    for (const [i, [topic]] of raw.entries()) {
      await bed.mock.produce(topic, [{ value: new TextEncoder().encode(`{"payload":${i}}`) }], {
        codec: i % 2 ? "zstd" : "snappy",
      });
    }

    const client = brokerClient(b.port);
    const claim = async (application: string, n: number) => {
      const got: ReturnType<typeof decodeActivation>[] = [];
      await until(`${n} tasks of ${application}`, async () => {
        const res = await client.getTask({ application }).catch(() => null);
        if (res?.task) {
          got.push(res.task);
          await client.setTaskStatus({ id: res.task.id, status: 5 });
        }
        return got.length >= n;
      });
      return got;
    };
    expect((await claim("app", 5)).map((t) => t.id).sort()).toEqual(ids);
    const wrapped = await claim("sentry", raw.length);
    const byNamespace = new Map(wrapped.map((t) => [t.namespace, t]));
    for (const [i, [, , namespace, taskname]] of raw.entries()) {
      const t = byNamespace.get(namespace)!;
      expect(t).toBeDefined();
      expect(t.taskname).toBe(taskname);
      expect(t.processingDeadlineDuration).toBe(60n);
      const params = msgpackDecode(Bun.zstdDecompressSync(t.parametersBytes)) as { args: Uint8Array[] };
      expect(new TextDecoder().decode(params.args[0])).toBe(`{"payload":${i}}`);
    }

    const dead = await readTopic(bed.mock, dlq, 1);
    expect(dead.map((m) => Buffer.from(m.value!).toString("hex"))).toEqual(["deadbeef"]);
    console.log(`deployment-shaped config (10 topics, 5 groups): /ready after ${readyMs} ms`);
    expect(await b.stop()).toBe(0);
  }, 60_000);
});
