// The scheduler loop over a real SQLite run store, driven by a manual clock:
// it fires on time and only on time, a restart neither double-fires nor skips,
// missed slots are not caught up, a changed definition runs at once, a failed
// produce does not stall later slots, and two schedulers sharing one store fire
// every slot exactly once.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { createLogger } from "../src/log.ts";
import {
  createManualClock,
  type ManualClock,
  normalizeSchedules,
  openRunStore,
  type RunStore,
  type Scheduler,
  type ScheduleTable,
  startScheduler,
} from "../src/scheduler/index.ts";

const dir = mkdtempSync(join(tmpdir(), "scheduler-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let dbCount = 0;
const freshDb = () => join(dir, `runs-${++dbCount}.sqlite`);

const T0 = Date.parse("2024-03-01T12:00:00.000Z");

interface Fired {
  schedule: string;
  slotMs: number;
  atMs: number;
  replica: string;
}

interface Running {
  scheduler: Scheduler;
  runs: RunStore;
  fired: Fired[];
  logs: string[];
  stop(): Promise<void>;
}

function run(
  clock: ManualClock,
  dbPath: string,
  table: ScheduleTable,
  opts: { replica?: string; sink?: Fired[]; failWhen?: (f: Fired) => boolean; busyTimeoutMs?: number } = {},
): Running {
  const runs = openRunStore({ path: dbPath, busyTimeoutMs: opts.busyTimeoutMs });
  const fired = opts.sink ?? [];
  const logs: string[] = [];
  const replica = opts.replica ?? "r1";
  const scheduler = startScheduler({
    schedules: normalizeSchedules(table),
    runs,
    clock,
    replicaId: replica,
    log: createLogger({ format: "text", level: "debug", write: (l) => logs.push(l) }),
    fire: async (schedule, slotMs) => {
      const f = { schedule: schedule.key, slotMs, atMs: clock.now(), replica };
      if (opts.failWhen?.(f)) throw new Error("broker unavailable");
      fired.push(f);
    },
  });
  return {
    scheduler,
    runs,
    fired,
    logs,
    async stop() {
      await scheduler.stop();
      runs.close();
    },
  };
}

/** Moves the clock and waits until every loop has done its work and sleeps again. */
async function moveTo(clock: ManualClock, ms: number, loops = 1): Promise<void> {
  clock.set(ms);
  await clock.whenSleeping(loops);
}

describe("one scheduler", () => {
  test("fires a new interval schedule at once, then on every slot and never between", async () => {
    const clock = createManualClock(T0 + 400);
    const s = run(clock, freshDb(), { tick: { task: "ns:tick", intervalSec: 10 } });
    await clock.whenSleeping();
    expect(s.fired.map((f) => f.slotMs)).toEqual([T0]);
    expect(s.scheduler.nextSlotMs()).toBe(T0 + 10_000);

    await moveTo(clock, T0 + 9_999);
    expect(s.fired).toHaveLength(1);
    await moveTo(clock, T0 + 10_000);
    await moveTo(clock, T0 + 15_000);
    await moveTo(clock, T0 + 20_003);
    expect(s.fired.map((f) => f.slotMs - T0)).toEqual([0, 10_000, 20_000]);
    expect(s.fired.map((f) => f.atMs - T0)).toEqual([400, 10_000, 20_003]);
    await s.stop();
  });

  test("crontab schedules fire on their minutes", async () => {
    const clock = createManualClock(T0 + 30_000);
    const s = run(clock, freshDb(), { m: { task: "ns:m", crontab: "*/2 * * * *" } });
    await clock.whenSleeping();
    expect(s.fired).toHaveLength(1); // first run, at once
    expect(s.scheduler.nextSlotMs()).toBe(T0 + 120_000);
    await moveTo(clock, T0 + 60_000);
    expect(s.fired).toHaveLength(1);
    await moveTo(clock, T0 + 120_000);
    await moveTo(clock, T0 + 240_500);
    expect(s.fired.slice(1).map((f) => new Date(f.slotMs).toISOString())).toEqual([
      "2024-03-01T12:02:00.000Z",
      "2024-03-01T12:04:00.000Z",
    ]);
    await s.stop();
  });

  test("a restart neither double-fires nor skips", async () => {
    const clock = createManualClock(T0);
    const db = freshDb();
    const table: ScheduleTable = {
      tick: { task: "ns:tick", intervalSec: 60 },
      cron: { task: "ns:cron", crontab: "* * * * *" },
    };
    const a = run(clock, db, table);
    await clock.whenSleeping();
    await moveTo(clock, T0 + 60_000);
    expect(a.fired.map((f) => `${f.schedule}@${(f.slotMs - T0) / 1000}`).sort()).toEqual([
      "cron@0",
      "cron@60",
      "tick@0",
      "tick@60",
    ]);
    await a.stop();

    // Restart half a minute later: nothing is due again, and the next slots are kept, not reset.
    clock.set(T0 + 90_000);
    const b = run(clock, db, table);
    await clock.whenSleeping();
    expect(b.fired).toHaveLength(0);
    expect(b.scheduler.nextSlotMs()).toBe(T0 + 120_000);
    await moveTo(clock, T0 + 120_000);
    expect(b.fired.map((f) => `${f.schedule}@${(f.slotMs - T0) / 1000}`).sort()).toEqual(["cron@120", "tick@120"]);

    // Restarting again right after a fire, still within the slot's second: no second run of it.
    await b.stop();
    clock.set(T0 + 120_300);
    const c = run(clock, db, table);
    await clock.whenSleeping();
    expect(c.fired).toHaveLength(0);
    await c.stop();
  });

  test("missed slots are not caught up after downtime", async () => {
    const clock = createManualClock(T0);
    const db = freshDb();
    const table: ScheduleTable = { tick: { task: "ns:tick", intervalSec: 10 } };
    const a = run(clock, db, table);
    await clock.whenSleeping();
    await a.stop();

    clock.set(T0 + 95_000); // slots 10..90 s missed
    const b = run(clock, db, table);
    await clock.whenSleeping();
    expect(b.fired).toHaveLength(0);
    await moveTo(clock, T0 + 100_000);
    expect(b.fired.map((f) => f.slotMs - T0)).toEqual([100_000]);
    await b.stop();
  });

  test("a changed definition runs at the next opportunity, then keeps its own slots", async () => {
    const clock = createManualClock(T0);
    const db = freshDb();
    const a = run(clock, db, { nightly: { task: "ns:report", crontab: "0 3 * * *", kwargs: { full: false } } });
    await clock.whenSleeping();
    await a.stop();

    clock.set(T0 + 3_600_000);
    const b = run(clock, db, { nightly: { task: "ns:report", crontab: "0 3 * * *", kwargs: { full: true } } });
    await clock.whenSleeping();
    expect(b.fired.map((f) => f.slotMs)).toEqual([T0 + 3_600_000]);
    expect(b.scheduler.nextSlotMs()).toBe(Date.parse("2024-03-02T03:00:00Z"));
    await b.stop();

    // Same (changed) definition again: no extra run.
    const c = run(clock, db, { nightly: { task: "ns:report", crontab: "0 3 * * *", kwargs: { full: true } } });
    await clock.whenSleeping();
    expect(c.fired).toHaveLength(0);
    await c.stop();
  });

  test("a failed produce loses only its slot (at most once) and is reported at the next start", async () => {
    const clock = createManualClock(T0);
    const db = freshDb();
    const table: ScheduleTable = { tick: { task: "ns:tick", intervalSec: 5 } };
    const a = run(clock, db, table, { failWhen: (f) => f.slotMs === T0 + 5_000 });
    await clock.whenSleeping();
    await moveTo(clock, T0 + 5_000);
    expect(a.logs.some((l) => l.includes("schedule_fire_failed"))).toBe(true);
    await a.stop();

    const b = run(clock, db, table);
    await clock.whenSleeping();
    expect(b.logs.some((l) => l.includes("schedule_slot_unproduced"))).toBe(true);
    expect(b.fired).toHaveLength(0); // the lost slot is not retried
    await moveTo(clock, T0 + 10_000);
    expect(b.fired.map((f) => f.slotMs - T0)).toEqual([10_000]);
    expect(b.runs.read("tick")).toMatchObject({ lastSlotMs: T0 + 10_000, producedAtMs: T0 + 10_000, claimedBy: "r1" });
    await b.stop();
  });

  test("a locked store delays the slot instead of stopping the scheduler", async () => {
    const clock = createManualClock(T0);
    const db = freshDb();
    const s = run(clock, db, { tick: { task: "ns:tick", intervalSec: 5 } }, { busyTimeoutMs: 20 });
    await clock.whenSleeping();
    // Another process holds the write lock (as a stuck replica or a backup tool might).
    const other = new Database(db);
    other.exec("BEGIN IMMEDIATE");
    await moveTo(clock, T0 + 5_000);
    expect(s.logs.some((l) => l.includes("schedule_claim_failed"))).toBe(true);
    expect(s.fired).toHaveLength(1);
    other.exec("COMMIT");
    other.close();
    await moveTo(clock, T0 + 6_000); // the retry pause
    expect(s.fired.map((f) => [f.slotMs - T0, f.atMs - T0])).toEqual([
      [0, 0],
      [5_000, 6_000],
    ]);
    await s.stop();
  });
});

describe("two schedulers sharing one store", () => {
  test("every slot fires exactly once over many slots", async () => {
    const clock = createManualClock(T0);
    const db = freshDb();
    const table: ScheduleTable = {
      fast: { task: "ns:fast", intervalSec: 1 },
      slow: { task: "ns:slow", intervalSec: 7 },
      cron: { task: "ns:cron", crontab: "* * * * *" },
    };
    const fired: Fired[] = [];
    const a = run(clock, db, table, { replica: "a", sink: fired });
    const b = run(clock, db, table, { replica: "b", sink: fired });
    await clock.whenSleeping(2);
    // Uneven steps, so sometimes a slot is exactly now and sometimes passed; never longer than the
    // shortest interval, as a longer jump would (rightly) skip slots as missed.
    const steps = [300, 700, 1000, 250, 750, 500];
    let t = T0;
    for (let i = 0; i < 300; i++) await moveTo(clock, (t += steps[i % steps.length]!), 2);
    await a.stop();
    await b.stop();

    const end = t;
    for (const key of ["fast", "slow", "cron"]) {
      const slots = fired.filter((f) => f.schedule === key).map((f) => f.slotMs);
      expect(new Set(slots).size).toBe(slots.length); // never twice
      const step = key === "fast" ? 1000 : key === "slow" ? 7000 : 60_000;
      // ... and never skipped: consecutive slots one interval apart, up to the end.
      for (let i = 1; i < slots.length; i++) expect(slots[i]! - slots[i - 1]!).toBe(step);
      expect(end - slots[slots.length - 1]!).toBeLessThan(step);
    }
    expect(fired.filter((f) => f.schedule === "fast").length).toBeGreaterThan(170);
    expect(new Set(fired.map((f) => f.replica)).size).toBe(2);
  });
});
