// Moves the rows of the reference broker's SQLite store into ours, in the same
// file. Sentry's taskbroker keeps its activations in a table named
// `inflight_taskactivations` (layout in docs/spec/upstream-sqlite.md); an
// operator who swaps that broker for this one points the store path at the
// same file (self-hosted: TASKBROKER_DB_PATH=/opt/sqlite/taskbroker-activations.sqlite),
// so the store detects the table when it opens and moves its rows into
// `inflight` before anything is served: never silently ignored.
//
// Crash safety: rows move in batches, each batch one transaction that inserts
// the rows into `inflight` and deletes them from the old table. A kill -9 at
// any point rolls back at most the batch in flight; the next start-up carries
// on from the rows still in the old table, so nothing is lost and nothing is
// moved twice. The old table is left in place, empty (as are the reference
// broker's migration records), so going back to that broker finds a valid,
// empty store, and coming forward again moves whatever it stored meanwhile.
import type { Database } from "bun:sqlite";
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema, type TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { Logger } from "../log.ts";
import { STATE_CODE, type ActivationState } from "./types.ts";

export const UPSTREAM_TABLE = "inflight_taskactivations";

/** The reference broker's status strings and the state each becomes here. */
const STATUS: Record<string, ActivationState> = {
  Pending: "pending",
  Claimed: "claimed",
  Processing: "processing",
  Delay: "delay",
  Retry: "retry",
  Failure: "failure",
  Complete: "complete",
};

/** The migration cannot proceed; the message (one line) says why and what to do. Nothing was moved. */
export class UpstreamMigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UpstreamMigrationError";
  }
}

export interface UpstreamMigrationReport {
  /** The old table exists (possibly empty). */
  found: boolean;
  /** Rows moved by this run, per state here. */
  moved: Partial<Record<ActivationState, number>>;
  total: number;
  /** Rows whose id was already in `inflight` (kept as they were there; the old copy dropped). */
  alreadyPresent: number;
}

export interface UpstreamMigrationOptions {
  log: Logger;
  /** Rows per transaction. Default 2000. */
  batchRows?: number;
  /** Called after each committed batch (progress; tests). */
  onBatch?: (movedSoFar: number, remaining: number) => void;
  /** Now, unix ms (tests). */
  now?: () => number;
}

/** Columns of the old table, newest layout; older files lack the later ones (defaults below). */
interface UpstreamRow {
  rowid: number;
  id: string;
  activation: Uint8Array;
  added_at: number;
  processing_attempts: number;
  expires_at: number | null;
  processing_deadline_duration: number;
  processing_deadline: number | null;
  status: string;
  at_most_once: number;
  namespace: string | null;
  delay_until: number | null;
  on_attempts_exceeded: number;
  received_at: number;
  taskname: string;
  application: string;
  claim_expires_at: number | null;
}

/** Columns added by the reference broker's later migrations, with the default an older file implies. */
const LATER_COLUMNS: Record<string, string> = {
  delay_until: "NULL",
  on_attempts_exceeded: "1", // its default: discard
  received_at: "0",
  taskname: "''",
  application: "''",
  claim_expires_at: "NULL",
};

const seconds = (v: number | null | undefined): number | null => (v === null || v === undefined ? null : v * 1000);

/** True when the file holds the reference broker's table. */
export function hasUpstreamTable(db: Database): boolean {
  return db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(UPSTREAM_TABLE) !== null;
}

/**
 * Moves every row of the old table into `inflight` (which must exist:
 * prepareDatabase ran). Throws UpstreamMigrationError, before moving
 * anything, when the old table holds a status this broker cannot map.
 */
export function migrateUpstreamStore(db: Database, opts: UpstreamMigrationOptions): UpstreamMigrationReport {
  const report: UpstreamMigrationReport = { found: false, moved: {}, total: 0, alreadyPresent: 0 };
  if (!hasUpstreamTable(db)) return report;
  report.found = true;
  const now = opts.now ?? Date.now;
  const batchRows = Math.max(1, opts.batchRows ?? 2000);

  const present = new Set(
    (db.query(`PRAGMA table_info(${UPSTREAM_TABLE})`).all() as Array<{ name: string }>).map((c) => c.name),
  );
  for (const required of ["id", "activation", "status", "processing_attempts", "processing_deadline_duration"]) {
    if (!present.has(required)) {
      throw new UpstreamMigrationError(
        `${UPSTREAM_TABLE} in this store has no column ${required}: not a taskbroker store this broker knows; move the file aside (or point store.sqlite.path elsewhere) and start again`,
      );
    }
  }
  const remainingQuery = db.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${UPSTREAM_TABLE}`);
  let remaining = remainingQuery.get()!.n;
  if (remaining === 0) return report;

  const statuses = db
    .query<{ status: string; n: number }, []>(`SELECT status, count(*) AS n FROM ${UPSTREAM_TABLE} GROUP BY status`)
    .all();
  const unknown = statuses.filter((s) => !(s.status in STATUS));
  if (unknown.length > 0) {
    throw new UpstreamMigrationError(
      `${UPSTREAM_TABLE} holds ${unknown.map((s) => `${s.n} row${s.n === 1 ? "" : "s"} with status '${s.status}'`).join(", ")}, which this broker cannot map; nothing was moved: drain that broker first (stop its consumers, let its workers finish), or delete those rows, then start again`,
    );
  }
  opts.log.info("upstream_store_found", {
    table: UPSTREAM_TABLE,
    rows: remaining,
    ...Object.fromEntries(statuses.map((s) => [s.status.toLowerCase(), s.n])),
  });

  const select = db.query<UpstreamRow, [number]>(
    `SELECT rowid, id, activation, added_at, processing_attempts, expires_at, processing_deadline_duration,
       processing_deadline, status, at_most_once, namespace,
       ${Object.entries(LATER_COLUMNS)
         .map(([c, d]) => (present.has(c) ? c : `${d} AS ${c}`))
         .join(", ")}
     FROM ${UPSTREAM_TABLE} ORDER BY rowid LIMIT ?`,
  );
  const insert = db.query(
    `INSERT OR IGNORE INTO inflight (id, state, namespace, taskname, application, received_at_ms, expires_at_ms,
       delay_until_ms, processing_deadline_ms, processing_deadline_duration_s, processing_attempts, at_most_once,
       on_attempts_exceeded, claim_expires_ms, activation)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const remove = db.query(`DELETE FROM ${UPSTREAM_TABLE} WHERE rowid = ?`);

  const moveBatch = db.transaction((rows: UpstreamRow[], nowMs: number) => {
    for (const r of rows) {
      const m = mapRow(r, nowMs);
      const changes = insert.run(
        r.id,
        STATE_CODE[m.state],
        m.namespace,
        m.taskname,
        m.application,
        m.receivedAtMs,
        seconds(r.expires_at),
        m.delayUntilMs,
        m.processingDeadlineMs,
        r.processing_deadline_duration,
        r.processing_attempts,
        r.at_most_once ? 1 : 0,
        r.on_attempts_exceeded,
        m.claimExpiresMs,
        r.activation,
      ).changes;
      if (changes > 0) report.moved[m.state] = (report.moved[m.state] ?? 0) + 1;
      else report.alreadyPresent++;
      remove.run(r.rowid);
    }
  });

  const started = now();
  let lastProgress = started;
  for (;;) {
    const rows = select.all(batchRows);
    if (rows.length === 0) break;
    moveBatch.immediate(rows, now());
    report.total += rows.length;
    remaining -= rows.length;
    opts.onBatch?.(report.total, Math.max(0, remaining));
    if (now() - lastProgress >= 5000) {
      lastProgress = now();
      opts.log.info("upstream_store_migrating", { moved: report.total, remaining: Math.max(0, remaining) });
    }
  }
  opts.log.info("upstream_store_migrated", {
    table: UPSTREAM_TABLE,
    rows: report.total,
    already_present: report.alreadyPresent,
    elapsed_ms: now() - started,
    ...report.moved,
  });
  return report;
}

interface MappedRow {
  state: ActivationState;
  namespace: string;
  taskname: string;
  application: string;
  receivedAtMs: number;
  delayUntilMs: number | null;
  processingDeadlineMs: number | null;
  claimExpiresMs: number | null;
}

/** One old row in this store's terms. Times there are unix seconds; here unix ms. Pure. */
export function mapRow(r: Omit<UpstreamRow, "rowid">, nowMs: number): MappedRow {
  let decoded: TaskActivation | null | undefined;
  const activation = (): TaskActivation | null => {
    if (decoded === undefined) {
      try {
        decoded = fromBinary(TaskActivationSchema, r.activation);
      } catch {
        decoded = null; // unreadable bytes: keep the columns as they are (a worker will report it)
      }
    }
    return decoded;
  };
  // Rows written before the reference broker added these columns carry
  // defaults there ('' / NULL / 0); the activation itself has the values.
  const namespace = r.namespace || activation()?.namespace || "";
  const taskname = r.taskname || activation()?.taskname || "";
  const application = r.application || activation()?.application || "";
  let receivedAtMs = seconds(r.received_at) ?? 0;
  if (receivedAtMs <= 0) {
    const at = activation()?.receivedAt;
    receivedAtMs = at ? Number(at.seconds) * 1000 + Math.floor(at.nanos / 1e6) : r.added_at * 1000;
  }
  let state = STATUS[r.status]!;
  const delayUntilMs = seconds(r.delay_until);
  // A Delay row without its time cannot wait for anything: it is due.
  if (state === "delay" && delayUntilMs === null) state = "pending";
  const processingDeadlineMs =
    state === "processing" ? (seconds(r.processing_deadline) ?? nowMs + r.processing_deadline_duration * 1000) : null;
  // A claim without an expiry (or one the old broker held when it stopped) ends at once: upkeep makes it Pending.
  const claimExpiresMs = state === "claimed" ? (seconds(r.claim_expires_at) ?? nowMs) : null;
  return { state, namespace, taskname, application, receivedAtMs, delayUntilMs, processingDeadlineMs, claimExpiresMs };
}
