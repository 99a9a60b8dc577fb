// The store side of upkeep (docs/spec/broker.md "Upkeep"): each step is one statement
// (or a few) in one transaction over a small partial index, and returns how
// many rows it moved. The loop that orders them is ../upkeep/loop.ts.
import { STATE_BY_CODE, type StoreContext } from "./context.ts";
import { DELETABLE_COMPLETE_SQL } from "./kafka-offsets.ts";
import { STATE_CODE, type UpkeepRow, type UpkeepSteps } from "./types.ts";

const S = STATE_CODE;

export function createUpkeepSteps(ctx: StoreContext): UpkeepSteps {
  const { db } = ctx;
  const rowsInState = db.query<UpkeepRow, [number, number]>(
    `SELECT id, namespace, taskname, application, on_attempts_exceeded AS onAttemptsExceeded, activation
     FROM inflight INDEXED BY inflight_finished WHERE state >= 5 AND state = ? LIMIT ?`,
  );
  const findRow = db.query<{ seq: number; state: number }, [string]>("SELECT seq, state FROM inflight WHERE id = ?");
  const completeRow = db.query("UPDATE inflight SET state = ?2 WHERE seq = ?1");

  const deadlineFail = db.query(
    `UPDATE inflight INDEXED BY inflight_processing SET state = ${S.failure}, processing_deadline_ms = NULL
     WHERE state = ${S.processing} AND processing_deadline_ms < ? AND at_most_once = 1`,
  );
  // A deadline reset does not consume a retry: it counts processing_attempts instead.
  const deadlineReset = db.query(
    `UPDATE inflight INDEXED BY inflight_processing SET state = ${S.pending}, processing_deadline_ms = NULL, processing_attempts = processing_attempts + 1
     WHERE state = ${S.processing} AND processing_deadline_ms < ?`,
  );
  const claimExpire = db.query(
    `UPDATE inflight INDEXED BY inflight_claimed SET state = ${S.pending}, claim_expires_ms = NULL WHERE state = ${S.claimed} AND claim_expires_ms < ?`,
  );
  // "processing_attempts > 0" is spelled out so SQLite can use the partial index.
  const attemptsFail = db.query(
    `UPDATE inflight INDEXED BY inflight_pending_attempts SET state = ${S.failure}
     WHERE state = ${S.pending} AND processing_attempts > 0 AND processing_attempts >= ?`,
  );
  const expiredDelete = db.query(
    `DELETE FROM inflight WHERE seq IN (SELECT seq FROM inflight INDEXED BY inflight_pending_expires
       WHERE state = ${S.pending} AND expires_at_ms IS NOT NULL AND expires_at_ms <= ? LIMIT ?)`,
  );
  const undelayRows = db.query(
    `UPDATE inflight INDEXED BY inflight_delay SET state = ${S.pending} WHERE state = ${S.delay} AND delay_until_ms <= ?`,
  );
  const discard = db.query(
    `UPDATE inflight INDEXED BY inflight_finished SET state = ${S.complete}
     WHERE state >= 5 AND state = ${S.failure} AND on_attempts_exceeded != 2`,
  );
  // Complete rows from Kafka stay until their offsets are known committed (kafka-offsets.ts).
  const deleteDone = db.query(
    `DELETE FROM inflight WHERE seq IN (SELECT seq FROM inflight INDEXED BY inflight_finished
       WHERE state >= 5 AND state = ${S.complete} AND ${DELETABLE_COMPLETE_SQL} LIMIT ?)`,
  );

  return {
    retryRows: (limit) => rowsInState.all(S.retry, limit),
    failureRows: (limit) => rowsInState.all(S.failure, limit),

    markComplete(ids) {
      return ctx.transaction((delta) => {
        let n = 0;
        for (const id of ids) {
          const row = findRow.get(id);
          const from = row ? STATE_BY_CODE[row.state] : undefined;
          if (!row || (from !== "retry" && from !== "failure")) continue;
          completeRow.run(row.seq, S.complete);
          delta.move(from, "complete", 1);
          n++;
        }
        return n;
      });
    },

    resetExpiredDeadlines(nowMs) {
      return ctx.transaction((delta) => {
        const failed = deadlineFail.run(nowMs).changes;
        const reset = deadlineReset.run(nowMs).changes;
        delta.move("processing", "failure", failed);
        delta.move("processing", "pending", reset);
        return { reset, failed };
      });
    },

    expireClaims(nowMs) {
      return ctx.transaction((delta) => {
        const n = claimExpire.run(nowMs).changes;
        delta.move("claimed", "pending", n);
        return n;
      });
    },

    failExhaustedAttempts(maxAttempts) {
      return ctx.transaction((delta) => {
        const n = attemptsFail.run(maxAttempts).changes;
        delta.move("pending", "failure", n);
        return n;
      });
    },

    removeExpired(nowMs, limit = -1) {
      return ctx.transaction((delta) => {
        const n = expiredDelete.run(nowMs, limit).changes;
        delta.add("pending", -n);
        return n;
      });
    },

    undelay(nowMs) {
      return ctx.transaction((delta) => {
        const n = undelayRows.run(nowMs).changes;
        delta.move("delay", "pending", n);
        return n;
      });
    },

    discardFailures() {
      return ctx.transaction((delta) => {
        const n = discard.run().changes;
        delta.move("failure", "complete", n);
        return n;
      });
    },

    deleteComplete(limit = -1) {
      return ctx.transaction((delta) => {
        const n = deleteDone.run(limit).changes;
        delta.add("complete", -n);
        return n;
      });
    },

    reclaimSpace(maxPages) {
      const before = (db.query("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count;
      if (before === 0) return 0;
      // 0 or less: every free page (store.sqlite.vacuum_page_count unset).
      db.query(maxPages > 0 ? `PRAGMA incremental_vacuum(${Math.floor(maxPages)})` : "PRAGMA incremental_vacuum").all();
      const after = (db.query("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count;
      return before - after;
    },

    freePageShare() {
      const free = (db.query("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count;
      const total = (db.query("PRAGMA page_count").get() as { page_count: number }).page_count;
      return total > 0 ? free / total : 0;
    },

    fullVacuum() {
      const t0 = performance.now();
      db.run("VACUUM");
      return performance.now() - t0;
    },
  };
}
