// What the store's parts (dispatch, upkeep steps, dead letters) share: the
// database handle and the in-memory state counters, plus the one way to write,
// `transaction`, which applies counter deltas only once the transaction has
// committed, so a rolled-back write never skews counts(), and then tells the
// pending watcher (streaming delivery) that rows became claimable, and the
// disk guard (disk.ts) whether commits are failing on the disk.
import type { Database } from "bun:sqlite";
import { storageFaultOf, type DiskGuard } from "./disk.ts";
import { STATE_CODE, pendingKey, type ActivationState, type PendingListener, type StateCounts } from "./types.ts";

export const STATES = Object.keys(STATE_CODE) as ActivationState[];
export const STATE_BY_CODE: Record<number, ActivationState> = Object.fromEntries(STATES.map((s) => [STATE_CODE[s], s]));

export function emptyCounts(): StateCounts {
  return { pending: 0, delay: 0, processing: 0, claimed: 0, retry: 0, failure: 0, complete: 0 };
}

/** Counter changes made by one transaction; applied after commit. */
export class Delta {
  readonly byState = emptyCounts();
  /** Rows that entered Pending (inserted, reset, undelayed, released). */
  pendingIn = 0;
  /** Of those, the ones whose application/namespace is known, by pendingKey(); the rest wake every watcher. */
  pendingByKey: Map<string, number> | null = null;
  /** True once a row changed state: the commit wrote something (the disk guard's evidence of recovery). */
  wrote = false;
  add(state: ActivationState, n: number): void {
    this.byState[state] += n;
    if (n !== 0) this.wrote = true;
    if (state === "pending" && n > 0) this.pendingIn += n;
  }
  move(from: ActivationState, to: ActivationState, n: number): void {
    this.byState[from] -= n;
    this.byState[to] += n;
    if (n !== 0) this.wrote = true;
    if (to === "pending" && n > 0) this.pendingIn += n;
  }
  /** Names the application/namespace of `n` rows counted in pendingIn (lets a watcher wake only matching streams). */
  pendingKey(application: string, namespace: string, n = 1): void {
    const key = pendingKey(application, namespace);
    const m = (this.pendingByKey ??= new Map());
    m.set(key, (m.get(key) ?? 0) + n);
  }
}

/** What a transaction writes: "ingest" adds rows (grows the file), "write" changes existing ones. */
export type WriteKind = "ingest" | "write";

export interface StoreContext {
  db: Database;
  /** Live counters; read via counts(). */
  counters: StateCounts;
  /** Runs fn in one IMMEDIATE transaction; fn's Delta is applied to counters after commit. */
  transaction<T>(fn: (delta: Delta) => T, kind?: WriteKind): T;
  /** Added to every processing deadline, ms. */
  graceMs: number;
  maxDelaySec: number;
  /** Called after every commit that moved rows into Pending; never throws into the writer. */
  onPending: PendingListener | null;
}

export function createContext(db: Database, graceMs: number, maxDelaySec: number, disk?: DiskGuard): StoreContext {
  const counters = emptyCounts();
  // Made once: bun:sqlite builds a wrapper (and its variants) per db.transaction() call, ~2 us a commit.
  const run = db.transaction(<T>(fn: (delta: Delta) => T, delta: Delta): T => fn(delta));
  const ctx: StoreContext = {
    db,
    counters,
    graceMs,
    maxDelaySec,
    onPending: null,
    transaction<T>(fn: (delta: Delta) => T, kind: WriteKind = "write"): T {
      const delta = new Delta();
      let result: T;
      try {
        result = run.immediate(fn, delta) as T;
      } catch (err) {
        const fault = storageFaultOf(err);
        if (fault !== null) disk?.failed(kind, fault, err);
        throw err;
      }
      if (delta.wrote) disk?.succeeded(kind);
      for (const s of STATES) counters[s] += delta.byState[s];
      if (delta.pendingIn > 0 && ctx.onPending !== null) {
        try {
          ctx.onPending(delta.pendingIn, delta.pendingByKey);
        } catch {
          // Committed already: a failing watcher must not turn the write into an error (it logs its own failures).
        }
      }
      return result;
    },
  };
  return ctx;
}
