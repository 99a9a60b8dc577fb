// The ingest admission decision of docs/spec/broker.md "Backpressure": the four
// upstream rules plus free disk space (store.min_free_bytes), pure, so the
// Kafka consumer (pause/resume) and the ingest RPC (RESOURCE_EXHAUSTED) decide
// identically.
import type { NewRow, StateCounts } from "../store/types.ts";

export interface BackpressureLimits {
  /** Processing + Claimed rows at which ingest stops (TASKBROKER_STORE__MAX_PROCESSING_COUNT, default 2048). */
  maxProcessingCount: number;
  /** TASKBROKER_STORE__MAX_PENDING_COUNT, default 2048. */
  maxPendingCount: number;
  /** TASKBROKER_STORE__MAX_DELAY_COUNT, default 8192. */
  maxDelayCount: number;
  /** Database bytes at which ingest stops (TASKBROKER_STORE__MAX_SIZE). */
  maxSizeBytes: number;
  /** Free bytes on the store's filesystem below which ingest stops (TASKBROKER_STORE__MIN_FREE_BYTES); 0: never. */
  minFreeBytes?: number;
  /** WAL content above which ingest waits for the checkpointer to restart it; absent: no limit. */
  maxWalBytes?: number;
}

/** `brief`: lifts by itself within a checkpointer pass (tens of ms), so a caller may wait instead of refusing. */
export type Admission = { ok: true } | { ok: false; reason: string; brief?: boolean };

/**
 * `sizeBytes` is the database file's size, `freeBytes` the free space on its
 * filesystem less the WAL file (whose pages may still be copied into the
 * database file), `walBytes` the WAL's content since its last restart. A row counts as Delay when its delay_until is in the future at
 * `nowMs` (the state the store will give it).
 */
export function admit(
  counts: StateCounts,
  batch: NewRow[],
  limits: BackpressureLimits,
  sizeBytes: number,
  nowMs: number = Date.now(),
  freeBytes: number = Infinity,
  walBytes: number = 0,
): Admission {
  const busy = counts.processing + counts.claimed;
  if (busy >= limits.maxProcessingCount) {
    return { ok: false, reason: `processing+claimed ${busy} >= max_processing_count ${limits.maxProcessingCount}` };
  }
  const hasDelay = batch.some((r) => r.delayUntilMs !== null && r.delayUntilMs > nowMs);
  const hasPending = batch.some((r) => r.delayUntilMs === null || r.delayUntilMs <= nowMs);
  if (hasPending && counts.pending + batch.length > limits.maxPendingCount) {
    return {
      ok: false,
      reason: `pending ${counts.pending} + batch ${batch.length} > max_pending_count ${limits.maxPendingCount}`,
    };
  }
  if (hasDelay && counts.delay + batch.length > limits.maxDelayCount) {
    return {
      ok: false,
      reason: `delay ${counts.delay} + batch ${batch.length} > max_delay_count ${limits.maxDelayCount}`,
    };
  }
  if (sizeBytes >= limits.maxSizeBytes) {
    return { ok: false, reason: `database size ${sizeBytes} >= max_size ${limits.maxSizeBytes}` };
  }
  // Below the floor, the room left is kept for the WAL and for claims and
  // completions, which is how workers drain the store and free space again.
  if (freeBytes < (limits.minFreeBytes ?? 0)) {
    return { ok: false, reason: `free disk space ${freeBytes} (less the WAL) < min_free_bytes ${limits.minFreeBytes}` };
  }
  // Only ingest grows the WAL fast; waiting here (~one checkpoint interval) keeps it bounded.
  if (limits.maxWalBytes !== undefined && walBytes > limits.maxWalBytes) {
    return {
      ok: false,
      brief: true,
      reason: `WAL ${walBytes} bytes > store.wal_max_bytes ${limits.maxWalBytes}: waiting for the checkpointer`,
    };
  }
  return { ok: true };
}

export function limitsFromConfig(store: {
  max_processing_count: number;
  max_pending_count: number;
  max_delay_count: number;
  max_size: number;
  min_free_bytes?: number;
}): BackpressureLimits {
  return {
    maxProcessingCount: store.max_processing_count,
    maxPendingCount: store.max_pending_count,
    maxDelayCount: store.max_delay_count,
    maxSizeBytes: store.max_size,
    minFreeBytes: store.min_free_bytes ?? 0,
  };
}
