// Raw topics and header-mapped dispatch (docs/spec/broker.md "Raw topics"):
// messages that are not TaskActivations become activations for a configured
// task, with parameters built from the payload or from typed headers.
import { describe, expect, test } from "bun:test";
import { decode as msgpackDecode } from "@msgpack/msgpack";
import { spawnBroker } from "./support/broker-process.ts";
import {
  brokerClient,
  type decodeActivation,
  kafkaEnv,
  produce,
  readTopic,
  storedRows,
  unique,
  until,
  kafkaTestbed,
} from "./support/kafka.ts";

const bed = kafkaTestbed();
const broker = (env: Record<string, string>) => bed.broker(env);

/** The parameters of an activation: zstd-compressed msgpack {args, kwargs}. */
function parameters(a: ReturnType<typeof decodeActivation>): { args: unknown[]; kwargs: Record<string, unknown> } {
  expect(a.headers["compression-type"]).toBe("zstd");
  return msgpackDecode(Bun.zstdDecompressSync(a.parametersBytes)) as {
    args: unknown[];
    kwargs: Record<string, unknown>;
  };
}

async function claimAll(port: number, application: string, n: number) {
  const client = brokerClient(port);
  const out: ReturnType<typeof decodeActivation>[] = [];
  await until(`${n} activations of ${application}`, async () => {
    try {
      const res = await client.getTask({ application });
      if (res.task) out.push(res.task);
    } catch {}
    return out.length >= n;
  });
  return out;
}

function rawEnv(topic: string, raw: Record<string, string>): Record<string, string> {
  const env = kafkaEnv(bed.mock.bootstrap, [topic]);
  for (const [k, v] of Object.entries(raw))
    env[`TASKBROKER_KAFKA_TOPICS__${topic.toUpperCase()}__RAW__${k.toUpperCase()}`] = v;
  return env;
}

describe("raw topic, payload mode", () => {
  test("wraps each message as msgpack bin in args, zstd level 3, for the configured task", async () => {
    const topic = unique("raw");
    const retry = unique("retry");
    await bed.mock.createTopic(topic, 1);
    const payloads = [new TextEncoder().encode('{"event":1}'), new Uint8Array([0, 1, 2, 255])];
    await produce(
      bed.mock.bootstrap,
      topic,
      payloads.map((value) => ({ value })),
    );
    const b = await broker({
      ...rawEnv(topic, {
        application: "rawapp",
        namespace: "rawns",
        taskname: "raw.handle",
        processing_deadline_duration: "15",
      }),
      TASKBROKER_KAFKA_RETRY_TOPIC: retry,
    });
    const tasks = await claimAll(b.port, "rawapp", 2);
    const byArg = new Map(tasks.map((t) => [Buffer.from(parameters(t).args[0] as Uint8Array).toString("hex"), t]));
    for (const p of payloads) {
      const t = byArg.get(Buffer.from(p).toString("hex"))!;
      expect(t).toBeDefined();
      expect(t.namespace).toBe("rawns");
      expect(t.taskname).toBe("raw.handle");
      expect(t.application).toBe("rawapp");
      expect(t.processingDeadlineDuration).toBe(15n);
      expect(parameters(t).kwargs).toEqual({});
      expect(t.id).toMatch(/^[0-9a-f]{32}$/);
    }
    // Stored with the raw message's origin.
    expect(
      storedRows(b.dbPath)
        .map((r) => r.offset)
        .sort(),
    ).toEqual(["0", "1"]);
    await b.stop();
  }, 90_000);

  test("the message's UTF-8 Kafka headers become the activation's headers, as the reference copies them", async () => {
    const topic = unique("rawhdr");
    await bed.mock.createTopic(topic, 1);
    // Written by librdkafka, the way Sentry's producers (Relay, Snuba) write raw topics.
    await bed.mock.produce(
      topic,
      [
        {
          value: new TextEncoder().encode("payload"),
          headers: {
            "sentry-trace": "771a43a4192642f0b136d5159a501700-b2ab7e4a3b2a4d2c-1",
            "x-binary": new Uint8Array([0xff, 0xfe]),
            "x-empty": "",
          },
        },
      ],
      { codec: "lz4" },
    );
    const b = await broker({
      ...rawEnv(topic, {
        application: "rawhdr",
        namespace: "rawns",
        taskname: "raw.handle",
        processing_deadline_duration: "15",
      }),
      TASKBROKER_KAFKA_RETRY_TOPIC: unique("retry"),
    });
    const [task] = await claimAll(b.port, "rawhdr", 1);
    expect(task!.headers).toEqual({
      "sentry-trace": "771a43a4192642f0b136d5159a501700-b2ab7e4a3b2a4d2c-1",
      "x-empty": "",
      "compression-type": "zstd",
    });
    expect(new TextDecoder().decode(parameters(task!).args[0] as Uint8Array)).toBe("payload");
    await b.stop();
  }, 90_000);

  test("a raw topic cannot be the (default) retry topic", async () => {
    const topic = unique("raw");
    await expect(
      spawnBroker(rawEnv(topic, { application: "a", namespace: "n", taskname: "t" }), { startTimeoutMs: 10_000 }),
    ).rejects.toThrow(/RETRY_TOPIC/);
  }, 30_000);
});

describe("header-mapped dispatch", () => {
  test("kwargs from typed headers; a broken header falls back to the payload; neither goes to the dead-letter topic", async () => {
    const topic = unique("events");
    const retry = unique("retry");
    const dlq = unique("dlq");
    await bed.mock.createTopic(topic, 1);
    await bed.mock.createTopic(dlq, 1);
    const spec = {
      insert: {
        event_id: "string",
        group_id: "optional_int",
        project_id: "int",
        is_new: "bool",
        primary_hash: "optional_string",
      },
    };
    const good = {
      version: "2",
      operation: "insert",
      event_id: "e1",
      group_id: "17",
      project_id: "42",
      is_new: "1",
      primary_hash: "None",
    };
    const brokenHeader = { ...good, event_id: "e2", project_id: "forty-two" };
    const garbage = new Uint8Array([0xc1, 0xc1, 0xc1]); // 0xc1 is never valid msgpack, and not JSON
    await produce(bed.mock.bootstrap, topic, [
      { value: new TextEncoder().encode("ignored"), headers: good },
      {
        value: new TextEncoder().encode(JSON.stringify({ event_id: "e2", project_id: 7, is_new: false })),
        headers: brokenHeader,
      },
      { value: garbage, headers: { version: "2", operation: "delete" } },
    ]);
    const b = await broker({
      ...rawEnv(topic, {
        application: "pp",
        namespace: "post_process",
        taskname: "post_process_group",
        mode: "headers",
        header_version: "2",
        header_kwargs: JSON.stringify(spec),
      }),
      TASKBROKER_KAFKA_RETRY_TOPIC: retry,
      TASKBROKER_KAFKA_DEADLETTER_TOPIC: dlq,
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_ADMIN_PORT: "0",
    });
    const tasks = await claimAll(b.port, "pp", 2);
    const kwargs = tasks
      .map((t) => parameters(t))
      .sort((a, b) => String(a.kwargs.event_id).localeCompare(String(b.kwargs.event_id)));
    expect(kwargs[0]).toEqual({
      args: [],
      kwargs: { operation: "insert", event_id: "e1", group_id: 17, project_id: 42, is_new: true, primary_hash: null },
    });
    expect(kwargs[1]).toEqual({ args: [], kwargs: { event_id: "e2", project_id: 7, is_new: false } });

    const dead = await readTopic(bed.mock, dlq, 1, { settleMs: 300 });
    expect(dead.length).toBe(1);
    expect(Buffer.from(dead[0]!.value!).equals(Buffer.from(garbage))).toBe(true);
    expect(dead[0]!.headers.operation).toBe("delete");

    // Which path each message took is counted.
    expect(b.adminPort).toBeDefined();
    const metrics = await (await fetch(`http://127.0.0.1:${b.adminPort}/metrics`)).text();
    const count = (path: string) =>
      Number(
        new RegExp(`taskbroker_kafka_header_dispatch_total\\{topic="${topic}",path="${path}"\\} (\\d+)`).exec(
          metrics,
        )?.[1],
      );
    expect([count("headers"), count("payload"), count("failed")]).toEqual([1, 1, 1]);
    await b.stop();
  }, 90_000);
});
