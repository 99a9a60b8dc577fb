// Kafka compression (issue 8 "every codec", issue 11 "codec poison"): batches
// compressed by librdkafka producers (compression.type gzip, snappy, lz4,
// zstd) are consumed exactly once; the broker writes each produced topic with
// its compression_type, readable by librdkafka; a batch that cannot be
// decoded (undefined codec id, garbage payload, records that do not parse) is
// dead-lettered whole and counted, and the partition goes on.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as snappy from "snappyjs";
import { compress, decompress, COMPRESSION_TYPES, MAX_DECOMPRESSED_BYTES } from "../src/kafka/codecs.ts";
import { tempDir } from "./support/broker-process.ts";
import { batchCodecs, produceRawBatch } from "./support/kafka-wire.ts";
import {
  activation,
  committedOffsets,
  decodeActivation,
  drainAndComplete,
  kafkaEnv,
  kafkaTestbed,
  readTopic,
  storedRows,
  unique,
  until,
} from "./support/kafka.ts";
import { parsePrometheusText, valueOf } from "./support/prom-text.ts";

const bed = kafkaTestbed();
const ids = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}${i.toString(16).padStart(32 - prefix.length, "0")}`);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("codecs (pure)", () => {
  const data = new TextEncoder().encode(
    Array.from({ length: 3000 }, (_, i) => `record ${i} payload ${i % 13}\n`).join(""),
  );

  test("each codec round-trips; snappy in xerial framing (Java producers) and bare (librdkafka) both decode", async () => {
    for (const codec of COMPRESSION_TYPES) {
      const packed = await compress(codec, data);
      expect(hex(await decompress(codec, packed))).toBe(hex(data));
      if (codec !== "none") expect(packed.byteLength).toBeLessThan(data.byteLength);
    }
    // xerial: magic, version 1, compatible 1, then [int32 length][snappy block] chunks.
    const header = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    const chunks = [data.subarray(0, 20_000), data.subarray(20_000)].map((c) => {
      const block = Buffer.from(snappy.compress(c));
      const len = Buffer.alloc(4);
      len.writeUInt32BE(block.byteLength);
      return Buffer.concat([len, block]);
    });
    expect(hex(await decompress("snappy", Buffer.concat([header, ...chunks])))).toBe(hex(data));
  });

  test("garbage and decompression bombs are errors naming the codec, never a huge allocation", async () => {
    for (const codec of ["gzip", "snappy", "lz4", "zstd"] as const) {
      await expect(decompress(codec, new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2]))).rejects.toThrow(
        new RegExp(`^${codec}: `),
      );
      // The bound is a parameter (default MAX_DECOMPRESSED_BYTES); a small one keeps the test fast.
      const bomb = await compress(codec, new Uint8Array(4 * 1024 * 1024));
      expect(bomb.byteLength).toBeLessThan(300_000);
      await expect(decompress(codec, bomb, 1024 * 1024)).rejects.toThrow(new RegExp(`^${codec}: `));
      expect((await decompress(codec, bomb, MAX_DECOMPRESSED_BYTES)).byteLength).toBe(4 * 1024 * 1024);
    }
  });
});

describe("consuming compressed batches", () => {
  test("batches produced by librdkafka with every compression.type are stored and dispatched exactly once", async () => {
    const topic = unique("codecs");
    await bed.mock.createTopic(topic, 2);
    const perCodec = 80;
    const expected = new Map<string, string[]>();
    for (const [i, codec] of (["none", "gzip", "snappy", "lz4", "zstd"] as const).entries()) {
      const batch = ids(`c${i}`, perCodec);
      expected.set(codec, batch);
      await bed.mock.produce(
        topic,
        batch.map((id) => ({ value: activation({ id }), key: id })),
        { codec },
      );
    }
    const b = await bed.broker(kafkaEnv(bed.mock.bootstrap, [topic], { TASKBROKER_ADMIN_ENABLED: "true" }));
    const all = [...expected.values()].flat();
    await until("every message stored", () => storedRows(b.dbPath).length >= all.length);
    const rows = storedRows(b.dbPath);
    expect(rows.length).toBe(all.length);
    expect(new Set(rows.map((r) => `${r.partition}:${r.offset}`)).size).toBe(all.length);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(all));

    const seen = await drainAndComplete(b.port, all.length);
    expect(seen.length).toBe(all.length);
    expect(new Set(seen)).toEqual(new Set(all));
    const metrics = parsePrometheusText(await (await fetch(`http://127.0.0.1:${b.adminPort}/metrics`)).text());
    expect(valueOf(metrics, "taskbroker_kafka_messages_total", { topic, result: "stored" })).toBe(all.length);
    expect(b.logs()).not.toMatch(/kafka_consumer_crashed|kafka_batch_undecodable/);
    expect(await b.stop()).toBe(0);
  }, 60_000);
});

describe("producing compressed batches", () => {
  test("each produced topic is written with its compression_type and read back by librdkafka", async () => {
    const topic = unique("tasks");
    await bed.mock.createTopic(topic, 1);
    const codecs = ["gzip", "snappy", "lz4", "zstd"] as const;
    const targets = Object.fromEntries(codecs.map((c) => [c, unique(`long-${c}`)]));
    for (const t of Object.values(targets)) await bed.mock.createTopic(t, 1);
    const runtimeFile = join(tempDir("runtime-"), "runtime.yaml");
    writeFileSync(runtimeFile, `demoted_namespaces:\n${codecs.map((c) => `  ns.${c}: ${targets[c]}\n`).join("")}`);

    // Demoted namespaces are forwarded by the broker's producer: one target topic per codec.
    const sent = new Map(codecs.map((c) => [c, ids(`d${codecs.indexOf(c)}`, 30)]));
    await bed.mock.produce(
      topic,
      codecs.flatMap((c) => sent.get(c)!.map((id) => ({ value: activation({ id, namespace: `ns.${c}` }) }))),
      { partition: 0 },
    );
    const env = kafkaEnv(bed.mock.bootstrap, [topic], {
      TASKBROKER_RUNTIME_CONFIG_PATH: runtimeFile,
      TASKBROKER_KAFKA_RETRY_TOPIC: topic,
    });
    for (const c of codecs) {
      const key = targets[c]!.toUpperCase();
      env[`TASKBROKER_KAFKA_TOPICS__${key}__CONSUME`] = "false";
      env[`TASKBROKER_KAFKA_TOPICS__${key}__COMPRESSION_TYPE`] = c;
    }
    const b = await bed.broker(env);
    for (const c of codecs) {
      const got = await bed.mock.consume(targets[c]!, { min: 30, timeoutMs: 20_000 });
      expect(got.map((m) => decodeActivation(m.value!).id).sort()).toEqual(sent.get(c)!);
      const onWire = await batchCodecs(bed.mock.bootstrap.split(",")[0]!, targets[c]!, 0);
      expect(onWire.length).toBeGreaterThan(0);
      expect(new Set(onWire)).toEqual(new Set([codecs.indexOf(c) + 1]));
    }
    expect(await b.stop()).toBe(0);
  }, 60_000);
});

describe("undecodable batches", () => {
  test("an undefined codec, a garbage payload and unparsable records are dead-lettered whole, counted, and the partition goes on", async () => {
    const topic = unique("poison");
    const dlq = unique("dlq");
    await bed.mock.createTopic(topic, 1);
    await bed.mock.createTopic(dlq, 1);
    const leader = bed.mock.bootstrap.split(",")[0]!;
    const good = ids("9", 3);
    const goodBatch = (id: string) => bed.mock.produce(topic, [{ value: activation({ id }) }], { partition: 0 });
    // Records that decompress fine but are not records.
    const notRecords = await compress("zstd", new Uint8Array([0x7f, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]));
    const poison = [
      { codecId: 5, recordCount: 3, records: new Uint8Array(40).fill(7) },
      { codecId: 2, recordCount: 2, records: new TextEncoder().encode("definitely not snappy") },
      { codecId: 4, recordCount: 4, records: notRecords },
    ];
    await goodBatch(good[0]!);
    await produceRawBatch(leader, topic, 0, poison[0]!);
    await goodBatch(good[1]!);
    await produceRawBatch(leader, topic, 0, poison[1]!);
    await produceRawBatch(leader, topic, 0, poison[2]!);
    await goodBatch(good[2]!);
    const end = 3 + 3 + 2 + 4;

    const b = await bed.broker(
      kafkaEnv(bed.mock.bootstrap, [topic], {
        TASKBROKER_KAFKA_DEADLETTER_TOPIC: dlq,
        TASKBROKER_ADMIN_ENABLED: "true",
      }),
    );
    await until("the good activations stored", () => storedRows(b.dbPath).length === 3);
    expect(
      storedRows(b.dbPath)
        .map((r) => r.id)
        .sort(),
    ).toEqual(good);
    await until(
      "committed past every batch",
      async () => (await committedOffsets(bed.mock.bootstrap, `taskbroker-${topic}`, topic)).get(0) === end,
    );

    const dead = await readTopic(bed.mock, dlq, 3, { settleMs: 300 });
    expect(dead.map((d) => d.headers["taskbroker-codec"]).sort()).toEqual(["codec-5", "snappy", "zstd"]);
    for (const d of dead) {
      expect(d.headers["taskbroker-undecodable"]).toBe("batch");
      expect(d.headers["taskbroker-source-topic"]).toBe(topic);
      // The raw record batch, as the producer wrote it after the header: its records' bytes are all there.
      const p = poison.find(
        (x) => d.headers["taskbroker-codec"] === (x.codecId === 5 ? "codec-5" : x.codecId === 2 ? "snappy" : "zstd"),
      )!;
      expect(hex(d.value!.subarray(d.value!.byteLength - p.records.byteLength))).toBe(hex(p.records));
    }
    expect(dead.find((d) => d.headers["taskbroker-codec"] === "codec-5")!.headers["taskbroker-source-offsets"]).toBe(
      "1-3",
    );

    const metrics = parsePrometheusText(await (await fetch(`http://127.0.0.1:${b.adminPort}/metrics`)).text());
    for (const codec of ["codec-5", "snappy", "zstd"])
      expect(valueOf(metrics, "taskbroker_kafka_undecodable_batches_total", { topic, codec })).toBe(1);
    expect(valueOf(metrics, "taskbroker_kafka_messages_total", { topic, result: "invalid" })).toBe(9);
    // Readiness stays up (the consumer is live) and says what it skipped.
    const ready = (await (await fetch(`http://127.0.0.1:${b.adminPort}/ready`)).json()) as {
      checks: Record<string, { ok: boolean; detail: string }>;
    };
    expect(ready.checks.kafka.ok).toBe(true);
    expect(ready.checks.kafka.detail).toMatch(/3 undecodable batch\(es\) dead-lettered/);
    expect(b.logs()).not.toMatch(/kafka_consumer_crashed/);

    // And consumption goes on.
    await goodBatch("a".repeat(32));
    await until("a later activation stored", () => storedRows(b.dbPath).length === 4);
    expect(await b.stop()).toBe(0);
  }, 60_000);
});
