// Ingest: activation validation and mapping, the retry/replay builders, the
// four backpressure rules, and produce() against a real SQLite store
// (all-or-nothing validation, expiry drops, backpressure, duplicates).
import { afterEach, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { InvalidActivation } from "../src/activation/decode.ts";
import { buildRetryActivation, rewriteRetryState } from "../src/activation/rewrite.ts";
import { activationToRow } from "../src/store/row.ts";
import { admit, type BackpressureLimits } from "../src/ingest/backpressure.ts";
import { Backpressure, createIngest } from "../src/ingest/ingest.ts";
import { scanActivation } from "../src/activation/wire.ts";
import { silentLogger } from "../src/log.ts";
import { activationBytes, row, tempStore, timestampFromMs, type TempStore } from "./store-fixtures.ts";

const opts = { maxDelaySec: 3600 };

function invalid(bytes: Uint8Array): InvalidActivation {
  try {
    activationToRow(bytes, Date.now(), opts, null);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidActivation);
    expect((err as Error).name).toBe("InvalidActivation");
    return err as InvalidActivation;
  }
  throw new Error("expected InvalidActivation");
}

describe("activationToRow", () => {
  test.each(["id", "namespace", "taskname", "application"] as const)("names a missing %s", (field) => {
    const bytes = toBinary(
      TaskActivationSchema,
      create(TaskActivationSchema, { id: "abc", namespace: "ns", taskname: "t", application: "app", [field]: "" }),
    );
    expect(invalid(bytes).message).toContain(`missing ${field}`);
  });

  test("garbage, 3-byte and empty payloads are rejected, never crash", () => {
    expect(invalid(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).message).toMatch(
      /undecodable|missing/,
    );
    expect(invalid(new Uint8Array([0x0a, 0x05, 0x61])).message).toMatch(/undecodable/);
    expect(invalid(new Uint8Array(0)).message).toMatch(/empty/);
  });

  test("maps timestamps with sub-second precision, expiry, capped delay and the original bytes", () => {
    const now = Date.now();
    const receivedAt = { seconds: 1_700_000_000n, nanos: 123_456_789 };
    const bytes = activationBytes({
      receivedAt,
      expires: 30n,
      delay: 7200n,
      processingDeadlineDuration: 12n,
      retryState: { atMostOnce: true, onAttemptsExceeded: 2 },
    });
    const origin = { topic: "t", partition: 1, offset: "42" };
    const r = activationToRow(bytes, now, opts, origin);
    expect(r.receivedAtMs).toBe(1_700_000_000_123);
    expect(r.expiresAtMs).toBe(1_700_000_030_123);
    expect(r.delayUntilMs).toBe(1_700_000_000_123 + 3600_000);
    expect(r).toMatchObject({ processingDeadlineDurationS: 12, atMostOnce: true, onAttemptsExceeded: 2, origin });
    expect(r.activation).toBe(bytes);
  });

  test("received_at defaults to now; no expires/delay means none", () => {
    const now = Date.now();
    const r = activationToRow(activationBytes(), now, opts, null);
    expect(r).toMatchObject({ receivedAtMs: now, expiresAtMs: null, delayUntilMs: null, atMostOnce: false });
  });
});

describe("retry and replay builders", () => {
  test("retry: new uuid4 hex id, attempts + 1, received now, delay = delay_on_retry", () => {
    const stored = activationBytes({ retryState: { attempts: 2, maxAttempts: 5, delayOnRetry: 15n }, delay: 99n });
    const now = Date.now();
    const { id, bytes } = buildRetryActivation(stored, now);
    const a = fromBinary(TaskActivationSchema, bytes);
    const orig = fromBinary(TaskActivationSchema, stored);
    expect(id).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(a.id).toBe(id);
    expect(id).not.toBe(orig.id);
    expect(a.retryState!.attempts).toBe(3);
    expect(a.delay).toBe(15n);
    expect(Number(a.receivedAt!.seconds) * 1000 + Math.floor(a.receivedAt!.nanos / 1e6)).toBe(now);
    expect(a.taskname).toBe(orig.taskname);
    // Deterministic, so a repeated publish is a duplicate.
    expect(buildRetryActivation(stored, now + 1000).id).toBe(id);
  });

  test("retry without delay_on_retry carries no delay", () => {
    const { bytes } = buildRetryActivation(activationBytes({ delay: 99n }), Date.now());
    const a = fromBinary(TaskActivationSchema, bytes);
    expect(a.delay).toBeUndefined();
    expect(a.retryState!.attempts).toBe(1);
  });

  test("rewriteRetryState changes only max_attempts / delay_on_retry", () => {
    const stored = activationBytes({ retryState: { attempts: 2, maxAttempts: 3 } });
    const a = fromBinary(TaskActivationSchema, rewriteRetryState(stored, 9, undefined));
    expect(a.retryState).toMatchObject({ attempts: 2, maxAttempts: 9 });
    expect(a.retryState!.delayOnRetry).toBeUndefined();
  });
});

describe("admit (docs/spec/broker.md Backpressure)", () => {
  const limits: BackpressureLimits = {
    maxProcessingCount: 10,
    maxPendingCount: 10,
    maxDelayCount: 5,
    maxSizeBytes: 1000,
  };
  const counts = (over: Partial<Record<string, number>> = {}) => ({
    pending: 0,
    delay: 0,
    processing: 0,
    claimed: 0,
    retry: 0,
    failure: 0,
    complete: 0,
    ...over,
  });
  const now = Date.now();
  const pending = (n: number) => Array.from({ length: n }, () => row({}, now));
  const delayed = (n: number) => Array.from({ length: n }, () => row({ delay: 60n }, now));

  test("processing + claimed >= max_processing_count", () => {
    expect(admit(counts({ processing: 6, claimed: 3 }), pending(1), limits, 0, now).ok).toBe(true);
    const d = admit(counts({ processing: 6, claimed: 4 }), delayed(1), limits, 0, now);
    expect(d.ok).toBe(false);
    expect(!d.ok && d.reason).toContain("max_processing_count");
  });

  test("pending + batch > max_pending_count, only when the batch has Pending rows", () => {
    expect(admit(counts({ pending: 8 }), pending(2), limits, 0, now).ok).toBe(true);
    const d = admit(counts({ pending: 8 }), pending(3), limits, 0, now);
    expect(!d.ok && d.reason).toContain("max_pending_count");
    expect(admit(counts({ pending: 50 }), delayed(3), limits, 0, now).ok).toBe(true);
  });

  test("delay + batch > max_delay_count, only when the batch has Delay rows", () => {
    const d = admit(counts({ delay: 3 }), delayed(3), limits, 0, now);
    expect(!d.ok && d.reason).toContain("max_delay_count");
    expect(admit(counts({ delay: 50 }), pending(3), limits, 0, now).ok).toBe(true);
  });

  test("database size >= max size", () => {
    const d = admit(counts(), pending(1), limits, 1000, now);
    expect(!d.ok && d.reason).toContain("max_size");
    expect(admit(counts(), pending(1), limits, 999, now).ok).toBe(true);
  });
});

describe("produce", () => {
  let t: TempStore;
  afterEach(async () => {
    await t?.cleanup();
  });
  const ingestFor = (store: Record<string, unknown> = {}, drop?: (r: { taskname: string }) => boolean) =>
    createIngest({ store: t.store, config: brokerConfigSchema.parse({ store }), log: silentLogger, drop });

  test("one bad activation rejects the batch with its index; nothing is stored", () => {
    t = tempStore();
    const ingest = ingestFor();
    const batch = [activationBytes(), activationBytes(), activationBytes({ taskname: "" }), new Uint8Array([1, 2, 3])];
    let caught: unknown;
    try {
      ingest.produce(batch, "rpc");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidActivation);
    expect((caught as InvalidActivation).index).toBe(2);
    expect((caught as Error).message).toContain("taskname");
    expect(t.store.recount().pending).toBe(0);
  });

  test("stores durably, counts duplicates and drops already-expired activations", async () => {
    t = tempStore();
    const ingest = ingestFor();
    const a = activationBytes();
    const expired = activationBytes({ receivedAt: timestampFromMs(Date.now() - 60_000), expires: 10n });
    expect(ingest.produce([a, activationBytes(), expired], "rpc")).toEqual({
      accepted: 2,
      duplicates: 0,
      keyDuplicates: 0,
      expired: 1,
      killed: 0,
    });
    expect(ingest.produce([a], "kafka", [{ topic: "x", partition: 0, offset: "1" }])).toMatchObject({
      accepted: 0,
      duplicates: 1,
    });
    const store = await t.reopen();
    expect(store.counts().pending).toBe(2);
  });

  test("backpressure rejects the whole batch with a reason, and lifts by itself", async () => {
    t = tempStore();
    const ingest = ingestFor({ max_pending_count: 3 });
    ingest.produce([activationBytes(), activationBytes()], "rpc");
    let caught: unknown;
    try {
      ingest.produce([activationBytes(), activationBytes()], "rpc");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(Backpressure);
    expect((caught as Backpressure).name).toBe("Backpressure");
    expect((caught as Backpressure).reason).toContain("max_pending_count");
    expect(t.store.counts().pending).toBe(2);
    await t.store.claim({});
    expect(ingest.produce([activationBytes(), activationBytes()], "rpc").accepted).toBe(2);
  });

  test("the kill switch hook drops matching rows and counts them", () => {
    t = tempStore();
    const ingest = ingestFor({}, (r) => r.taskname === "doomed");
    expect(ingest.produce([activationBytes({ taskname: "doomed" }), activationBytes()], "rpc")).toMatchObject({
      accepted: 1,
      killed: 1,
    });
  });
});

describe("wire scan (fast path) agrees with the full decoder", () => {
  function decoded(bytes: Uint8Array) {
    const a = fromBinary(TaskActivationSchema, bytes);
    const ts = a.receivedAt;
    return {
      id: a.id,
      namespace: a.namespace,
      taskname: a.taskname,
      application: a.application ?? "",
      receivedAtMs:
        !ts || (ts.seconds === 0n && ts.nanos === 0) ? null : Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6),
      processingDeadlineDuration: Number(a.processingDeadlineDuration),
      expires: a.expires === undefined ? undefined : Number(a.expires),
      delay: a.delay === undefined ? undefined : Number(a.delay),
      atMostOnce: a.retryState?.atMostOnce ?? false,
      onAttemptsExceeded: a.retryState?.onAttemptsExceeded ?? 0,
      idempotencyKey: a.headers["taskplatform-idempotency-key"],
    };
  }

  const samples = [
    activationBytes(),
    activationBytes({ receivedAt: { seconds: 1_700_000_000n, nanos: 999_999_999 }, expires: 0n, delay: 5n }),
    activationBytes({
      id: "ü-ñ-\u{1F600}",
      headers: { a: "1", "compression-type": "zstd" },
      parametersBytes: new Uint8Array(300).fill(1),
      parameters: '{"args":[]}',
      retryState: { attempts: 4, maxAttempts: 9, onAttemptsExceeded: 2, atMostOnce: true, delayOnRetry: 3n },
      processingDeadlineDuration: 123456n,
      application: "",
    }),
    activationBytes({ headers: { "sentry-trace": "abc", "taskplatform-idempotency-key": "order-42/ü", z: "" } }),
    activationBytes({ headers: { "taskplatform-idempotency-key": "" } }),
    activationBytes({ headers: { "taskplatform-idempotency-ke": "near miss", "taskplatform-idempotency-keys": "x" } }),
  ];

  test("same fields for varied activations", () => {
    for (const b of samples) expect(scanActivation(b)).toEqual(decoded(b));
  });

  test("every truncation either decodes identically or is left to the full decoder", () => {
    for (const b of samples) {
      for (let n = 1; n < b.byteLength; n++) {
        const prefix = b.subarray(0, n);
        const fast = scanActivation(prefix);
        let full: ReturnType<typeof decoded> | "throws";
        try {
          full = decoded(prefix);
        } catch {
          full = "throws";
        }
        if (fast !== null) expect(fast).toEqual(full as ReturnType<typeof decoded>);
      }
    }
  });
});

describe("invalid UTF-8 is refused like the full decoder refuses it", () => {
  test("in the id and in a header value", () => {
    const bad = new Uint8Array([0xc3, 0x28]);
    const withBadId = toBinary(
      TaskActivationSchema,
      create(TaskActivationSchema, { id: "X", namespace: "n", taskname: "t", application: "a" }),
    );
    // Field 1 (id) is the first field: 0x0a, len 1, "X" -> replace the payload with 2 invalid bytes.
    const patched = new Uint8Array([0x0a, 0x02, ...bad, ...withBadId.subarray(3)]);
    expect(invalid(patched).message).toMatch(/undecodable/);
    const header = activationBytes({ headers: { k: "\u00e9" } });
    const i = header.indexOf(0xc3);
    const broken = new Uint8Array(header);
    broken[i + 1] = 0x28;
    expect(invalid(broken).message).toMatch(/undecodable/);
  });
});
