// The store's side of streaming delivery on a real SQLite file: claimMany
// (one statement for up to N rows, oldest first, shared with GetTask's claims
// in one group commit, never one row to two callers), releaseUnsent, status
// updates that find rows by seq, the pending watcher, and the hand-off of
// rows to a waiting stream inside the insert's transaction.
import { afterEach, describe, expect, test } from "bun:test";
import { pendingKey } from "../src/store/types.ts";
import { row, tempStore, type TempStore } from "./store-fixtures.ts";

let t: TempStore;
afterEach(async () => {
  await t.cleanup();
});

describe("batch claims", () => {
  test("claimMany hands out the oldest rows in order; concurrent callers never share a row", async () => {
    t = tempStore();
    const rows = Array.from({ length: 50 }, () => row({ application: "app" }));
    t.store.insert(rows);
    // Queued in the same turn: one flush, one statement per filter.
    const [a, one, b, c] = await Promise.all([
      t.store.claimMany({ application: "app" }, 10),
      t.store.claim({ application: "app" }),
      t.store.claimMany({ application: "app" }, 30),
      t.store.claimMany({}, 20),
    ]);
    const ids = rows.map((r) => r.id);
    expect(a.map((r) => r.id)).toEqual(ids.slice(0, 10));
    expect(one?.id).toBe(ids[10]!);
    expect(b.map((r) => r.id)).toEqual(ids.slice(11, 41));
    expect(c.map((r) => r.id)).toEqual(ids.slice(41, 50));
    expect(t.store.counts().processing).toBe(50);
    expect(await t.store.claimMany({}, 5)).toEqual([]);
    expect(await t.store.claimMany({ namespace: "ns" }, 5)).toEqual([]); // namespace without application
  });

  test("each claimed row's processing deadline starts at the claim", async () => {
    t = tempStore({ processingDeadlineGraceSec: 0 });
    t.store.insert([row({ processingDeadlineDuration: 7n })]);
    const before = Date.now();
    const [r] = await t.store.claimMany({}, 1);
    const stored = t.store.getActivation(r!.id)!;
    expect(stored.state).toBe("processing");
    expect(stored.processingDeadlineMs!).toBeGreaterThanOrEqual(before + 7000);
    expect(stored.processingDeadlineMs!).toBeLessThanOrEqual(Date.now() + 7000);
  });

  test("releaseUnsent puts never-sent rows back to pending without counting an attempt", async () => {
    t = tempStore();
    t.store.insert([row(), row()]);
    const claimed = await t.store.claimMany({}, 2);
    expect(t.store.releaseUnsent(claimed)).toBe(2);
    const again = await t.store.claimMany({}, 2);
    expect(again.map((r) => r.id)).toEqual(claimed.map((r) => r.id));
    expect(t.store.getActivation(again[0]!.id)!.processingAttempts).toBe(0);
    // A row finished meanwhile is not released.
    await t.store.setStatuses([{ id: again[0]!.id, status: "complete", seq: again[0]!.seq }]);
    expect(t.store.releaseUnsent(again)).toBe(1);
    expect(t.store.counts()).toMatchObject({ pending: 1, processing: 0, complete: 1 });
  });

  test("status updates carrying the seq: found by rowid, the id still checked", async () => {
    t = tempStore();
    t.store.insert([row(), row(), row()]);
    const [x, y, z] = await t.store.claimMany({}, 3);
    await t.store.setStatuses([
      { id: x!.id, status: "complete", seq: x!.seq },
      // A stale seq (the row now has another id): the update falls back to the id.
      { id: y!.id, status: "failure", seq: z!.seq },
      { id: "unknown", status: "complete", seq: z!.seq },
    ]);
    expect(t.store.getActivation(x!.id)!.state).toBe("complete");
    expect(t.store.getActivation(y!.id)!.state).toBe("failure");
    expect(t.store.getActivation(z!.id)!.state).toBe("processing");
    expect(t.store.counts()).toMatchObject({ processing: 1, complete: 1, failure: 1 });
  });

  test("the pending watcher hears of new claimable rows after commit, by application and namespace where known", async () => {
    t = tempStore({ processingDeadlineGraceSec: 0 });
    const heard: [number, Record<string, number> | null][] = [];
    const stop = t.store.watchPending((n, byKey) => heard.push([n, byKey ? Object.fromEntries(byKey) : null]));
    t.store.insert([
      row({ application: "a", namespace: "x" }),
      row({ application: "a", namespace: "x" }),
      row({ application: "b", namespace: "y" }),
    ]);
    expect(heard).toEqual([[3, { [pendingKey("a", "x")]: 2, [pendingKey("b", "y")]: 1 }]]);
    // Delayed rows are not claimable yet: not announced.
    t.store.insert([row({ delay: 60n, receivedAt: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 } })]);
    expect(heard.length).toBe(1);
    const claimed = await t.store.claimMany({}, 3);
    t.store.releaseUnsent(claimed.slice(0, 1));
    expect(heard[1]).toEqual([1, null]);
    // Deadline resets make rows claimable again (keys unknown: wake every stream).
    t.store.resetExpiredDeadlines(Date.now() + 3_600_000);
    expect(heard[2]).toEqual([2, null]);
    stop();
    t.store.insert([row()]);
    expect(heard.length).toBe(3);
  });

  test("hand-off: reserved rows are stored as processing and handed over only after commit; the rest stay pending", () => {
    t = tempStore({ processingDeadlineGraceSec: 0 });
    const taker = { credit: 2 };
    const handed: { id: string; state: string | undefined; seq: number }[] = [];
    let cancelled = 0;
    t.store.offerHandOff({
      reserve: (application) => (application === "a" && taker.credit > 0 ? (taker.credit--, taker) : null),
      // Read back through the store at hand-over: the row's claim is already committed.
      deliver: (_, r) => handed.push({ id: r.id, seq: r.seq, state: t.store.getActivation(r.id)?.state }),
      cancel: () => {
        cancelled++;
        taker.credit++;
      },
    });
    const heard: number[] = [];
    t.store.watchPending((n) => heard.push(n));
    const rows = [
      row({ application: "a" }),
      row({ application: "b" }),
      row({ application: "a" }),
      row({ application: "a" }),
    ];
    const before = Date.now();
    expect(t.store.insert(rows).accepted).toBe(4);
    expect(handed.map((h) => h.id)).toEqual([rows[0]!.id, rows[2]!.id]);
    expect(handed.every((h) => h.state === "processing" && h.seq > 0)).toBe(true);
    expect(t.store.getActivation(rows[0]!.id)!.processingDeadlineMs!).toBeGreaterThanOrEqual(before);
    expect(t.store.counts()).toMatchObject({ pending: 2, processing: 2 });
    expect(heard).toEqual([2]); // only the rows left pending wake anyone
    // A duplicate id is not stored: its reservation is given back.
    taker.credit = 1;
    expect(t.store.insert([{ ...rows[1]!, application: "a" }]).accepted).toBe(0);
    expect(cancelled).toBe(1);
    expect(taker.credit).toBe(1);
    // The handed rows finish by seq like claimed ones.
    return t.store
      .setStatuses(handed.map((h) => ({ id: h.id, seq: h.seq, status: "complete" as const })))
      .then(() => expect(t.store.counts()).toMatchObject({ processing: 0, complete: 2, pending: 2 }));
  });
});
