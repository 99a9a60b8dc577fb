// What the store's parts (dispatch, upkeep steps, dead letters) share: the
// database handle and the in-memory state counters, plus the one way to write,
// `transaction`, which applies counter deltas only once the transaction has
// committed, so a rolled-back write never skews counts().
import type { Database } from "bun:sqlite";
import { STATE_CODE, type ActivationState, type StateCounts } from "./types.ts";

export const STATES = Object.keys(STATE_CODE) as ActivationState[];
export const STATE_BY_CODE: Record<number, ActivationState> = Object.fromEntries(
  STATES.map((s) => [STATE_CODE[s], s]),
);

export function emptyCounts(): StateCounts {
  return { pending: 0, delay: 0, processing: 0, claimed: 0, retry: 0, failure: 0, complete: 0 };
}

/** Counter changes made by one transaction; applied after commit. */
export class Delta {
  readonly byState = emptyCounts();
  add(state: ActivationState, n: number): void {
    this.byState[state] += n;
  }
  move(from: ActivationState, to: ActivationState, n: number): void {
    this.byState[from] -= n;
    this.byState[to] += n;
  }
}

export interface StoreContext {
  db: Database;
  /** Live counters; read via counts(). */
  counters: StateCounts;
  /** Runs fn in one IMMEDIATE transaction; fn's Delta is applied to counters after commit. */
  transaction<T>(fn: (delta: Delta) => T): T;
  /** Added to every processing deadline, ms. */
  graceMs: number;
  maxDelaySec: number;
}

export function createContext(db: Database, graceMs: number, maxDelaySec: number): StoreContext {
  const counters = emptyCounts();
  return {
    db,
    counters,
    graceMs,
    maxDelaySec,
    transaction<T>(fn: (delta: Delta) => T): T {
      const delta = new Delta();
      const result = db.transaction(() => fn(delta)).immediate();
      for (const s of STATES) counters[s] += delta.byState[s];
      return result;
    },
  };
}
