// What the admin server reads from the inflight store, and the depth snapshot
// it serves. State totals (kept in memory by the store), the oldest pending
// row (one index seek) and file sizes are read fresh on every request; the
// per-namespace breakdown is a GROUP BY over every row, so it is recomputed in
// the background (a worker thread with its own read-only connection when the
// store is a file) at most every `depthCacheMs`, and requests serve the latest
// result. A page load therefore never waits for a scan (right after start-up
// it shows totals while the first count runs). A request finding the count
// older than `depthCacheMs` waits (up to `maxWaitMs`) for a new one, so the
// dashboard's table is seldom more than one count behind its cards, and the
// snapshot says when the count began (byNamespaceAtMs): the age the page shows.
import type { Logger } from "../log.ts";
import type { WriteHealth } from "../store/disk.ts";
import {
  STATE_CODE,
  type ActivationState,
  type DeadLetterPage,
  type DeadLetterPageOptions,
  type KafkaOrigin,
  type StateCounts,
} from "../store/types.ts";
import { threadEntry } from "../thread-entry.ts";

/** The store methods the admin server uses (src/store/sqlite.ts implements them). */
export interface AdminStore {
  counts(): StateCounts;
  depthsByNamespace(): Array<{ namespace: string; state: ActivationState; count: number }>;
  oldestPendingReceivedAtMs(): number | null;
  sizeBytes(): { db: number; wal: number };
  /** Whether commits are failing on the disk, and the free space left. */
  writeHealth(): WriteHealth;
  getActivation(id: string): {
    activation: Uint8Array;
    state: ActivationState;
    processingAttempts: number;
    processingDeadlineMs: number | null;
    origin: KafkaOrigin | null;
  } | null;
  listDeadLetters(opts: DeadLetterPageOptions): DeadLetterPage;
  /** The new activation id, or null when `id` is not a dead letter. */
  replayDeadLetter(id: string): string | null | Promise<string | null>;
  discardDeadLetter(id: string): boolean | Promise<boolean>;
}

export type NamespaceDepths = Array<{ namespace: string; state: ActivationState; count: number }>;

export interface DepthSnapshot {
  atMs: number;
  totals: StateCounts;
  byNamespace: NamespaceDepths;
  /** When the count behind byNamespace began (its rows are at least this recent); 0: not yet counted. */
  byNamespaceAtMs: number;
  oldestPendingAgeSeconds: number;
  sizeBytes: { db: number; wal: number };
}

const STATE_BY_CODE = Object.fromEntries(Object.entries(STATE_CODE).map(([k, v]) => [v, k as ActivationState]));

/** Counts per namespace somewhere other than the request path. */
interface NamespaceCounter {
  count(): Promise<NamespaceDepths>;
  close(): Promise<void>;
}

function inlineCounter(store: AdminStore): NamespaceCounter {
  return { count: async () => store.depthsByNamespace(), close: async () => {} };
}

function threadCounter(dbPath: string, log: Logger): NamespaceCounter {
  const worker = new Worker(
    threadEntry("admin/depth-thread.ts", new URL("./depth-thread.ts", import.meta.url), import.meta.url),
  );
  worker.unref();
  worker.postMessage({ path: dbPath });
  const waiting: Array<{ resolve: (d: NamespaceDepths) => void; reject: (e: Error) => void }> = [];
  let closed: (() => void) | null = null;
  worker.onmessage = (event: MessageEvent) => {
    if (event.data === "closed") return closed?.();
    const msg = event.data as {
      rows?: Array<{ state: number; namespace: string; n: number }>;
      ms?: number;
      error?: string;
    };
    const w = waiting.shift();
    if (!w) return;
    if (msg.error !== undefined) return w.reject(new Error(msg.error));
    log.debug("namespace_depths_counted", { ms: Math.round(msg.ms ?? 0) });
    w.resolve(
      (msg.rows ?? []).flatMap((r) => {
        const state = STATE_BY_CODE[r.state];
        return state ? [{ namespace: r.namespace, state, count: r.n }] : [];
      }),
    );
  };
  // A thread that failed to start (e.g. missing from a compiled binary) fails every count, so the cache falls back to inline.
  let failed: Error | null = null;
  worker.onerror = (event) => {
    failed = new Error(`depth thread: ${event.message}`);
    for (const w of waiting.splice(0)) w.reject(failed);
  };
  return {
    count: () =>
      new Promise((resolve, reject) => {
        if (failed) return reject(failed);
        waiting.push({ resolve, reject });
        worker.postMessage("count");
      }),
    async close() {
      // Close the thread's connection before ending the thread (bounded: a thread that never answers is ended anyway).
      if (!failed) {
        await new Promise<void>((resolve) => {
          closed = resolve;
          setTimeout(resolve, 500);
          worker.postMessage("close");
        });
      }
      worker.terminate();
    },
  };
}

export interface DepthCacheOptions {
  /** Store file for the background counter; undefined or ":memory:" counts inline. */
  dbPath?: string;
  /** Recount per-namespace depths when the last count is older than this, ms. */
  depthCacheMs: number;
  /** Longest a request waits for a recount of a stale byNamespace, ms. Default 1000. */
  maxWaitMs?: number;
  log: Logger;
  now?: () => number;
}

export function createDepthCache(store: AdminStore, options: DepthCacheOptions) {
  const now = options.now ?? Date.now;
  let counter: NamespaceCounter = inlineCounter(store);
  if (options.dbPath && options.dbPath !== ":memory:") {
    try {
      counter = threadCounter(options.dbPath, options.log);
    } catch (err) {
      options.log.warn("depth_thread_unavailable", { error: err, fallback: "inline" });
    }
  }
  let byNamespace: NamespaceDepths | null = null;
  let byNamespaceAtMs = 0;
  let inFlight: Promise<void> | null = null;

  const recount = (): Promise<void> => {
    if (inFlight !== null) return inFlight;
    const startedAt = now();
    inFlight = counter
      .count()
      .then(
        (d) => {
          byNamespace = d;
          byNamespaceAtMs = startedAt;
        },
        (err: unknown) => {
          options.log.warn("namespace_depths_failed", { error: err });
          // Keep serving the previous result; fall back to counting inline next time.
          void counter.close();
          counter = inlineCounter(store);
        },
      )
      .finally(() => {
        inFlight = null;
      });
    return inFlight;
  };

  // Count once at start-up, so the first page load usually has namespaces already.
  void recount();

  /** Totals, oldest pending and sizes read now; byNamespace from the latest count. */
  const snapshot = (): DepthSnapshot => {
    const at = now();
    const oldest = store.oldestPendingReceivedAtMs();
    return {
      atMs: at,
      totals: store.counts(),
      byNamespace: byNamespace ?? [],
      byNamespaceAtMs,
      oldestPendingAgeSeconds: oldest === null ? 0 : Math.max(0, (at - oldest) / 1000),
      sizeBytes: store.sizeBytes(),
    };
  };

  return {
    /**
     * Totals, oldest pending and sizes fresh; byNamespace from the latest
     * background count, or (fresh) from a count that starts after this call
     * began — it still runs off the event loop, only this caller waits.
     */
    async get(opts: { fresh?: boolean; waitForStale?: boolean } = {}): Promise<DepthSnapshot> {
      if (opts.fresh) {
        // A count already running may have started before the caller's last change: let it finish, count again.
        if (inFlight !== null) await inFlight;
        await recount();
      } else if (byNamespace === null || now() - byNamespaceAtMs >= options.depthCacheMs) {
        // /metrics never waits (a scrape stays fast); the dashboard waits a little for a new count (it runs
        // off the event loop; only this request waits), past maxWaitMs it serves what there is
        // (until the very first count lands: nothing, byNamespaceAtMs 0).
        if (!opts.waitForStale) {
          void recount();
          return snapshot();
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([recount(), new Promise<void>((r) => (timer = setTimeout(r, options.maxWaitMs ?? 1000)))]);
        clearTimeout(timer);
      }
      return snapshot();
    },
    /** Recount soon (after replay/discard, so the page shows the change on its next refresh). */
    invalidate(): void {
      void recount();
    },
    close(): Promise<void> {
      return counter.close();
    },
  };
}
export type DepthCache = ReturnType<typeof createDepthCache>;
