// The SQLite (bun:sqlite) inflight store: opens the database, inserts rows,
// answers counts and admin queries, and composes the parts that live in their
// own files: dispatch.ts (group-committed claims and status updates),
// upkeep-steps.ts, dead-letters.ts, idempotency-keys.ts, and disk.ts with
// checkpointer.ts (bounded WAL, a full disk). The contract is InflightStore in types.ts.
import { Database } from "bun:sqlite";
import { statSync } from "node:fs";
import { silentLogger, type Logger } from "../log.ts";
import { createContext, emptyCounts, STATE_BY_CODE, type Delta } from "./context.ts";
import { createDeadLetters } from "./dead-letters.ts";
import { createDispatcher } from "./dispatch.ts";
import { createForwarding } from "./forwarding.ts";
import { DEFAULT_WAL_MAX_BYTES, prepareDatabase } from "./schema.ts";
import { migrateUpstreamStore } from "./upstream-migration.ts";
import { COUNT_BY_STATE_SQL, DEPTH_BY_NAMESPACE_SQL, mergeDepthRows, type DepthRow } from "./depth.ts";
import { startCheckpointer } from "./checkpointer.ts";
import { createDiskGuard, freeBytesAt, releaseReserveFile, storageFaultOf } from "./disk.ts";
import { createIdempotencyKeys } from "./idempotency-keys.ts";
import { openWalIndex } from "./wal-index.ts";
import { createUpkeepSteps } from "./upkeep-steps.ts";
import { createKafkaOffsets } from "./kafka-offsets.ts";
import {
  STATE_CODE,
  type ClaimedActivation,
  type ClaimedRow,
  type ClaimFilter,
  type HandOff,
  type InflightStore,
  type InsertResult,
  type KillCandidate,
  type NamespaceDepth,
  type NewRow,
  type StoredActivation,
} from "./types.ts";

export interface StoreOptions {
  /** Database file; ":memory:" works for throwaway use. */
  path: string;
  /** "normal" survives kill -9 (WAL), "full" also survives power loss. */
  synchronous: "normal" | "full";
  /** Longest a claim/status update waits to share a transaction; 0 = next turn of the event loop. */
  groupCommitWindowMs: number;
  /** Added to every processing deadline, seconds (docs/spec/broker.md default 3). */
  processingDeadlineGraceSec: number;
  /** Cap on an activation's delay when a dead letter is replayed, seconds. Default 3600. */
  maxDelaySec?: number;
  /** How often the background thread checkpoints the WAL (checkpointer.ts), ms; every 20 ms during bursts. Default 200. */
  checkpointIntervalMs?: number;
  /** The WAL bound: restarted past half of it, ingest waits past it; the reserve file (disk.ts) is 1.25x it. Default 64 MiB. */
  walMaxBytes?: number;
  /** Free bytes on the store's filesystem below which the reserve is not rewritten (ingest pauses there: ingest.ts). Default 0. */
  minFreeBytes?: number;
  /** How long an idempotency key stays claimed after its activation arrived, ms. Default 1 h. */
  idempotencyWindowMs?: number;
  log?: Logger;
}

/** While commits fail on the disk, a tiny write is tried this often to notice recovery; the reserve is tended at the same pace. */
const WRITE_PROBE_MS = 500;
/** How long the WAL file's size is reused by sizeBytes(), ms; as long as disk.ts caches the free space. */
const WAL_SIZE_CACHE_MS = 20;

const S = STATE_CODE;

/** Room opening needs: the WAL index (32 KiB) and the WAL's first frames. */
const OPEN_ROOM_BYTES = 1 << 20;

/**
 * Opens and prepares the database. Opening needs a little room (the WAL
 * index, the WAL's first frames): on a full disk the reserve file (disk.ts)
 * is given up for it; without one the error says what to do. Checked before
 * SQLite maps a WAL index left by a crash: mapping one on a full disk can
 * kill the process with SIGBUS instead of returning an error.
 */
function openDatabase(opts: StoreOptions, walMaxBytes: number, log: Logger): Database {
  const full = () =>
    new Error(
      `cannot open the inflight store ${opts.path}: the disk is full (${freeBytesAt(opts.path)} bytes free); free some space and start again`,
    );
  if (opts.path !== ":memory:" && freeBytesAt(opts.path) < OPEN_ROOM_BYTES) {
    releaseReserveFile(opts.path, log);
    if (freeBytesAt(opts.path) < OPEN_ROOM_BYTES) throw full();
  }
  for (let attempt = 0; ; attempt++) {
    let db: Database | undefined;
    try {
      db = new Database(opts.path, { create: true });
      prepareDatabase(db, opts.synchronous, walMaxBytes);
      // A file the reference broker wrote: its rows move in here before anything is served.
      migrateUpstreamStore(db, { log });
      return db;
    } catch (err) {
      db?.close();
      if (storageFaultOf(err) !== "full") throw err;
      if (attempt === 0 && releaseReserveFile(opts.path, log)) continue;
      throw full();
    }
  }
}

export function openStore(opts: StoreOptions): InflightStore {
  const log = opts.log ?? silentLogger;
  const walMaxBytes = opts.walMaxBytes ?? DEFAULT_WAL_MAX_BYTES;
  const db = openDatabase(opts, walMaxBytes, log);
  let checkpointNow = () => {};
  const disk = createDiskGuard({
    path: opts.path,
    // Ingest waits past the bound (ingest.ts, exact from the WAL index): the WAL holds at most the bound and one batch.
    reserveBytes: Math.ceil(1.25 * walMaxBytes),
    minFreeBytes: opts.minFreeBytes ?? 0,
    onReserveReleased: () => checkpointNow(),
    log,
  });
  const ctx = createContext(db, opts.processingDeadlineGraceSec * 1000, opts.maxDelaySec ?? 3600, disk);
  const checkpointer =
    opts.path === ":memory:"
      ? null
      : startCheckpointer(opts.path, {
          intervalMs: opts.checkpointIntervalMs ?? 200,
          walMaxBytes,
          log,
          // A checkpoint that cannot grow the database file: give it the reserve.
          onError: (code, message) => code === "SQLITE_FULL" && disk.failed("write", "full", new Error(message)),
        });
  if (checkpointer) checkpointNow = () => checkpointer.now();
  disk.tendReserve();
  const keys = createIdempotencyKeys(ctx, opts.idempotencyWindowMs ?? 3_600_000);
  const walIndex = opts.path === ":memory:" ? null : openWalIndex(opts.path);
  const pageSize = (db.query("PRAGMA page_size").get() as { page_size: number }).page_size;
  const pageCount = db.query<{ page_count: number }, []>("PRAGMA page_count");
  const probeWrite = db.query("INSERT OR REPLACE INTO store_meta (key, value) VALUES ('write_probe', ?)");
  // While commits fail on the disk: probe, so health recovers even with no traffic; otherwise tend the reserve.
  const probe = setInterval(() => {
    const h = disk.health();
    if (!h.ok) {
      try {
        ctx.transaction((d) => {
          probeWrite.run(Date.now());
          d.wrote = true;
        });
      } catch {
        // Still failing; counted by the guard.
      }
    } else if (h.reserveBytes === 0) disk.tendReserve();
  }, WRITE_PROBE_MS);
  probe.unref();

  // One statement for every new row: Pending or Delay from ingest (no deadline), or Processing with its
  // deadline set as a claim sets it, for a waiting delivery stream (HandOff).
  const insertRow = db.query(
    `INSERT OR IGNORE INTO inflight (id, state, namespace, taskname, application, received_at_ms, expires_at_ms,
       delay_until_ms, processing_deadline_duration_s, at_most_once, on_attempts_exceeded,
       kafka_topic, kafka_partition, kafka_offset, activation, processing_deadline_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const storeRow = (r: NewRow, state: number, processingDeadlineMs: number | null) => {
    const o = r.origin;
    return insertRow.run(
      r.id,
      state,
      r.namespace,
      r.taskname,
      r.application,
      r.receivedAtMs,
      r.expiresAtMs,
      r.delayUntilMs,
      r.processingDeadlineDurationS,
      r.atMostOnce ? 1 : 0,
      r.onAttemptsExceeded,
      o?.topic ?? null,
      o?.partition ?? null,
      o ? BigInt(o.offset) : null,
      r.activation,
      processingDeadlineMs,
    );
  };
  const kafkaOffsets = createKafkaOffsets(ctx);
  let handOff: HandOff | null = null;
  /** Rows reserved by a stream in the running insert: handed over after its commit, or their credit returned. */
  interface Reserved {
    taker: object;
    row: ClaimedRow;
    namespace: string;
  }

  /** Stores a row a waiting stream reserved, as Processing; false when the id is already held. */
  function insertForStream(r: NewRow, nowMs: number, taker: object, reserved: Reserved[], delta: Delta): boolean {
    const deadlineMs = nowMs + r.processingDeadlineDurationS * 1000 + ctx.graceMs;
    const { changes, lastInsertRowid } = storeRow(r, S.processing, deadlineMs);
    if (changes === 0) return false;
    delta.add("processing", 1);
    reserved.push({
      taker,
      namespace: r.namespace,
      row: { seq: Number(lastInsertRowid), id: r.id, activation: r.activation },
    });
    return true;
  }

  function insertInto(rows: NewRow[], delta: Delta, reserved?: Reserved[]): InsertResult {
    const nowMs = Date.now();
    kafkaOffsets.noteStored(rows);
    let accepted = 0;
    let keyDuplicates = 0;
    for (const r of rows) {
      // Rows without a key (the common case) pay one property check.
      if (r.idempotencyKey != null && !keys.claim(r.idempotencyKey, r.id, nowMs)) {
        keyDuplicates++;
        continue;
      }
      const delayed = r.delayUntilMs !== null && r.delayUntilMs > nowMs;
      if (!delayed && reserved !== undefined && handOff !== null) {
        const taker = handOff.reserve(r.application, r.namespace);
        if (taker !== null) {
          if (insertForStream(r, nowMs, taker, reserved, delta)) accepted++;
          else handOff.cancel(taker);
          continue;
        }
      }
      const changes = storeRow(r, delayed ? S.delay : S.pending, null).changes;
      if (changes > 0) {
        accepted++;
        delta.add(delayed ? "delay" : "pending", 1);
        if (!delayed) delta.pendingKey(r.application, r.namespace);
      }
    }
    return { accepted, duplicates: rows.length - accepted - keyDuplicates, keyDuplicates };
  }

  const dispatcher = createDispatcher(ctx, opts.groupCommitWindowMs, log);
  const steps = createUpkeepSteps(ctx);
  const deadLetters = createDeadLetters(ctx, insertInto);
  const forwarding = createForwarding(ctx);

  // Push mode.
  const pushClaim = db.query<{ id: string; activation: Uint8Array }, [number, number, string | null, string | null]>(
    `UPDATE inflight SET state = ${S.claimed}, claim_expires_ms = ?1 + ?2
     WHERE seq = (SELECT seq FROM inflight INDEXED BY inflight_pending WHERE state = ${S.pending}
                  AND (?3 IS NULL OR application = ?3) AND (?4 IS NULL OR namespace = ?4)
                  AND (expires_at_ms IS NULL OR expires_at_ms > ?1) ORDER BY seq LIMIT 1)
     RETURNING id, activation`,
  );
  const delivered = db.query(
    `UPDATE inflight SET state = ${S.processing}, claim_expires_ms = NULL,
       processing_deadline_ms = ?2 + processing_deadline_duration_s * 1000 + ?3
     WHERE id = ?1 AND state = ${S.claimed}`,
  );
  const released = db.query(
    `UPDATE inflight SET state = ${S.pending}, claim_expires_ms = NULL WHERE id = ? AND state = ${S.claimed}`,
  );

  // Read side.
  // Counts and depths read each state through its own partial index (depth.ts).
  const countByState = db.query<{ state: number; n: number }, []>(COUNT_BY_STATE_SQL);
  const depthQuery = db.query<DepthRow, []>(DEPTH_BY_NAMESPACE_SQL);
  const oldestPending = db.query<{ received_at_ms: number }, []>(
    `SELECT received_at_ms FROM inflight INDEXED BY inflight_pending WHERE state = ${S.pending} ORDER BY seq LIMIT 1`,
  );
  const byId = db.query<Record<string, unknown>, [string]>(
    // int64 offsets above 2^53 would lose precision as JS numbers: read them as text.
    "SELECT *, CAST(kafka_offset AS TEXT) AS kafka_offset_text FROM inflight WHERE id = ?",
  );
  const findState = db.query<{ seq: number; state: number }, [string]>("SELECT seq, state FROM inflight WHERE id = ?");
  const deleteSeq = db.query("DELETE FROM inflight WHERE seq = ?");

  function recount() {
    const fresh = emptyCounts();
    for (const { state, n } of countByState.all()) {
      const name = STATE_BY_CODE[state];
      if (name) fresh[name] = n;
    }
    Object.assign(ctx.counters, fresh);
    return { ...fresh };
  }
  recount();

  // The WAL file's size for disk-space checks, read at most every WAL_SIZE_CACHE_MS (a stat per
  // Produce showed in profiles at low rates); the free space it is set against is cached as long (disk.ts).
  let walSize = 0;
  let walSizeAt = -Infinity;
  function walFileBytes(): number {
    if (opts.path === ":memory:") return 0;
    const now = performance.now();
    if (now - walSizeAt < WAL_SIZE_CACHE_MS) return walSize;
    walSizeAt = now;
    try {
      walSize = statSync(`${opts.path}-wal`).size;
    } catch {
      walSize = 0; // no WAL file yet (or checkpointed away)
    }
    return walSize;
  }

  let closed = false;
  const store: InflightStore = {
    insert(rows) {
      if (rows.length === 0) return { accepted: 0, duplicates: 0, keyDuplicates: 0 };
      if (handOff === null) return ctx.transaction((d) => insertInto(rows, d), "ingest");
      const reserved: Reserved[] = [];
      const taker = handOff;
      let result: InsertResult;
      try {
        result = ctx.transaction((d) => insertInto(rows, d, reserved), "ingest");
      } catch (err) {
        for (const r of reserved) taker.cancel(r.taker);
        throw err;
      }
      // Committed: each row is Processing on disk before its stream sees it.
      for (const r of reserved) {
        dispatcher.countDispatch(r.namespace);
        taker.deliver(r.taker, r.row);
      }
      return result;
    },
    removeExpiredKeys: (nowMs, limit) => keys.removeExpired(nowMs, limit),
    idempotencyKeyCount: () => keys.count(),
    writeHealth: () => disk.health(),
    diskFreeBytes() {
      // Ingest asks on every batch: the moment to write the reserve when the disk runs low, before it is full.
      disk.tendReserve();
      return disk.freeBytes();
    },
    claim: (filter) => dispatcher.claim(filter),
    claimMany: (filter, max) => dispatcher.claimMany(filter, max),
    releaseUnsent: (rows) => dispatcher.releaseUnsent(rows),
    flushNow: () => dispatcher.flush(),
    offerHandOff(h) {
      handOff = h;
    },
    watchPending(listener) {
      ctx.onPending = listener;
      return () => {
        if (ctx.onPending === listener) ctx.onPending = null;
      };
    },
    setStatus: (update, fetchNext) => dispatcher.setStatus(update, fetchNext),
    setStatuses: (updates) => dispatcher.setStatuses(updates),

    claimForPush(filter: ClaimFilter, leaseMs: number): ClaimedActivation | null {
      const app = filter.application || null;
      const ns = filter.namespace || null;
      if (ns !== null && app === null) return null;
      return ctx.transaction((d) => {
        const row = pushClaim.get(Date.now(), leaseMs, app, ns);
        if (row) d.move("pending", "claimed", 1);
        return row ? { id: row.id, activation: row.activation } : null;
      });
    },
    markDelivered(id) {
      return ctx.transaction((d) => {
        const ok = delivered.run(id, Date.now(), ctx.graceMs).changes > 0;
        if (ok) d.move("claimed", "processing", 1);
        return ok;
      });
    },
    releaseClaim(id) {
      return ctx.transaction((d) => {
        const ok = released.run(id).changes > 0;
        if (ok) d.move("claimed", "pending", 1);
        return ok;
      });
    },

    counts: () => ({ ...ctx.counters }),
    recount,
    depthsByNamespace(): NamespaceDepth[] {
      const out: NamespaceDepth[] = [];
      for (const { state, namespace, n } of mergeDepthRows(depthQuery.all())) {
        const name = STATE_BY_CODE[state];
        if (name) out.push({ namespace, state: name, count: n });
      }
      return out;
    },
    oldestPendingReceivedAtMs: () => oldestPending.get()?.received_at_ms ?? null,
    sizeBytes() {
      // Ingest asks on every batch; the page size never changes once the file exists.
      const pages = pageCount.get()?.page_count ?? 0;
      return { db: pages * pageSize, wal: walFileBytes() };
    },
    walContentBytes: () => walIndex?.contentBytes(pageSize) ?? 0,
    getActivation(id): StoredActivation | null {
      const r = byId.get(id);
      if (!r) return null;
      return {
        id: r.id as string,
        state: STATE_BY_CODE[r.state as number] ?? "pending",
        namespace: r.namespace as string,
        taskname: r.taskname as string,
        application: r.application as string,
        processingAttempts: r.processing_attempts as number,
        processingDeadlineMs: (r.processing_deadline_ms as number | null) ?? null,
        receivedAtMs: r.received_at_ms as number,
        origin:
          r.kafka_topic == null
            ? null
            : {
                topic: r.kafka_topic as string,
                partition: r.kafka_partition as number,
                offset: r.kafka_offset_text as string,
              },
        activation: r.activation as Uint8Array,
      };
    },

    ...steps,
    ...deadLetters,
    ...forwarding,

    killableByTaskname(tasknames, afterId, limit): KillCandidate[] {
      if (tasknames.length === 0) return [];
      const marks = tasknames.map(() => "?").join(", ");
      return db
        .query<KillCandidate, (string | number)[]>(
          `SELECT id, namespace, taskname, activation FROM inflight
           WHERE taskname IN (${marks}) AND id > ? ORDER BY id LIMIT ?`,
        )
        .all(...tasknames, afterId ?? "", limit);
    },
    removeKilled(ids) {
      return ctx.transaction((d) => {
        let n = 0;
        for (const id of ids) {
          const row = findState.get(id);
          const from = row ? STATE_BY_CODE[row.state] : undefined;
          if (!row || !from) continue;
          deleteSeq.run(row.seq);
          d.add(from, -1);
          n++;
        }
        return n;
      });
    },

    discardUncommitted(origins) {
      // Rows a rebalance left with uncommitted offsets: the partition's next
      // owner will store them, so keep none that were never handed out. One
      // statement per partition (rebalances are rare; no extra index on the
      // insert path for this).
      const byPartition = new Map<string, { topic: string; partition: number; offsets: bigint[] }>();
      for (const o of origins) {
        const key = `${o.topic}\u0000${o.partition}`;
        let group = byPartition.get(key);
        if (!group) byPartition.set(key, (group = { topic: o.topic, partition: o.partition, offsets: [] }));
        group.offsets.push(BigInt(o.offset));
      }
      return ctx.transaction((d) => {
        let n = 0;
        for (const g of byPartition.values()) {
          for (let i = 0; i < g.offsets.length; i += 500) {
            const chunk = g.offsets.slice(i, i + 500);
            const gone = db
              .query<{ state: number }, (string | number | bigint)[]>(
                `DELETE FROM inflight WHERE kafka_topic = ? AND kafka_partition = ?
                   AND kafka_offset IN (${chunk.map(() => "?").join(", ")})
                   AND state IN (${S.pending}, ${S.delay}) RETURNING state`,
              )
              .all(g.topic, g.partition, ...chunk);
            for (const row of gone) d.add(STATE_BY_CODE[row.state]!, -1);
            n += gone.length;
          }
        }
        return n;
      });
    },

    kafkaCommitting: (topic, partition, next) => kafkaOffsets.committing(topic, partition, next),
    kafkaCommitted: (topic, partition, next) => kafkaOffsets.committed(topic, partition, next),
    kafkaCommitFailed: (topic, partition) => kafkaOffsets.commitFailed(topic, partition),
    reconcileKafkaCommits: (commits) => kafkaOffsets.reconcile(commits),
    releaseKafkaTopicsExcept: (topics) => kafkaOffsets.releaseExcept(topics),

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(probe);
      dispatcher.flush();
      await checkpointer?.stop();
      // A clean checkpoint leaves a small file behind; failure here is harmless (WAL replays on open).
      try {
        db.run("PRAGMA wal_checkpoint(TRUNCATE)");
      } catch (err) {
        log.warn("store_checkpoint_failed", { error: err });
      }
      db.close();
      walIndex?.close();
      disk.close();
    },
  };
  return store;
}
