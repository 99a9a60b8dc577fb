// Claims and worker status updates, with group commit: calls that arrive
// while a flush is scheduled are queued and executed together in ONE
// transaction (one WAL commit instead of one per call; docs/spec/facts.md
// measured ~7.4k single-claim transactions/s, which is the ceiling we avoid).
// Within a flush, status updates run before claims, so a SetTaskStatus with
// fetch_next sees its own row finished; claims with the same filter become one
// `UPDATE ... WHERE seq IN (SELECT ... ORDER BY seq LIMIT n) RETURNING`, where
// n adds up what every caller asked for (one row for GetTask, up to a
// stream's credit for streaming delivery), and the rows are handed out in
// arrival order: the oldest to the earliest caller.
import { OTHER_NAMESPACE, completionTotal, dispatchTotal, namespaceLabel } from "../metrics.ts";
import { rewriteRetryState } from "../activation/rewrite.ts";
import type { Logger } from "../log.ts";
import { STATE_BY_CODE, type Delta, type StoreContext } from "./context.ts";
import { storageFaultOf } from "./disk.ts";
import { STATE_CODE, type ClaimedActivation, type ClaimedRow, type ClaimFilter, type StatusUpdate } from "./types.ts";

interface QueuedClaim {
  application: string | undefined;
  namespace: string | undefined;
  /** Rows asked for. */
  want: number;
  /** claim() (one row or null) rather than claimMany() (a list). */
  single: boolean;
  /** Set inside the transaction, handed out after commit. */
  rows: ClaimedRow[];
  resolve(value: ClaimedActivation | null | ClaimedRow[]): void;
  reject(err: unknown): void;
}

const NO_ROWS: ClaimedRow[] = [];

interface QueuedStatuses {
  updates: StatusUpdate[];
  resolve(): void;
  reject(err: unknown): void;
}

export interface Dispatcher {
  claim(filter: ClaimFilter): Promise<ClaimedActivation | null>;
  /** Up to `max` rows, oldest first, in one statement shared with the flush's other claims. */
  claimMany(filter: ClaimFilter, max: number): Promise<ClaimedRow[]>;
  /** Processing -> Pending for claimed rows that were never sent (the stream closed first); not an attempt. */
  releaseUnsent(rows: readonly ClaimedRow[]): number;
  setStatus(update: StatusUpdate, fetchNext?: ClaimFilter): Promise<ClaimedActivation | null>;
  setStatuses(updates: StatusUpdate[]): Promise<void>;
  /** Runs whatever is queued now (close() uses it). */
  flush(): void;
  /** Counts one row handed out in `namespace` (taskbroker dispatch metric) that was claimed outside claim()/claimMany(). */
  countDispatch(namespace: string): void;
}

const P = STATE_CODE.pending;
const PROC = STATE_CODE.processing;

/** The claim statement for one filter shape; every variant seeks a partial index over Pending rows. */
function claimSql(shape: "any" | "app" | "app_ns"): string {
  const where =
    shape === "any" ? "" : shape === "app" ? "AND application = ?4" : "AND application = ?4 AND namespace = ?5";
  const index =
    shape === "any" ? "inflight_pending" : shape === "app" ? "inflight_pending_app" : "inflight_pending_app_ns";
  // INDEXED BY: without statistics SQLite may pick another index and sort; this one is already in seq order.
  return `UPDATE inflight
    SET state = ${PROC}, processing_deadline_ms = ?1 + processing_deadline_duration_s * 1000 + ?2, claim_expires_ms = NULL
    WHERE seq IN (SELECT seq FROM inflight INDEXED BY ${index} WHERE state = ${P} ${where}
                  AND (expires_at_ms IS NULL OR expires_at_ms > ?1) ORDER BY seq LIMIT ?3)
    RETURNING seq, id, namespace, activation`;
}

interface ClaimedDbRow extends ClaimedRow {
  namespace: string;
}

export function createDispatcher(ctx: StoreContext, groupCommitWindowMs: number, log: Logger): Dispatcher {
  const { db } = ctx;
  const claimAny = db.query<ClaimedDbRow, [number, number, number]>(claimSql("any"));
  const claimApp = db.query<ClaimedDbRow, [number, number, number, string]>(claimSql("app"));
  const claimAppNs = db.query<ClaimedDbRow, [number, number, number, string, string]>(claimSql("app_ns"));
  // Never sent, so not an attempt: processing_attempts stays as it was.
  const unsend = db.query(
    `UPDATE inflight SET state = ${P}, processing_deadline_ms = NULL WHERE seq = ? AND id = ? AND state = ${PROC}`,
  );
  const findRow = db.query<{ seq: number; state: number }, [string]>("SELECT seq, state FROM inflight WHERE id = ?");
  const readActivation = db.query<{ activation: Uint8Array }, [number]>(
    "SELECT activation FROM inflight WHERE seq = ?",
  );
  const finishRow = db.query(
    "UPDATE inflight SET state = ?, processing_deadline_ms = NULL, claim_expires_ms = NULL WHERE seq = ?",
  );
  const rewriteRow = db.query("UPDATE inflight SET activation = ? WHERE seq = ?");

  const unknownIds = completionTotal.labels("unknown_id");
  // Label lookups cost more than the increment. Keyed by namespace up to the
  // label cap (metrics.ts); past it every other namespace shares "_other".
  const dispatched = new Map<string, { inc(): void }>();
  const other = dispatchTotal.labels(OTHER_NAMESPACE);
  const countDispatch = (namespace: string) => {
    let c = dispatched.get(namespace);
    if (!c) {
      const label = namespaceLabel(namespace);
      if (label === OTHER_NAMESPACE) return other.inc();
      dispatched.set(namespace, (c = dispatchTotal.labels(label)));
    }
    c.inc();
  };

  let claims: QueuedClaim[] = [];
  let statuses: QueuedStatuses[] = [];
  let scheduled = false;

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    // setImmediate runs after the current I/O phase, so every request that
    // arrived in it shares this flush; a window > 0 trades latency for bigger batches.
    if (groupCommitWindowMs > 0) setTimeout(flush, groupCommitWindowMs);
    else setImmediate(flush);
  }

  /**
   * One worker outcome, row by row (applyStatuses batches the common case
   * first). Only rows a worker may hold (processing, pending after
   * a deadline reset, claimed) change; an unknown or already-finished id is a
   * no-op. COMPLETE only marks the row: upkeep deletes Complete rows in bulk,
   * which writes each page of the (random-order) id index once per pass
   * instead of once per flush, the dominant cost when deleting here.
   */
  function applyStatus(u: StatusUpdate, delta: Delta): void {
    const rewrite = u.status === "retry" && (u.maxAttempts !== undefined || u.delayOnRetry !== undefined);
    const row = findRow.get(u.id);
    const from = row ? STATE_BY_CODE[row.state] : undefined;
    if (!row || !from || (from !== "processing" && from !== "pending" && from !== "claimed")) {
      // The RPC layer counts outcomes by status; only the store knows an id was unknown.
      unknownIds.inc();
      return;
    }
    if (rewrite) {
      const stored = readActivation.get(row.seq);
      try {
        if (stored) rewriteRow.run(rewriteRetryState(stored.activation, u.maxAttempts, u.delayOnRetry), row.seq);
      } catch (err) {
        // Bytes that decoded at ingest always decode again; keep the retry even if not.
        log.warn("retry_state_rewrite_failed", { id: u.id, error: err });
      }
    }
    finishRow.run(STATE_CODE[u.status], row.seq);
    delta.move(from, u.status, 1);
  }

  // Batched status updates: the common case (a Processing row finishing
  // without a retry_state rewrite) as one UPDATE ... WHERE id IN (...) per
  // status and chunk, instead of one statement per update. Statements are
  // prepared per list length (at most BATCH of them per status).
  const BATCH = 64;
  const finishMany = new Map<number, ReturnType<typeof db.query<{ id: string }, (string | number)[]>>>();
  const finishManyStatement = (n: number) => {
    let q = finishMany.get(n);
    if (!q) {
      q = db.query<{ id: string }, (string | number)[]>(
        `UPDATE inflight SET state = ?1, processing_deadline_ms = NULL
         WHERE state = ${PROC} AND id IN (${Array.from({ length: n }, (_, i) => `?${i + 2}`).join(", ")}) RETURNING id`,
      );
      finishMany.set(n, q);
    }
    return q;
  };

  // Updates that carry the row's seq (streaming delivery remembers it for
  // each row it sent) find the row by rowid instead of probing the random-order
  // id index: ~2 us less per update (bench/store.ts). The id is matched too,
  // since a seq can be reused once its row is deleted; NOT INDEXED keeps
  // SQLite on the rowid (it still may use it, per its docs) rather than the id index.
  const finishBySeq = new Map<number, ReturnType<typeof db.query<{ id: string }, (string | number)[]>>>();
  const finishBySeqStatement = (n: number) => {
    let q = finishBySeq.get(n);
    if (!q) {
      const seqs = Array.from({ length: n }, (_, i) => `?${i + 2}`).join(", ");
      const ids = Array.from({ length: n }, (_, i) => `?${i + n + 2}`).join(", ");
      q = db.query<{ id: string }, (string | number)[]>(
        `UPDATE inflight NOT INDEXED SET state = ?1, processing_deadline_ms = NULL
         WHERE seq IN (${seqs}) AND state = ${PROC} AND id IN (${ids}) RETURNING id`,
      );
      finishBySeq.set(n, q);
    }
    return q;
  };

  /** Applies a flush's status updates in order-equivalent batches (see applyStatus for the rules). */
  function applyStatuses(updates: StatusUpdate[], delta: Delta): void {
    const simple: Record<string, string[]> = { complete: [], failure: [], retry: [] };
    let bySeq: Record<string, StatusUpdate[]> | null = null;
    const rest: StatusUpdate[] = [];
    for (const u of updates) {
      if (u.status === "retry" && (u.maxAttempts !== undefined || u.delayOnRetry !== undefined)) rest.push(u);
      else if (u.seq !== undefined) (bySeq ??= { complete: [], failure: [], retry: [] })[u.status]!.push(u);
      else simple[u.status]!.push(u.id);
    }
    if (bySeq !== null) {
      for (const status of ["complete", "failure", "retry"] as const) {
        const list = bySeq[status]!;
        for (let i = 0; i < list.length; i += BATCH) {
          const chunk = list.slice(i, i + BATCH);
          const args: (string | number)[] = [STATE_CODE[status]];
          for (const u of chunk) args.push(u.seq!);
          for (const u of chunk) args.push(u.id);
          const done = new Set<string>();
          for (const r of finishBySeqStatement(chunk.length).all(...args)) done.add(r.id);
          delta.move("processing", status, done.size);
          // Not found by seq (reset and re-claimed, finished, a repeat): by id, the row-by-row rules.
          for (const u of chunk) if (!done.delete(u.id)) simple[status]!.push(u.id);
        }
      }
    }
    for (const status of ["complete", "failure", "retry"] as const) {
      const ids = simple[status]!;
      for (let i = 0; i < ids.length; i += BATCH) {
        const chunk = ids.slice(i, i + BATCH);
        const done = new Set<string>();
        for (const r of finishManyStatement(chunk.length).all(STATE_CODE[status], ...chunk)) done.add(r.id);
        delta.move("processing", status, done.size);
        // Not Processing (pending after a deadline reset, claimed, unknown, or a
        // repeat of an id finished just above): one by one.
        for (const id of chunk) {
          if (!done.delete(id)) applyStatus({ id, status }, delta);
        }
      }
    }
    for (const u of rest) applyStatus(u, delta);
  }

  function claimGroup(group: QueuedClaim[], nowMs: number, delta: Delta): void {
    const { application, namespace } = group[0]!;
    let n = 0;
    for (const c of group) n += c.want;
    const rows =
      application === undefined
        ? claimAny.all(nowMs, ctx.graceMs, n)
        : namespace === undefined
          ? claimApp.all(nowMs, ctx.graceMs, n, application)
          : claimAppNs.all(nowMs, ctx.graceMs, n, application, namespace);
    if (rows.length === 0) return;
    // RETURNING order is unspecified: oldest rows go to the earliest caller.
    if (rows.length > 1) rows.sort((a, b) => a.seq - b.seq);
    delta.move("pending", "processing", rows.length);
    for (const r of rows) countDispatch(r.namespace);
    if (group.length === 1) {
      group[0]!.rows = rows;
      return;
    }
    let at = 0;
    for (const c of group) {
      if (at >= rows.length) break;
      c.rows = c.want === 1 ? [rows[at]!] : rows.slice(at, at + c.want);
      at += c.want;
    }
  }

  let flushing = false;
  function flush(): void {
    // Called again from a commit's pending watcher inside a flush: the queued claims wait for the next turn.
    if (flushing) return schedule();
    scheduled = false;
    const cs = claims;
    const ss = statuses;
    claims = [];
    statuses = [];
    if (cs.length === 0 && ss.length === 0) return;
    flushing = true;
    try {
      const nowMs = Date.now();
      ctx.transaction((delta) => {
        applyStatuses(ss.length === 1 ? ss[0]!.updates : ss.flatMap((s) => s.updates), delta);
        const groups = new Map<string, QueuedClaim[]>();
        for (const c of cs) {
          const key = `${c.application ?? "\u0000"}\u0001${c.namespace ?? "\u0000"}`;
          const g = groups.get(key);
          if (g) g.push(c);
          else groups.set(key, [c]);
        }
        for (const g of groups.values()) claimGroup(g, nowMs, delta);
      });
    } catch (err) {
      // Disk faults are logged once per fault by the disk guard (disk.ts), not once per flush.
      if (storageFaultOf(err) === null)
        log.error("store_flush_failed", { claims: cs.length, status_updates: ss.length, error: err });
      for (const s of ss) s.reject(err);
      for (const c of cs) c.reject(err);
      return;
    } finally {
      flushing = false;
    }
    for (const s of ss) s.resolve();
    for (const c of cs) c.resolve(c.single ? (c.rows[0] ?? null) : c.rows);
  }

  function claim(filter: ClaimFilter): Promise<ClaimedActivation | null> {
    const application = filter.application || undefined;
    const namespace = filter.namespace || undefined;
    // docs/spec/broker.md: a namespace without an application claims nothing.
    if (namespace !== undefined && application === undefined) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      claims.push({
        application,
        namespace,
        want: 1,
        single: true,
        rows: NO_ROWS,
        resolve: resolve as QueuedClaim["resolve"],
        reject,
      });
      schedule();
    });
  }

  function claimMany(filter: ClaimFilter, max: number): Promise<ClaimedRow[]> {
    const application = filter.application || undefined;
    const namespace = filter.namespace || undefined;
    const want = Math.floor(max);
    if ((namespace !== undefined && application === undefined) || !(want > 0)) return Promise.resolve(NO_ROWS);
    return new Promise((resolve, reject) => {
      claims.push({
        application,
        namespace,
        want,
        single: false,
        rows: NO_ROWS,
        resolve: resolve as QueuedClaim["resolve"],
        reject,
      });
      schedule();
    });
  }

  function releaseUnsent(rows: readonly ClaimedRow[]): number {
    if (rows.length === 0) return 0;
    return ctx.transaction((delta) => {
      let n = 0;
      for (const r of rows) n += unsend.run(r.seq, r.id).changes;
      delta.move("processing", "pending", n);
      return n;
    });
  }

  function setStatuses(updates: StatusUpdate[]): Promise<void> {
    if (updates.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      statuses.push({ updates, resolve, reject });
      schedule();
    });
  }

  async function setStatus(update: StatusUpdate, fetchNext?: ClaimFilter): Promise<ClaimedActivation | null> {
    const done = setStatuses([update]);
    if (!fetchNext) {
      await done;
      return null;
    }
    // Queued in the same flush; statuses are applied before claims.
    const [, next] = await Promise.all([done, claim(fetchNext)]);
    return next;
  }

  return { claim, claimMany, releaseUnsent, setStatus, setStatuses, flush, countDispatch };
}
