// The inflight database's layout and connection settings. Every hot query is
// an index seek: claims walk a partial index over Pending rows in arrival
// order (`seq`), upkeep walks small partial indexes of the state it moves.
import type { Database } from "bun:sqlite";
import { KAFKA_PARTITIONS_DDL } from "./kafka-offsets.ts";

/** The WAL bound when none is configured (config store.wal_max_bytes). */
export const DEFAULT_WAL_MAX_BYTES = 64 * 1024 * 1024;

/** Bump when the DDL below changes incompatibly. */
export const SCHEMA_VERSION = 1;

const DDL = `
CREATE TABLE IF NOT EXISTS inflight (
  seq INTEGER PRIMARY KEY,            -- arrival order: claims are oldest-first by seq
  id TEXT NOT NULL UNIQUE,
  state INTEGER NOT NULL,             -- STATE_CODE
  namespace TEXT NOT NULL,
  taskname TEXT NOT NULL,
  application TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER,
  delay_until_ms INTEGER,
  processing_deadline_ms INTEGER,
  processing_deadline_duration_s INTEGER NOT NULL,
  processing_attempts INTEGER NOT NULL DEFAULT 0,
  at_most_once INTEGER NOT NULL,
  on_attempts_exceeded INTEGER NOT NULL,
  claim_expires_ms INTEGER,           -- push mode lease
  kafka_topic TEXT,
  kafka_partition INTEGER,
  kafka_offset INTEGER,
  activation BLOB NOT NULL            -- original bytes, served back unchanged
);
-- Retry/Failure/Complete sweeps. Partial, so the hot transitions (insert,
-- claim, complete) never touch it; every other state has its own index below.
DROP INDEX IF EXISTS inflight_state; -- an early layout had it on every row
CREATE INDEX IF NOT EXISTS inflight_finished ON inflight(state) WHERE state >= 5;
-- Claims: one per filter shape (none, application, application+namespace).
CREATE INDEX IF NOT EXISTS inflight_pending ON inflight(seq) WHERE state = 1;
CREATE INDEX IF NOT EXISTS inflight_pending_app ON inflight(application, seq) WHERE state = 1;
CREATE INDEX IF NOT EXISTS inflight_pending_app_ns ON inflight(application, namespace, seq) WHERE state = 1;
-- Upkeep.
CREATE INDEX IF NOT EXISTS inflight_pending_expires ON inflight(expires_at_ms) WHERE state = 1 AND expires_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS inflight_pending_attempts ON inflight(processing_attempts) WHERE state = 1 AND processing_attempts > 0;
CREATE INDEX IF NOT EXISTS inflight_delay ON inflight(delay_until_ms) WHERE state = 2;
CREATE INDEX IF NOT EXISTS inflight_processing ON inflight(processing_deadline_ms) WHERE state = 3;
CREATE INDEX IF NOT EXISTS inflight_claimed ON inflight(claim_expires_ms) WHERE state = 4;

-- Idempotency keys of stored activations (idempotency-keys.ts): a second
-- activation with a live key is dropped at ingest, even after the first one's
-- row is gone. Keys expire after store.idempotency_window_sec; upkeep sweeps them.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  key TEXT PRIMARY KEY,               -- application + NUL + the producer's key
  expires_at_ms INTEGER NOT NULL,
  activation_id TEXT NOT NULL         -- the activation that claimed the key
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys(expires_at_ms);

-- Small facts about the store itself (the disk guard's write probe).
CREATE TABLE IF NOT EXISTS store_meta (
  key TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
  id TEXT PRIMARY KEY,
  namespace TEXT NOT NULL,
  taskname TEXT NOT NULL,
  application TEXT NOT NULL,
  dead_lettered_at_ms INTEGER NOT NULL,
  activation BLOB NOT NULL
) WITHOUT ROWID;
`;

/**
 * Connection settings, then the schema. auto_vacuum must be chosen before the
 * first table exists, so it is set first (a no-op on an existing file).
 */
export function prepareDatabase(
  db: Database,
  synchronous: "normal" | "full",
  walMaxBytes: number = DEFAULT_WAL_MAX_BYTES,
): void {
  db.run("PRAGMA auto_vacuum = INCREMENTAL");
  db.run("PRAGMA journal_mode = WAL");
  db.run(`PRAGMA synchronous = ${synchronous === "full" ? "FULL" : "NORMAL"}`);
  db.run("PRAGMA busy_timeout = 5000");
  db.run("PRAGMA temp_store = MEMORY");
  db.run("PRAGMA cache_size = -65536"); // 64 MB: keeps the claim indexes hot
  // Checkpoints normally happen off the event loop (checkpointer.ts), which
  // keeps the WAL near walMaxBytes; this inline auto-checkpoint at twice that
  // is only the fallback should that thread fall behind. The size limit keeps
  // a reset WAL's file allocated up to the bound, so rewriting it from the
  // start allocates no new blocks (and needs no free space: disk.ts).
  db.run(`PRAGMA wal_autocheckpoint = ${Math.max(1000, Math.ceil((2 * walMaxBytes) / 4096))}`);
  db.run(`PRAGMA journal_size_limit = ${Math.max(1 << 20, Math.floor(walMaxBytes))}`);
  db.exec(DDL);
  db.exec(KAFKA_PARTITIONS_DDL);
  const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  if (version === 0) db.run(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  else if (version !== SCHEMA_VERSION) {
    throw new Error(`inflight database has schema version ${version}, this build expects ${SCHEMA_VERSION}`);
  }
}
