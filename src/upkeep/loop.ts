// The upkeep loop: the nine steps of docs/spec/broker.md "Upkeep", in that order, every
// upkeep_task_interval_ms. One function per step; each store call is its own
// transaction. Passes never overlap (runOnce queues behind a running pass).
// lastCompletedAtMs() feeds the named health service.
import type { BrokerConfig } from "../config/broker.ts";
import { buildRetryActivation } from "../activation/rewrite.ts";
import type { Logger } from "../log.ts";
import {
  fullVacuumDuration,
  fullVacuumFailures,
  oldestPendingAge,
  storeDepth,
  storeSizeBytes,
  upkeepDuration,
  upkeepTotal,
} from "../metrics.ts";
import { storageFaultOf } from "../store/disk.ts";
import type { InflightStore, UpkeepRow, UpkeepSteps } from "../store/types.ts";
import type { UpkeepPublisher } from "./publisher.ts";

export interface UpkeepReport {
  retried: number;
  deadlineReset: number;
  deadlineFailed: number;
  claimExpired: number;
  attemptsExceeded: number;
  expired: number;
  undelayed: number;
  discarded: number;
  deadlettered: number;
  /** Retry or dead-letter publishes that failed; those rows wait for the next pass. */
  publishFailed: number;
  deleted: number;
  /** Idempotency keys past their window, deleted. */
  keysExpired: number;
  reclaimedPages: number;
  /** A full VACUUM ran in this pass (full_vacuum_on_upkeep, due, and enough free pages). */
  fullVacuum: boolean;
  /** True while inside the start-up window (steps 2 and 3 skipped). */
  startupSkip: boolean;
}

export interface Upkeep {
  runOnce(): Promise<UpkeepReport>;
  /** Unix ms when the last pass finished; 0 before the first. */
  lastCompletedAtMs(): number;
  /** Stops the timer and waits for a running pass. */
  stop(): Promise<void>;
}

/** What upkeep asks of the store: its steps, and the gauges it reports. */
export type UpkeepStore = UpkeepSteps &
  Pick<InflightStore, "counts" | "recount" | "oldestPendingReceivedAtMs" | "sizeBytes" | "removeExpiredKeys">;

/** The settings upkeep reads. */
export type UpkeepConfig = Pick<
  BrokerConfig,
  | "store"
  | "upkeep_deadline_reset_skip_after_startup_sec"
  | "upkeep_task_interval_ms"
  | "maintenance_task_interval_ms"
  | "full_vacuum_on_upkeep"
  | "vacuum_interval_ms"
>;

export interface UpkeepOptions {
  store: UpkeepStore;
  config: UpkeepConfig;
  publisher: UpkeepPublisher;
  log: Logger;
  startedAtMs: number;
}

/** Rows handed to the publisher per pass and step; the rest wait one interval. */
const PUBLISH_BATCH = 2000;
/**
 * recount() walks the Pending claim index (~25 ms per million rows, measured
 * in bench/store.ts), blocking RPCs meanwhile: with a large backlog the
 * self-heal runs every RECOUNT_BACKLOG_EVERY passes instead of every pass.
 */
const RECOUNT_BACKLOG_ROWS = 200_000;
const RECOUNT_BACKLOG_EVERY = 60;
/**
 * Bulk deletes run in chunks with a turn of the event loop between them, so
 * RPCs are never held up by more than one chunk (~10 ms measured) of SQLite work.
 */
const DELETE_CHUNK = 2000;

/**
 * The upkeep VACUUM runs only when at least this share of the file is free
 * pages. It stops every write for its duration (docs/configuration.md: ~160 ms
 * at 10k rows, 640 ms at 100k), while the incremental reclaim of each
 * maintenance pass already gives free pages back; what is left for a full
 * VACUUM (defragmenting) does not pay for a stall of every producer and
 * worker every vacuum_interval_ms.
 */
const FULL_VACUUM_MIN_FREE_SHARE = 0.25;

/**
 * Free pages reclaimed per step of the incremental vacuum (~4 MB), a turn of
 * the event loop between steps: after a large drain, reclaiming every free
 * page at once held the loop ~10-15 ms (3.5k pages) in the middle of serving.
 */
const RECLAIM_CHUNK = 512;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Repeats a bounded delete until it removes less than a full chunk. */
async function inChunks(step: (limit: number) => number): Promise<number> {
  let total = 0;
  for (;;) {
    const n = step(DELETE_CHUNK);
    total += n;
    if (n < DELETE_CHUNK) return total;
    await yieldToEventLoop();
  }
}

function emptyReport(startupSkip: boolean): UpkeepReport {
  return {
    retried: 0,
    deadlineReset: 0,
    deadlineFailed: 0,
    claimExpired: 0,
    attemptsExceeded: 0,
    expired: 0,
    undelayed: 0,
    discarded: 0,
    deadlettered: 0,
    publishFailed: 0,
    deleted: 0,
    keysExpired: 0,
    reclaimedPages: 0,
    fullVacuum: false,
    startupSkip,
  };
}

/**
 * Publishes each row, then marks Complete only those whose publish resolved:
 * a failing publish leaves its row for the next pass (never lost).
 */
async function publishThenComplete(
  store: Pick<UpkeepStore, "markComplete">,
  rows: UpkeepRow[],
  publish: (row: UpkeepRow) => Promise<void>,
  log: Logger,
  what: string,
): Promise<{ done: number; failed: number }> {
  const results = await Promise.allSettled(rows.map(publish));
  const ok: string[] = [];
  results.forEach((r, i) => {
    if (r.status === "fulfilled") ok.push(rows[i]!.id);
    else log.warn(`${what}_publish_failed`, { id: rows[i]!.id, error: r.reason });
  });
  const done = ok.length ? store.markComplete(ok) : 0;
  return { done, failed: rows.length - ok.length };
}

export function startUpkeep({ store, config, publisher, log, startedAtMs }: UpkeepOptions): Upkeep {
  const skipUntilMs = startedAtMs + config.upkeep_deadline_reset_skip_after_startup_sec * 1000;
  let lastCompleted = 0;
  let passes = 0;
  // Maintenance as the reference schedules it: incremental vacuum every maintenance_task_interval_ms
  // (store.sqlite.vacuum_page_count pages, unset: all free pages), a full VACUUM every vacuum_interval_ms.
  let lastReclaimMs = startedAtMs;
  let lastFullVacuumMs = startedAtMs;

  // Step 1: Retry rows -> new activation published, old row Complete.
  async function retries(r: UpkeepReport, nowMs: number) {
    const rows = store.retryRows(PUBLISH_BATCH);
    if (rows.length === 0) return;
    const res = await publishThenComplete(
      store,
      rows,
      // async: a row whose bytes fail to decode becomes a failed publish, not a failed pass.
      async (row) => publisher.publishRetry(buildRetryActivation(row.activation, nowMs).bytes),
      log,
      "retry",
    );
    r.retried = res.done;
    r.publishFailed += res.failed;
  }

  // Steps 2 and 3: skipped right after start-up so work still running in workers is not reset.
  function deadlines(r: UpkeepReport, nowMs: number) {
    const { reset, failed } = store.resetExpiredDeadlines(nowMs);
    r.deadlineReset = reset;
    r.deadlineFailed = failed;
  }

  function claimLeases(r: UpkeepReport, nowMs: number) {
    r.claimExpired = store.expireClaims(nowMs);
  }

  // Step 4.
  function attempts(r: UpkeepReport) {
    r.attemptsExceeded = store.failExhaustedAttempts(config.store.max_processing_attempts);
  }

  // Step 5.
  async function expiry(r: UpkeepReport, nowMs: number) {
    r.expired = await inChunks((limit) => store.removeExpired(nowMs, limit));
  }

  // Step 6.
  function delays(r: UpkeepReport, nowMs: number) {
    r.undelayed = store.undelay(nowMs);
  }

  // Step 7: DISCARD/unspecified -> Complete; DEADLETTER -> publish the original bytes, then Complete.
  async function failures(r: UpkeepReport) {
    r.discarded = store.discardFailures();
    const rows = store.failureRows(PUBLISH_BATCH);
    if (rows.length === 0) return;
    const res = await publishThenComplete(
      store,
      rows,
      (row) =>
        publisher.publishDeadLetter(row.activation, {
          id: row.id,
          namespace: row.namespace,
          taskname: row.taskname,
          application: row.application,
        }),
      log,
      "deadletter",
    );
    r.deadlettered = res.done;
    r.publishFailed += res.failed;
  }

  // Step 8, and the idempotency keys whose window has passed.
  async function cleanup(r: UpkeepReport, nowMs: number) {
    r.deleted = await inChunks((limit) => store.deleteComplete(limit));
    r.keysExpired = await inChunks((limit) => store.removeExpiredKeys(nowMs, limit));
  }

  /** Up to `maxPages` free pages (0 or less: all), RECLAIM_CHUNK at a time with a turn of the event loop between. */
  async function reclaim(maxPages: number): Promise<number> {
    let total = 0;
    for (;;) {
      const want = maxPages > 0 ? Math.min(RECLAIM_CHUNK, maxPages - total) : RECLAIM_CHUNK;
      if (want <= 0) return total;
      const n = store.reclaimSpace(want);
      total += n;
      if (n < want) return total;
      await yieldToEventLoop();
    }
  }

  // Step 9: space and gauges. recount() also heals any drift of the O(1) counters.
  async function reclaimAndGauges(r: UpkeepReport, nowMs: number) {
    if (nowMs - lastReclaimMs >= config.maintenance_task_interval_ms) {
      lastReclaimMs = nowMs;
      r.reclaimedPages = await reclaim(config.store.sqlite.vacuum_page_count ?? 0);
    }
    if (config.full_vacuum_on_upkeep && nowMs - lastFullVacuumMs >= config.vacuum_interval_ms) {
      lastFullVacuumMs = nowMs;
      try {
        if (store.freePageShare() >= FULL_VACUUM_MIN_FREE_SHARE) {
          const ms = store.fullVacuum();
          r.fullVacuum = true;
          fullVacuumDuration.observe(ms / 1000);
          if (ms > 100) log.info("full_vacuum", { elapsed_ms: Math.round(ms) });
        }
      } catch (err) {
        fullVacuumFailures.inc({ error: sqliteErrorCode(err) });
        log.warn("full_vacuum_failed", { error: err });
      }
    }
    const big = store.counts().pending >= RECOUNT_BACKLOG_ROWS;
    const counts = !big || passes % RECOUNT_BACKLOG_EVERY === 0 ? store.recount() : store.counts();
    for (const [state, n] of Object.entries(counts)) storeDepth.set({ state }, n);
    const oldest = store.oldestPendingReceivedAtMs();
    oldestPendingAge.set(oldest === null ? 0 : Math.max(0, (nowMs - oldest) / 1000));
    const size = store.sizeBytes();
    storeSizeBytes.set({ file: "db" }, size.db);
    storeSizeBytes.set({ file: "wal" }, size.wal);
  }

  async function pass(): Promise<UpkeepReport> {
    const began = performance.now();
    const nowMs = Date.now();
    const inStartup = nowMs < skipUntilMs;
    const r = emptyReport(inStartup);
    await retries(r, nowMs);
    if (!inStartup) {
      deadlines(r, nowMs);
      claimLeases(r, nowMs);
    }
    attempts(r);
    await expiry(r, nowMs);
    delays(r, nowMs);
    await failures(r);
    await cleanup(r, nowMs);
    await reclaimAndGauges(r, nowMs);
    passes++;
    count(r);
    upkeepDuration.observe((performance.now() - began) / 1000);
    lastCompleted = Date.now();
    return r;
  }

  function count(r: UpkeepReport) {
    const actions: Array<[string, number]> = [
      ["retried", r.retried],
      ["deadline_reset", r.deadlineReset],
      ["deadline_failed", r.deadlineFailed],
      ["claim_expired", r.claimExpired],
      ["attempts_exceeded", r.attemptsExceeded],
      ["expired", r.expired],
      ["undelayed", r.undelayed],
      ["discarded", r.discarded],
      ["deadlettered", r.deadlettered],
      ["deleted", r.deleted],
      ["idempotency_key_expired", r.keysExpired],
    ];
    for (const [action, n] of actions) if (n > 0) upkeepTotal.inc({ action }, n);
    if (actions.some(([, n]) => n > 0) || r.publishFailed > 0) log.debug("upkeep_pass", { ...r });
  }

  // Serialises passes: the timer and runOnce() both go through `running`.
  let running: Promise<unknown> = Promise.resolve();
  function runOnce(): Promise<UpkeepReport> {
    const next = running.then(pass, pass);
    running = next.catch(() => undefined);
    return next;
  }

  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  function schedule(delayMs: number) {
    if (stopped) return;
    timer = setTimeout(() => {
      runOnce()
        // A disk fault is logged once by the store when it starts and ends, not once per pass.
        .catch((err: unknown) =>
          (storageFaultOf(err) === null ? log.error : log.debug)("upkeep_failed", { error: err }),
        )
        .finally(() => schedule(config.upkeep_task_interval_ms));
    }, delayMs);
  }
  // First pass right away, so health turns green without waiting an interval.
  schedule(0);

  return {
    runOnce,
    lastCompletedAtMs: () => lastCompleted,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/** A bounded label for a failed statement: bun:sqlite's error code (SQLITE_FULL, ...), else the error's name. */
function sqliteErrorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && /^SQLITE_[A-Z_]+$/.test(code)) return code;
  return err instanceof Error ? err.name : "unknown";
}
