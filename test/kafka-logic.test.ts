// Pure Kafka logic, in-process: typed header decoding and the header/payload
// fallback of header-mapped dispatch, and raw-message activations. The topic
// rules resolved from configuration are tested in config-upstream.test.ts.
// And the partition assignment that lets one group consume several topics.
import { describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { assignPartitions } from "../src/kafka/assignment.ts";
import { decodeHeader, HeaderDecodeError, taskKwargs, type RawHeaders } from "../src/kafka/headers.ts";
import { rawActivation, rawActivationId } from "../src/kafka/raw.ts";

const b = (s: string) => new TextEncoder().encode(s);

describe("typed header decoders", () => {
  test("decode what the Python producer writes", () => {
    expect(decodeHeader("a", b("abc"), "string")).toBe("abc");
    expect(decodeHeader("a", b("42"), "int")).toBe(42);
    expect(decodeHeader("a", b("-7"), "int")).toBe(-7);
    expect(decodeHeader("a", b("9007199254740993"), "int")).toBe(9007199254740993n);
    expect(decodeHeader("a", undefined, "optional_int")).toBeNull();
    expect(decodeHeader("a", b("None"), "optional_int")).toBeNull();
    expect(decodeHeader("a", b("None"), "optional_string")).toBeNull();
    expect(decodeHeader("a", b("5"), "optional_int")).toBe(5);
    expect(decodeHeader("a", b("1"), "bool")).toBe(true);
    expect(decodeHeader("a", b("0"), "bool")).toBe(false);
    expect(decodeHeader("a", b("True"), "bool")).toBe(true);
    expect(decodeHeader("a", b("False"), "bool")).toBe(false);
  });

  test("refuse missing and malformed values, naming the header", () => {
    expect(() => decodeHeader("project_id", undefined, "int")).toThrow(/project_id is missing/);
    expect(() => decodeHeader("project_id", b("4.2"), "int")).toThrow(/project_id="4.2" is not an integer/);
    expect(() => decodeHeader("flag", b("yes"), "bool")).toThrow(HeaderDecodeError);
    expect(() => decodeHeader("s", new Uint8Array([0xff]), "string")).toThrow(/not UTF-8/);
  });
});

describe("header-mapped kwargs", () => {
  const opts = {
    spec: { insert: { event_id: "string", group_id: "optional_int", project_id: "int" } } as const,
    version: 2,
    payloadFormat: "auto" as const,
  };
  const headers = (h: Record<string, string>): RawHeaders =>
    Object.fromEntries(Object.entries(h).map(([k, v]) => [k, b(v)]));

  test("headers path when every declared header decodes", () => {
    const r = taskKwargs(headers({ version: "2", operation: "insert", event_id: "e", project_id: "3" }), null, opts);
    expect(r).toEqual({
      path: "headers",
      kwargs: { operation: "insert", event_id: "e", group_id: null, project_id: 3 },
    });
  });

  test("payload path (JSON, msgpack, {args, kwargs} unwrapped) when a header is missing, malformed, or of another version", () => {
    const json = b(JSON.stringify({ event_id: "j" }));
    expect(taskKwargs(headers({ version: "2", operation: "insert", event_id: "e" }), json, opts)).toMatchObject({
      path: "payload",
      kwargs: { event_id: "j" },
      headerProblem: "header project_id is missing",
    });
    const packed = msgpackEncode({ args: [], kwargs: { event_id: "m" } });
    expect(taskKwargs(headers({ version: "3", operation: "insert" }), packed, opts)).toMatchObject({
      path: "payload",
      kwargs: { event_id: "m" },
    });
    expect(taskKwargs(headers({ version: "2", operation: "merge" }), json, opts).path).toBe("payload");
  });

  test("neither path: one error naming both problems", () => {
    expect(() => taskKwargs(headers({ version: "x" }), b("[1,2]"), opts)).toThrow(
      /version.*not an integer.*payload is not a JSON or msgpack map/,
    );
    expect(() => taskKwargs({}, null, opts)).toThrow(/version is missing; payload is empty/);
  });
});

describe("raw activations", () => {
  const spec = {
    application: "app",
    namespace: "ns",
    taskname: "t",
    processing_deadline_duration: 12,
    compression_level: 3,
    expires: 60,
    mode: "payload" as const,
    header_version: 1,
    header_kwargs: {},
    payload_fallback: "auto" as const,
  };
  const msg = {
    topic: "raw",
    partition: 3,
    offset: "77",
    value: b("hello"),
    headers: {},
    timestampMs: 1_700_000_000_123,
  };

  test("carry the configured task, the Kafka timestamp and the payload as msgpack bin, zstd-compressed", () => {
    const a = fromBinary(TaskActivationSchema, rawActivation(msg, spec, 0).bytes);
    expect([a.application, a.namespace, a.taskname]).toEqual(["app", "ns", "t"]);
    expect(a.processingDeadlineDuration).toBe(12n);
    expect(a.expires).toBe(60n);
    expect(Number(a.receivedAt!.seconds) * 1000 + a.receivedAt!.nanos / 1e6).toBe(1_700_000_000_123);
    expect(a.headers).toEqual({ "compression-type": "zstd" });
    const params = msgpackDecode(Bun.zstdDecompressSync(a.parametersBytes)) as { args: Uint8Array[]; kwargs: object };
    expect(new TextDecoder().decode(params.args[0])).toBe("hello");
    expect(params.kwargs).toEqual({});
  });

  test("ids are derived from the origin, so a redelivered message is a duplicate", () => {
    expect(rawActivation(msg, spec, 0).bytes).toEqual(rawActivation(msg, spec, 999).bytes);
    expect(rawActivationId("raw", 3, "77")).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(rawActivationId("raw", 3, "78")).not.toBe(rawActivationId("raw", 3, "77"));
  });
});

describe("partition assignment", () => {
  test("members get partitions only of topics they subscribe to, balanced across topics", () => {
    const members = [
      { memberId: "m1", topics: ["a", "b"] },
      { memberId: "m2", topics: ["a"] },
      { memberId: "m3", topics: ["c"] },
    ];
    const partitions = new Map([
      ["a", [0, 1, 2, 3]],
      ["b", [0, 1]],
      ["c", [0, 1, 2]],
      ["nobody", [0]],
    ]);
    const out = assignPartitions(members, partitions);
    const of = (m: string) => Object.fromEntries(out.get(m) ?? new Map());
    expect(of("m1")).toEqual({ a: [0, 2], b: [0, 1] });
    expect(of("m2")).toEqual({ a: [1, 3] });
    expect(of("m3")).toEqual({ c: [0, 1, 2] });
    // Every partition of a subscribed topic goes to exactly one member.
    for (const [topic, ps] of partitions) {
      if (topic === "nobody") continue;
      const got = [...out.values()].flatMap((byTopic) => byTopic.get(topic) ?? []).sort();
      expect(got).toEqual(ps);
    }
    // One topic, three members: round-robin, 4 each.
    const even = assignPartitions(
      ["x", "y", "z"].map((memberId) => ({ memberId, topics: ["t"] })),
      new Map([["t", Array.from({ length: 12 }, (_, i) => i)]]),
    );
    expect([...even.values()].map((byTopic) => byTopic.get("t")!.length)).toEqual([4, 4, 4]);
  });
});
