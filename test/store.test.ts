// The inflight store against real SQLite files: state machine, claim order and
// filters, concurrency (group commit never hands a row out twice), restart,
// retry_state rewrite, counters, dead letters, push-mode leases.
import { afterEach, describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { activationToRow } from "../src/store/row.ts";
import { row, tempStore, timestampFromMs, type TempStore } from "./store-fixtures.ts";

let t: TempStore;
afterEach(async () => {
  await t?.cleanup();
});

describe("claims", () => {
  test("rows received in the same millisecond are claimed in arrival order", async () => {
    t = tempStore();
    const now = Date.now();
    const rows = Array.from({ length: 50 }, () => row({ receivedAt: timestampFromMs(now) }, now));
    // Two inserts, so order across transactions is covered too.
    t.store.insert(rows.slice(0, 25));
    t.store.insert(rows.slice(25));
    const sequential = [];
    for (let i = 0; i < 10; i++) sequential.push((await t.store.claim({ application: "app" }))!.id);
    expect(sequential).toEqual(rows.slice(0, 10).map((r) => r.id));
    // Concurrent claims share one flush: the earliest caller still gets the oldest row.
    const batch = await Promise.all(
      Array.from({ length: 40 }, () => t.store.claim({ application: "app", namespace: "ns" })),
    );
    expect(batch.map((c) => c!.id)).toEqual(rows.slice(10).map((r) => r.id));
  });

  test("filters by application and namespace; namespace without application claims nothing", async () => {
    t = tempStore();
    const a1 = row({ application: "a", namespace: "n1" });
    const a2 = row({ application: "a", namespace: "n2" });
    const b1 = row({ application: "b", namespace: "n1" });
    t.store.insert([a1, a2, b1]);
    expect(await t.store.claim({ namespace: "n1" })).toBeNull();
    expect((await t.store.claim({ application: "a", namespace: "n2" }))!.id).toBe(a2.id);
    expect(await t.store.claim({ application: "a", namespace: "n3" })).toBeNull();
    expect(await t.store.claim({ application: "c" })).toBeNull();
    expect((await t.store.claim({ application: "b" }))!.id).toBe(b1.id);
    expect((await t.store.claim({}))!.id).toBe(a1.id);
    expect(await t.store.claim({})).toBeNull();
  });

  test("skips rows already past expires_at and serves the original bytes", async () => {
    t = tempStore();
    const old = row({ receivedAt: timestampFromMs(Date.now() - 10_000), expires: 5n });
    const fresh = row({ expires: 60n });
    t.store.insert([old, fresh]);
    const got = await t.store.claim({ application: "app" });
    expect(got!.id).toBe(fresh.id);
    expect(Buffer.from(got!.activation).equals(Buffer.from(fresh.activation))).toBe(true);
    expect(await t.store.claim({ application: "app" })).toBeNull();
  });

  test("processing deadline = claim time + processing_deadline_duration + grace", async () => {
    t = tempStore({ processingDeadlineGraceSec: 3 });
    const r = row({ processingDeadlineDuration: 20n });
    t.store.insert([r]);
    const before = Date.now();
    await t.store.claim({ application: "app" });
    const after = Date.now();
    const stored = t.store.getActivation(r.id)!;
    expect(stored.state).toBe("processing");
    expect(stored.processingDeadlineMs!).toBeGreaterThanOrEqual(before + 23_000);
    expect(stored.processingDeadlineMs!).toBeLessThanOrEqual(after + 23_000);
  });

  test("2000 concurrent claims over 1000 rows: 1000 distinct ids and 1000 nulls", async () => {
    t = tempStore();
    const rows = Array.from({ length: 1000 }, (_, i) => row({ namespace: `ns${i % 3}` }));
    t.store.insert(rows);
    const filters = [{}, { application: "app" }, { application: "app", namespace: "ns1" }];
    const results = await Promise.all(Array.from({ length: 2000 }, (_, i) => t.store.claim(filters[i % 2]!)));
    const ids = results.filter((r) => r !== null).map((r) => r!.id);
    expect(ids.length).toBe(1000);
    expect(new Set(ids).size).toBe(1000);
    expect(results.filter((r) => r === null).length).toBe(1000);
    expect(t.store.counts().processing).toBe(1000);
    expect(t.store.counts().pending).toBe(0);
  });

  test("a namespace filter mixed into concurrent claims gets only its namespace", async () => {
    t = tempStore();
    t.store.insert(Array.from({ length: 30 }, (_, i) => row({ namespace: `ns${i % 3}` })));
    const results = await Promise.all(
      Array.from({ length: 30 }, () => t.store.claim({ application: "app", namespace: "ns1" })),
    );
    const got = results.filter((r) => r !== null);
    expect(got.length).toBe(10);
    for (const g of got) expect(fromBinary(TaskActivationSchema, g!.activation).namespace).toBe("ns1");
  });
});

describe("inserts", () => {
  test("duplicate ids are ignored and counted", () => {
    t = tempStore();
    const r = row();
    expect(t.store.insert([r, row()])).toEqual({ accepted: 2, duplicates: 0, keyDuplicates: 0 });
    expect(t.store.insert([r])).toEqual({ accepted: 0, duplicates: 1, keyDuplicates: 0 });
    expect(t.store.counts().pending).toBe(2);
  });

  test("delayed rows start in Delay", () => {
    t = tempStore();
    t.store.insert([row({ delay: 30n }), row()]);
    expect(t.store.counts()).toMatchObject({ delay: 1, pending: 1 });
  });

  test("a restart (close + reopen) keeps every row and its state", async () => {
    t = tempStore();
    const rows = Array.from({ length: 20 }, () => row());
    const kafka = activationToRow(
      row().activation,
      Date.now(),
      { maxDelaySec: 3600 },
      {
        topic: "tasks",
        partition: 3,
        offset: "9007199254740993",
      },
    );
    t.store.insert([...rows, kafka]);
    const claimed = await t.store.claim({ application: "app" });
    const store = await t.reopen();
    expect(store.counts()).toMatchObject({ pending: 20, processing: 1 });
    expect(store.getActivation(claimed!.id)!.state).toBe("processing");
    expect(store.getActivation(kafka.id)!.origin).toEqual({ topic: "tasks", partition: 3, offset: "9007199254740993" });
    expect((await store.claim({ application: "app" }))!.id).toBe(rows[1]!.id);
  });
});

describe("status updates", () => {
  test("updates sharing one flush: repeats, unknown ids and rows in other states each get their own rule", async () => {
    t = tempStore();
    const [a, b, c, pending] = [row(), row(), row(), row()];
    t.store.insert([a, b, c, pending]);
    for (let i = 0; i < 3; i++) await t.store.claim({ application: "app" });
    // All queued before the flush runs: they share one transaction.
    await Promise.all([
      t.store.setStatus({ id: a.id, status: "complete" }),
      t.store.setStatus({ id: a.id, status: "failure" }), // a repeat: the first outcome stands
      t.store.setStatus({ id: b.id, status: "failure" }),
      t.store.setStatus({ id: c.id, status: "retry" }),
      t.store.setStatus({ id: "f".repeat(32), status: "complete" }),
      t.store.setStatus({ id: pending.id, status: "complete" }), // pending rows a worker may still hold
    ]);
    expect(t.store.getActivation(a.id)!.state).toBe("complete");
    expect(t.store.getActivation(b.id)!.state).toBe("failure");
    expect(t.store.getActivation(c.id)!.state).toBe("retry");
    expect(t.store.getActivation(pending.id)!.state).toBe("complete");
    expect(t.store.counts()).toEqual(t.store.recount());
    expect(t.store.counts().processing).toBe(0);
  });

  test("complete, retry and failure move the row; unknown ids are a no-op", async () => {
    t = tempStore();
    const [a, b, c] = [row(), row(), row()];
    t.store.insert([a, b, c]);
    await Promise.all([1, 2, 3].map(() => t.store.claim({ application: "app" })));
    await t.store.setStatus({ id: a.id, status: "complete" });
    await t.store.setStatus({ id: b.id, status: "retry" });
    await t.store.setStatus({ id: c.id, status: "failure" });
    expect(await t.store.setStatus({ id: "no-such-id", status: "complete" })).toBeNull();
    expect(t.store.getActivation(a.id)!.state).toBe("complete"); // upkeep deletes it
    expect(t.store.getActivation(b.id)!.state).toBe("retry");
    expect(t.store.getActivation(c.id)!.state).toBe("failure");
    expect(t.store.counts()).toMatchObject({ processing: 0, retry: 1, failure: 1, complete: 1 });
    // A finished row does not move again (a duplicate SetTaskStatus).
    await t.store.setStatus({ id: b.id, status: "complete" });
    expect(t.store.getActivation(b.id)!.state).toBe("retry");
  });

  test("setStatus with fetchNext returns the next claimed activation, or null", async () => {
    t = tempStore();
    const [a, b] = [row(), row({ namespace: "other" })];
    t.store.insert([a, b]);
    await t.store.claim({ application: "app", namespace: "ns" });
    expect(
      await t.store.setStatus({ id: a.id, status: "complete" }, { application: "app", namespace: "ns" }),
    ).toBeNull();
    const next = await t.store.setStatus({ id: "gone", status: "complete" }, { application: "app" });
    expect(next!.id).toBe(b.id);
  });

  test("concurrent status+fetch_next calls each get a distinct row", async () => {
    t = tempStore();
    const rows = Array.from({ length: 200 }, () => row());
    t.store.insert(rows);
    const first = await Promise.all(Array.from({ length: 100 }, () => t.store.claim({ application: "app" })));
    const next = await Promise.all(
      first.map((c) => t.store.setStatus({ id: c!.id, status: "complete" }, { application: "app" })),
    );
    const ids = next.map((n) => n!.id);
    expect(new Set(ids).size).toBe(100);
    expect(ids).toEqual(rows.slice(100).map((r) => r.id));
    expect(t.store.counts()).toMatchObject({ pending: 0, processing: 100 });
  });

  test("setStatuses applies a batch in one go", async () => {
    t = tempStore();
    const rows = Array.from({ length: 10 }, () => row());
    t.store.insert(rows);
    await Promise.all(rows.map(() => t.store.claim({})));
    await t.store.setStatuses(rows.map((r, i) => ({ id: r.id, status: i % 2 ? "complete" : "failure" })));
    expect(t.store.counts()).toMatchObject({ processing: 0, failure: 5 });
  });

  test("RETRY carrying max_attempts / delay_on_retry rewrites the stored retry_state", async () => {
    t = tempStore();
    const r = row({ retryState: { attempts: 1, maxAttempts: 3 }, headers: { k: "v" } });
    t.store.insert([r]);
    await t.store.claim({});
    await t.store.setStatus({ id: r.id, status: "retry", maxAttempts: 7, delayOnRetry: 42n });
    const stored = fromBinary(TaskActivationSchema, t.store.getActivation(r.id)!.activation);
    expect(stored.retryState!.maxAttempts).toBe(7);
    expect(stored.retryState!.delayOnRetry).toBe(42n);
    expect(stored.retryState!.attempts).toBe(1);
    expect(stored.headers).toEqual({ k: "v" });
  });
});

describe("counts and queries", () => {
  test("counts() stays equal to a recount from the database", async () => {
    t = tempStore();
    t.store.insert(Array.from({ length: 30 }, (_, i) => row({ delay: i % 5 === 0 ? 60n : undefined })));
    const claimed = await Promise.all(Array.from({ length: 12 }, () => t.store.claim({})));
    await t.store.setStatuses(
      claimed.slice(0, 6).map((c, i) => ({ id: c!.id, status: (["complete", "retry", "failure"] as const)[i % 3]! })),
    );
    t.store.claimForPush({}, 1000);
    const live = t.store.counts();
    expect(t.store.recount()).toEqual(live);
    expect(live).toMatchObject({ delay: 6, processing: 6, retry: 2, failure: 2, claimed: 1, pending: 11 });
  });

  test("depth per namespace and oldest pending age", async () => {
    t = tempStore();
    const old = Date.now() - 5000;
    t.store.insert([row({ receivedAt: timestampFromMs(old) }), row({ namespace: "b" }), row({ namespace: "b" })]);
    await t.store.claim({ application: "app", namespace: "b" });
    const depths = t.store.depthsByNamespace();
    expect(depths).toContainEqual({ namespace: "ns", state: "pending", count: 1 });
    expect(depths).toContainEqual({ namespace: "b", state: "pending", count: 1 });
    expect(depths).toContainEqual({ namespace: "b", state: "processing", count: 1 });
    expect(t.store.oldestPendingReceivedAtMs()).toBe(old);
    expect(t.store.sizeBytes().db).toBeGreaterThan(0);
  });
});

describe("lifecycle", () => {
  test("close() commits claims already queued; calls after close are rejected, never left hanging", async () => {
    t = tempStore();
    const r = row();
    t.store.insert([r]);
    const queued = t.store.claim({});
    await t.store.close();
    expect((await queued)!.id).toBe(r.id);
    await expect(t.store.claim({})).rejects.toThrow();
    const reopened = await t.reopen();
    expect(reopened.getActivation(r.id)!.state).toBe("processing");
  });
});

describe("push mode leases", () => {
  test("claimForPush reserves, markDelivered starts processing, releaseClaim returns to pending", () => {
    t = tempStore();
    const [a, b] = [row(), row()];
    t.store.insert([a, b]);
    expect(t.store.claimForPush({}, 5000)!.id).toBe(a.id);
    expect(t.store.claimForPush({ application: "app" }, 5000)!.id).toBe(b.id);
    expect(t.store.claimForPush({}, 5000)).toBeNull();
    expect(t.store.markDelivered(a.id)).toBe(true);
    expect(t.store.markDelivered(a.id)).toBe(false);
    expect(t.store.releaseClaim(b.id)).toBe(true);
    expect(t.store.counts()).toMatchObject({ processing: 1, pending: 1, claimed: 0 });
  });
});

describe("local dead letters", () => {
  const dl = (r: ReturnType<typeof row>) => ({ ...r, onAttemptsExceeded: 2 });

  test("list is paginated by id cursor; get and discard", () => {
    t = tempStore();
    const rows = Array.from({ length: 5 }, () => row());
    for (const r of rows) t.store.addDeadLetter(dl(r), 1000);
    t.store.addDeadLetter(dl(rows[0]!), 2000); // idempotent
    const first = t.store.listDeadLetters({ limit: 3 });
    expect(first.total).toBe(5);
    expect(first.items.length).toBe(3);
    const rest = t.store.listDeadLetters({ limit: 3, afterId: first.items[2]!.id });
    expect(rest.items.length).toBe(2);
    expect(new Set([...first.items, ...rest.items].map((d) => d.id))).toEqual(new Set(rows.map((r) => r.id)));
    expect(t.store.getDeadLetter(rows[1]!.id)!.deadLetteredAtMs).toBe(1000);
    expect(t.store.discardDeadLetter(rows[1]!.id)).toBe(true);
    expect(t.store.discardDeadLetter(rows[1]!.id)).toBe(false);
    expect(t.store.listDeadLetters({ limit: 10 }).total).toBe(4);
  });

  test("replay re-queues a new activation (new id, attempts 0) and removes the dead letter", async () => {
    t = tempStore();
    const r = row({ retryState: { attempts: 3, maxAttempts: 3, onAttemptsExceeded: 2 }, headers: { h: "1" } });
    t.store.addDeadLetter(dl(r), Date.now());
    const newId = t.store.replayDeadLetter(r.id)!;
    expect(newId).toMatch(/^[0-9a-f]{32}$/);
    expect(t.store.replayDeadLetter(r.id)).toBeNull();
    expect(t.store.getDeadLetter(r.id)).toBeNull();
    const claimed = await t.store.claim({ application: "app" });
    expect(claimed!.id).toBe(newId);
    const a = fromBinary(TaskActivationSchema, claimed!.activation);
    expect(a.retryState!.attempts).toBe(0);
    expect(a.retryState!.maxAttempts).toBe(3);
    expect(a.headers).toEqual({ h: "1" });
    expect(Math.abs(Number(a.receivedAt!.seconds) * 1000 - Date.now())).toBeLessThan(5000);
  });
});

describe("kafka rebalance take-back", () => {
  test("discardUncommitted removes only never-handed-out rows of the given offsets and keeps counts right", async () => {
    t = tempStore();
    const withOrigin = (offset: number, partition = 0) => ({
      ...row({ application: "app", namespace: "ns" }),
      origin: { topic: "tw", partition, offset: String(offset) },
    });
    const rows = [withOrigin(10), withOrigin(11), withOrigin(12), withOrigin(10, 1)];
    t.store.insert(rows);
    const claimed = await t.store.claim({ application: "app" }); // offset 10 of partition 0: handed out, must stay
    expect(claimed!.id).toBe(rows[0]!.id);
    const n = t.store.discardUncommitted([
      { topic: "tw", partition: 0, offset: "10" },
      { topic: "tw", partition: 0, offset: "11" },
      { topic: "tw", partition: 1, offset: "10" },
      { topic: "other", partition: 0, offset: "12" },
    ]);
    expect(n).toBe(2);
    expect(t.store.counts().pending).toBe(1);
    expect(t.store.counts().processing).toBe(1);
    expect(t.store.counts()).toEqual(t.store.recount());
    expect((await t.store.claim({ application: "app" }))!.id).toBe(rows[2]!.id);
  });
});

describe("WAL checkpoints off the event loop", () => {
  test("rows reach the database file without the store's own connection checkpointing", async () => {
    t = tempStore({ checkpointIntervalMs: 50 });
    const { statSync } = await import("node:fs");
    const before = statSync(t.path).size;
    // ~6 MB of rows: far below the inline auto-checkpoint mark (~80 MB), so
    // only the background thread can move them from the WAL into the file.
    for (let i = 0; i < 20; i++) {
      t.store.insert(Array.from({ length: 1000 }, () => row({ parametersBytes: new Uint8Array(300) })));
    }
    const deadline = Date.now() + 4_000;
    while (statSync(t.path).size < before + 5_000_000) {
      if (Date.now() > deadline) throw new Error(`database file still ${statSync(t.path).size} bytes`);
      await Bun.sleep(20);
    }
    expect(t.store.counts().pending).toBe(20_000);
  });
});
