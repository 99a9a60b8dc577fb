// Reference broker settings that act in upkeep and the store, against a real
// SQLite file: the maintenance pass reclaims store.sqlite.vacuum_page_count
// free pages every maintenance_task_interval_ms (all of them when unset), and
// full_vacuum_on_upkeep rebuilds the file every vacuum_interval_ms when a
// quarter of it is free pages (passes
// driven with runOnce() after stopping the upkeep timer); canary_tasks stores
// internal canaries per worker_map application at start-up (a broker process,
// read with GetTask).
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { Code, ConnectError } from "@connectrpc/connect";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { silentLogger } from "../src/log.ts";
import { fullVacuumDuration } from "../src/metrics.ts";
import { localPublisher } from "../src/upkeep/publisher.ts";
import { startUpkeep, type Upkeep } from "../src/upkeep/loop.ts";
import { brokerClients } from "./support/activations.ts";
import { spawnBroker } from "./support/broker-process.ts";
import { row, tempStore, type TempStore } from "./store-fixtures.ts";

let t: TempStore | undefined;
let upkeep: Upkeep | undefined;
afterEach(async () => {
  await upkeep?.stop();
  upkeep = undefined;
  await t?.cleanup();
  t = undefined;
});

/** A store whose file has free pages: rows written, then deleted behind its back. */
function storeWithFreePages(rows = 300): { t: TempStore; pages: () => { free: number; total: number } } {
  const s = tempStore();
  s.store.insert(Array.from({ length: rows }, () => row({ parametersBytes: new Uint8Array(4000) })));
  const side = new Database(s.path);
  side.run("DELETE FROM inflight");
  side.run("PRAGMA wal_checkpoint(TRUNCATE)");
  const pages = () => ({
    free: (side.query("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count,
    total: (side.query("PRAGMA page_count").get() as { page_count: number }).page_count,
  });
  const close = s.cleanup;
  s.cleanup = async () => {
    side.close();
    await close();
  };
  return { t: s, pages };
}

async function manualUpkeep(store: TempStore, over: Record<string, unknown>): Promise<Upkeep> {
  const u = startUpkeep({
    store: store.store,
    config: brokerConfigSchema.parse({ upkeep_task_interval_ms: 60_000, ...over }),
    publisher: localPublisher(store.store),
    log: silentLogger,
    startedAtMs: Date.now() - 1,
  });
  await u.stop();
  upkeep = u;
  return u;
}

describe("SQLite maintenance settings", () => {
  test("each maintenance pass reclaims vacuum_page_count free pages; unset, all of them", async () => {
    const s = storeWithFreePages();
    t = s.t;
    const before = s.pages().free;
    expect(before).toBeGreaterThan(100);
    const limited = await manualUpkeep(s.t, {
      maintenance_task_interval_ms: 0,
      full_vacuum_on_upkeep: false,
      store: { sqlite: { vacuum_page_count: 7 } },
    });
    expect((await limited.runOnce()).reclaimedPages).toBe(7);
    expect(s.pages().free).toBe(before - 7);
    const all = await manualUpkeep(s.t, { maintenance_task_interval_ms: 0, full_vacuum_on_upkeep: false });
    expect((await all.runOnce()).reclaimedPages).toBe(before - 7);
    expect(s.pages().free).toBe(0);
  });

  test("unset, a pass reclaims every free page even when that takes several steps", async () => {
    const s = storeWithFreePages(1500); // ~1500 free pages: three steps of the incremental vacuum
    t = s.t;
    const before = s.pages().free;
    expect(before).toBeGreaterThan(1024);
    const all = await manualUpkeep(s.t, { maintenance_task_interval_ms: 0, full_vacuum_on_upkeep: false });
    expect((await all.runOnce()).reclaimedPages).toBe(before);
    expect(s.pages().free).toBe(0);
  });

  test("no maintenance pass before maintenance_task_interval_ms has passed", async () => {
    const s = storeWithFreePages();
    t = s.t;
    const u = await manualUpkeep(s.t, { maintenance_task_interval_ms: 3_600_000, full_vacuum_on_upkeep: false });
    expect((await u.runOnce()).reclaimedPages).toBe(0);
    expect(s.pages().free).toBeGreaterThan(100);
  });

  test("full_vacuum_on_upkeep rebuilds the file every vacuum_interval_ms; off, it does not", async () => {
    const s = storeWithFreePages();
    t = s.t;
    const before = s.pages();
    await (
      await manualUpkeep(s.t, {
        maintenance_task_interval_ms: 3_600_000,
        full_vacuum_on_upkeep: false,
        vacuum_interval_ms: 0,
      })
    ).runOnce();
    expect(s.pages()).toEqual(before);
    const vacuums = async () =>
      (await fullVacuumDuration.get()).values.find(
        (v) => v.metricName === "taskbroker_full_vacuum_duration_seconds_count",
      )?.value ?? 0;
    const counted = await vacuums();
    const on = await (
      await manualUpkeep(s.t, { maintenance_task_interval_ms: 3_600_000, vacuum_interval_ms: 0 })
    ).runOnce();
    expect(on.fullVacuum).toBe(true);
    // Timed as the reference's upkeep.full_vacuum (and its Prometheus twin).
    expect((await vacuums()) - counted).toBe(1);
    expect(s.pages().free).toBe(0);
    expect(s.pages().total).toBeLessThan(before.total - 100);
  });

  test("the upkeep VACUUM is skipped while less than a quarter of the file is free pages", async () => {
    t = tempStore();
    t.store.insert(Array.from({ length: 300 }, () => row({ parametersBytes: new Uint8Array(4000) })));
    const side = new Database(t.path);
    side.run("DELETE FROM inflight WHERE seq <= 30"); // ~10% of the pages become free
    side.run("PRAGMA wal_checkpoint(TRUNCATE)");
    const pages = () => (side.query("PRAGMA page_count").get() as { page_count: number }).page_count;
    const free = () => (side.query("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count;
    const before = { total: pages(), free: free() };
    expect(before.free).toBeGreaterThan(10);
    try {
      const r = await (
        await manualUpkeep(t, { maintenance_task_interval_ms: 3_600_000, vacuum_interval_ms: 0 })
      ).runOnce();
      expect(r.fullVacuum).toBe(false);
      expect({ total: pages(), free: free() }).toEqual(before);
    } finally {
      side.close();
    }
  });
});

test("canary_tasks: the broker starts with that many internal canary tasks per worker_map application", async () => {
  const b = await spawnBroker({
    TASKBROKER_CANARY_TASKS: "2",
    TASKBROKER_WORKER_MAP: "{alpha=http://127.0.0.1:1,beta=http://127.0.0.1:2}",
  });
  try {
    const { consumer } = brokerClients(b.port);
    const seen: string[] = [];
    for (;;) {
      // NOT_FOUND once nothing is pending (the wire contract).
      const res = await consumer
        .getTask({})
        .catch((err: unknown) => (ConnectError.from(err).code === Code.NotFound ? null : Promise.reject(err)));
      if (!res?.task) break;
      seen.push(`${res.task.application}/${res.task.namespace}:${res.task.taskname}`);
    }
    expect(seen.sort()).toEqual([
      "alpha/internal:canary_task",
      "alpha/internal:canary_task",
      "beta/internal:canary_task",
      "beta/internal:canary_task",
    ]);
    expect(b.logs()).toContain("canary_tasks_stored count=4 worker_pools=2");
  } finally {
    await b.stop();
  }
});
