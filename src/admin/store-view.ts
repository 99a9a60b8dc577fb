// What the admin server reads from the inflight store, and the cached depth
// snapshot it serves. Counting 1M rows by namespace is not free even from an
// index, so depth is computed at most once per `depthCacheMs` and shared by
// the dashboard, /metrics and the JSON API (page loads never trigger a scan
// of their own while a fresh snapshot exists).
import type { ActivationState, DeadLetter, KafkaOrigin, StateCounts } from "../store/types.ts";

/** The store methods the admin server uses (src/store/sqlite.ts implements them). */
export interface AdminStore {
  counts(): StateCounts;
  depthsByNamespace(): Array<{ namespace: string; state: ActivationState; count: number }>;
  oldestPendingReceivedAtMs(): number | null;
  sizeBytes(): { db: number; wal: number };
  getActivation(id: string): {
    activation: Uint8Array;
    state: ActivationState;
    processingAttempts: number;
    processingDeadlineMs: number | null;
    origin: KafkaOrigin | null;
  } | null;
  listDeadLetters(opts: { limit: number; afterId?: string }): { items: DeadLetter[]; total: number };
  /** The new activation id, or null when `id` is not a dead letter. */
  replayDeadLetter(id: string): string | null | Promise<string | null>;
  discardDeadLetter(id: string): boolean | Promise<boolean>;
}

export interface DepthSnapshot {
  atMs: number;
  totals: StateCounts;
  byNamespace: Array<{ namespace: string; state: ActivationState; count: number }>;
  oldestPendingAgeSeconds: number;
  sizeBytes: { db: number; wal: number };
  /** Server time spent computing this snapshot, ms. */
  computeMs: number;
}

export function createDepthCache(store: AdminStore, depthCacheMs: number, now: () => number = Date.now) {
  let snapshot: DepthSnapshot | null = null;
  const compute = (): DepthSnapshot => {
    const started = performance.now();
    const at = now();
    const oldest = store.oldestPendingReceivedAtMs();
    const s: DepthSnapshot = {
      atMs: at,
      totals: store.counts(),
      byNamespace: store.depthsByNamespace(),
      oldestPendingAgeSeconds: oldest === null ? 0 : Math.max(0, (at - oldest) / 1000),
      sizeBytes: store.sizeBytes(),
      computeMs: 0,
    };
    s.computeMs = performance.now() - started;
    return s;
  };
  return {
    /** A snapshot no older than depthCacheMs. */
    get(): DepthSnapshot {
      if (!snapshot || now() - snapshot.atMs >= depthCacheMs) snapshot = compute();
      return snapshot;
    },
    /** Forget the snapshot (after replay/discard, so the page shows the change). */
    invalidate(): void {
      snapshot = null;
    },
  };
}
export type DepthCache = ReturnType<typeof createDepthCache>;
