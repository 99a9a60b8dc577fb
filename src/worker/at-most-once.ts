// The at-most-once store: before an at-most-once activation runs, its id is
// added atomically with a time-to-live; if the id is already there (another
// run, maybe by a worker that crashed mid-task), the task is skipped. A local
// SQLite file shared by every worker on the host; committed before the run.
import { Database } from "bun:sqlite";

export interface AtMostOnceStore {
  /** True if this call added the id (the caller may run the task); false if it was already present. */
  add(id: string, ttlSec: number): boolean;
  close(): void;
}

export function openAtMostOnceStore(path: string, nowMs: () => number = Date.now): AtMostOnceStore {
  const db = new Database(path, { create: true });
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec("CREATE TABLE IF NOT EXISTS at_most_once (id TEXT PRIMARY KEY, expires_at_ms INTEGER NOT NULL)");
  // An expired entry is taken over; a live one blocks. One statement, so atomic across processes.
  const add = db.prepare(
    `INSERT INTO at_most_once (id, expires_at_ms) VALUES (?1, ?2)
     ON CONFLICT(id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms WHERE at_most_once.expires_at_ms <= ?3`,
  );
  const prune = db.prepare("DELETE FROM at_most_once WHERE expires_at_ms <= ?1");
  prune.run(nowMs());
  let adds = 0;
  return {
    add(id, ttlSec) {
      const now = nowMs();
      if (++adds % 1000 === 0) prune.run(now);
      return add.run(id, now + ttlSec * 1000, now).changes === 1;
    },
    close() {
      db.close();
    },
  };
}
