// The reference broker's SQLite store, built the way its migrations build it
// (the six steps of its migrations/sqlite folder, written here from their
// facts: columns, types, defaults, the pending index), and filled with rows
// as that broker writes them (times in unix seconds, statuses as text). Used
// by test/store-upstream-migration.test.ts; run as a script it migrates such a
// file with small, slowed batches and prints each one, so the test can kill -9
// it mid-migration:  bun test/upstream-store.fixture.ts <db> <batchRows> <pauseMs>
import { Database } from "bun:sqlite";
import { create, toBinary } from "@bufbuild/protobuf";
import { OnAttemptsExceeded, TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

const SCHEMA = [
  // 0001: the table and the index its claims walk.
  `CREATE TABLE IF NOT EXISTS inflight_taskactivations (
     id TEXT NOT NULL PRIMARY KEY,
     activation BLOB NOT NULL,
     partition INTEGER NOT NULL,
     offset INTEGER NOT NULL,
     added_at INTEGER NOT NULL,
     processing_attempts INTEGER NOT NULL,
     expires_at INTEGER,
     processing_deadline_duration INTEGER NOT NULL,
     processing_deadline INTEGER,
     status TEXT NOT NULL,
     at_most_once INTEGER NOT NULL DEFAULT 0,
     namespace TEXT
   ) STRICT`,
  `CREATE INDEX idx_pending_activation ON inflight_taskactivations (status, added_at, namespace, id)`,
  // 0002 .. 0006: columns added later, each with the default older rows get.
  `ALTER TABLE inflight_taskactivations ADD delay_until INTEGER`,
  `ALTER TABLE inflight_taskactivations ADD on_attempts_exceeded INTEGER NOT NULL DEFAULT 1`,
  `ALTER TABLE inflight_taskactivations ADD received_at INTEGER NOT NULL DEFAULT 0`,
  `ALTER TABLE inflight_taskactivations ADD taskname TEXT NOT NULL DEFAULT ''`,
  `ALTER TABLE inflight_taskactivations ADD COLUMN application TEXT NOT NULL DEFAULT ''`,
  `ALTER TABLE inflight_taskactivations ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0`,
  `ALTER TABLE inflight_taskactivations ADD COLUMN claim_expires_at INTEGER`,
  // The migration runner's own bookkeeping table, as that broker's files have it.
  `CREATE TABLE IF NOT EXISTS _sqlx_migrations (
     version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
     success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)`,
];

export interface UpstreamRow {
  id: string;
  status: "Pending" | "Claimed" | "Processing" | "Delay" | "Retry" | "Failure" | "Complete" | string;
  namespace?: string | null;
  taskname?: string;
  application?: string;
  processingAttempts?: number;
  processingDeadline?: number | null;
  processingDeadlineDuration?: number;
  delayUntil?: number | null;
  claimExpiresAt?: number | null;
  expiresAt?: number | null;
  onAttemptsExceeded?: number;
  atMostOnce?: boolean;
  /** Leave the later columns at their defaults, as a row written before they existed. */
  oldStyle?: boolean;
}

export const nowSec = () => Math.floor(Date.now() / 1000);

/** The activation bytes of a row: what that broker consumed and serves back. */
export function activationBytes(
  id: string,
  namespace: string,
  taskname: string,
  application: string,
  maxAttempts = 3,
): Uint8Array {
  return toBinary(
    TaskActivationSchema,
    create(TaskActivationSchema, {
      id,
      namespace,
      taskname,
      application,
      receivedAt: { seconds: BigInt(nowSec() - 60), nanos: 0 },
      processingDeadlineDuration: 30n,
      retryState: { attempts: 0, maxAttempts, onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER },
    }),
  );
}

export function createUpstreamStore(path: string, rows: UpstreamRow[]): void {
  const db = new Database(path, { create: true });
  db.run("PRAGMA journal_mode = WAL");
  for (const sql of SCHEMA) db.run(sql);
  db.run(
    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (1, 'create', 1, x'00', 1)",
  );
  const insert = db.query(
    `INSERT INTO inflight_taskactivations (id, activation, partition, offset, added_at, received_at, processing_attempts,
       expires_at, delay_until, processing_deadline_duration, processing_deadline, claim_expires_at, status, at_most_once,
       application, namespace, taskname, on_attempts_exceeded, bucket)
     VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
  );
  const old = db.query(
    `INSERT INTO inflight_taskactivations (id, activation, partition, offset, added_at, processing_attempts,
       processing_deadline_duration, status, namespace) VALUES (?, ?, 0, ?, ?, ?, ?, ?, NULL)`,
  );
  const t = nowSec();
  db.transaction(() => {
    rows.forEach((r, i) => {
      const namespace = r.namespace ?? "upstream.ns";
      const taskname = r.taskname ?? "tests.upstream";
      const application = r.application ?? "tests";
      const bytes = activationBytes(r.id, namespace, taskname, application);
      const duration = r.processingDeadlineDuration ?? 30;
      if (r.oldStyle) {
        old.run(r.id, bytes, i, t - 60, r.processingAttempts ?? 0, duration, r.status);
        return;
      }
      insert.run(
        r.id,
        bytes,
        i,
        t - 60,
        t - 60,
        r.processingAttempts ?? 0,
        r.expiresAt ?? null,
        r.delayUntil ?? null,
        duration,
        r.processingDeadline ?? null,
        r.claimExpiresAt ?? null,
        r.status,
        r.atMostOnce ? 1 : 0,
        application,
        namespace,
        taskname,
        r.onAttemptsExceeded ?? 1,
      );
    });
  })();
  db.close();
}

if (import.meta.main) {
  const [path, batchRows, pauseMs] = process.argv.slice(2);
  const { prepareDatabase } = await import("../src/store/schema.ts");
  const { migrateUpstreamStore } = await import("../src/store/upstream-migration.ts");
  const { silentLogger } = await import("../src/log.ts");
  const db = new Database(path!);
  prepareDatabase(db, "normal");
  migrateUpstreamStore(db, {
    log: silentLogger,
    batchRows: Number(batchRows),
    onBatch: (moved, remaining) => {
      process.stdout.write(`batch ${moved} ${remaining}\n`);
      Bun.sleepSync(Number(pauseMs));
    },
  });
  db.close();
  process.stdout.write("done\n");
}
