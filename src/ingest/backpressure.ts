// The ingest admission decision of docs/spec/broker.md "Backpressure": exactly four
// rules, pure, so the Kafka consumer (pause/resume) and the ingest RPC
// (RESOURCE_EXHAUSTED) decide identically.
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
}

export type Admission = { ok: true } | { ok: false; reason: string };

/**
 * `sizeBytes` is the database file's size. A row counts as Delay when its
 * delay_until is in the future at `nowMs` (the state the store will give it).
 */
export function admit(
  counts: StateCounts,
  batch: NewRow[],
  limits: BackpressureLimits,
  sizeBytes: number,
  nowMs: number = Date.now(),
): Admission {
  const busy = counts.processing + counts.claimed;
  if (busy >= limits.maxProcessingCount) {
    return { ok: false, reason: `processing+claimed ${busy} >= max_processing_count ${limits.maxProcessingCount}` };
  }
  const hasDelay = batch.some((r) => r.delayUntilMs !== null && r.delayUntilMs > nowMs);
  const hasPending = batch.some((r) => r.delayUntilMs === null || r.delayUntilMs <= nowMs);
  if (hasPending && counts.pending + batch.length > limits.maxPendingCount) {
    return { ok: false, reason: `pending ${counts.pending} + batch ${batch.length} > max_pending_count ${limits.maxPendingCount}` };
  }
  if (hasDelay && counts.delay + batch.length > limits.maxDelayCount) {
    return { ok: false, reason: `delay ${counts.delay} + batch ${batch.length} > max_delay_count ${limits.maxDelayCount}` };
  }
  if (sizeBytes >= limits.maxSizeBytes) {
    return { ok: false, reason: `database size ${sizeBytes} >= max_size ${limits.maxSizeBytes}` };
  }
  return { ok: true };
}

export function limitsFromConfig(store: {
  max_processing_count: number;
  max_pending_count: number;
  max_delay_count: number;
  max_size: number;
}): BackpressureLimits {
  return {
    maxProcessingCount: store.max_processing_count,
    maxPendingCount: store.max_pending_count,
    maxDelayCount: store.max_delay_count,
    maxSizeBytes: store.max_size,
  };
}
