// Run storage for the scheduler: one SQLite row per schedule holding the last
// claimed slot and the definition hash it was claimed under. Several scheduler
// replicas (threads or processes) may share one file: a claim is a
// read-decide-write inside a BEGIN IMMEDIATE transaction, which takes SQLite's
// write lock before reading, so two replicas can never both see a slot as free.
//
// Ordering chosen: claim first (committed), then produce; at most once per
// slot. A crash between the claim and the produce loses that slot's run (it is
// logged at the next start as `schedule_slot_unproduced`); producing first
// could double-fire after a crash and would let two replicas both produce.
import { Database } from "bun:sqlite";
import { claimable, type Plan, type RunRecord } from "./slots.ts";

export interface StoredRun extends RunRecord {
  firedAtMs: number;
  /** Set once the activation was handed to the broker/Kafka; null while outstanding (or lost). */
  producedAtMs: number | null;
  claimedBy: string;
}

export type ClaimResult =
  | { claimed: true; record: StoredRun }
  /** Someone else got there first, or the plan is stale: `record` is the store's current row. */
  | { claimed: false; record: StoredRun | null };

export interface RunStore {
  read(schedule: string): StoredRun | null;
  readAll(): Map<string, StoredRun>;
  /** Atomically claims `plan` for `schedule` if it is still claimable (see slots.ts `claimable`). */
  claim(schedule: string, hash: string, plan: Plan, nowMs: number, claimedBy: string): ClaimResult;
  markProduced(schedule: string, slotMs: number, nowMs: number): void;
  close(): void;
}

interface Row {
  schedule: string;
  definition_hash: string;
  last_slot_ms: number;
  fired_at_ms: number;
  produced_at_ms: number | null;
  claimed_by: string;
}

const toRun = (row: Row | null): StoredRun | null =>
  row === null
    ? null
    : {
        hash: row.definition_hash,
        lastSlotMs: row.last_slot_ms,
        firedAtMs: row.fired_at_ms,
        producedAtMs: row.produced_at_ms,
        claimedBy: row.claimed_by,
      };

export interface RunStoreOptions {
  path: string;
  /** How long a claim waits for another replica's transaction, in ms. Default 10000. */
  busyTimeoutMs?: number;
}

export function openRunStore(options: RunStoreOptions): RunStore {
  const db = new Database(options.path, { create: true, strict: true });
  db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 10_000))}`);
  db.exec("PRAGMA journal_mode = WAL");
  // A claim must survive power loss, or a restart could fire the slot again; claims are rare.
  db.exec("PRAGMA synchronous = FULL");
  db.exec(`CREATE TABLE IF NOT EXISTS schedule_runs (
    schedule TEXT PRIMARY KEY,
    definition_hash TEXT NOT NULL,
    last_slot_ms INTEGER NOT NULL,
    fired_at_ms INTEGER NOT NULL,
    produced_at_ms INTEGER,
    claimed_by TEXT NOT NULL
  )`);
  const selectOne = db.query<Row, [string]>("SELECT * FROM schedule_runs WHERE schedule = ?");
  const selectAll = db.query<Row, []>("SELECT * FROM schedule_runs");
  const upsert = db.query(
    `INSERT INTO schedule_runs (schedule, definition_hash, last_slot_ms, fired_at_ms, produced_at_ms, claimed_by)
     VALUES ($schedule, $hash, $slot, $now, NULL, $by)
     ON CONFLICT (schedule) DO UPDATE SET definition_hash = $hash, last_slot_ms = $slot, fired_at_ms = $now,
       produced_at_ms = NULL, claimed_by = $by`,
  );
  const produced = db.query(
    "UPDATE schedule_runs SET produced_at_ms = $now WHERE schedule = $schedule AND last_slot_ms = $slot",
  );

  const claimTx = db.transaction(
    (schedule: string, hash: string, plan: Plan, nowMs: number, by: string): ClaimResult => {
      const current = toRun(selectOne.get(schedule));
      if (!claimable(plan, hash, current)) return { claimed: false, record: current };
      upsert.run({ schedule, hash, slot: plan.slotMs, now: nowMs, by });
      return {
        claimed: true,
        record: { hash, lastSlotMs: plan.slotMs, firedAtMs: nowMs, producedAtMs: null, claimedBy: by },
      };
    },
  );

  return {
    read: (schedule) => toRun(selectOne.get(schedule)),
    readAll: () => new Map(selectAll.all().map((row) => [row.schedule, toRun(row)!])),
    claim: (schedule, hash, plan, nowMs, by) => claimTx.immediate(schedule, hash, plan, nowMs, by),
    markProduced: (schedule, slotMs, nowMs) => {
      produced.run({ schedule, slot: slotMs, now: nowMs });
    },
    close: () => db.close(),
  };
}
