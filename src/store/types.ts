// The inflight store's contract: what ingest, dispatch and upkeep may ask of
// it. The SQLite implementation is sqlite.ts; the state machine it enforces is
// in docs/spec/broker.md ("States", "Upkeep").

import type { WriteHealth } from "./disk.ts";

/** Row states of docs/spec/broker.md. Stored as small integers (see STATE_CODE). */
export type ActivationState = "pending" | "delay" | "processing" | "claimed" | "retry" | "failure" | "complete";

export const STATE_CODE: Record<ActivationState, number> = {
  pending: 1,
  delay: 2,
  processing: 3,
  claimed: 4,
  retry: 5,
  failure: 6,
  complete: 7,
};

/** Where a row came from when it was consumed from Kafka (null for the ingest RPC). */
export interface KafkaOrigin {
  topic: string;
  partition: number;
  offset: string; // int64 as decimal string
}

/** A consumer group's committed next offset for one partition ("-1": none), as Kafka reports it. */
export interface KafkaPartitionCommit {
  topic: string;
  partition: number;
  next: string;
}

/** A decoded activation ready to be stored; built by store/row.ts. */
export interface NewRow {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  /** Unix ms with sub-second precision. */
  receivedAtMs: number;
  expiresAtMs: number | null;
  delayUntilMs: number | null;
  processingDeadlineDurationS: number;
  atMostOnce: boolean;
  /** 0 unspecified, 1 discard, 2 deadletter. */
  onAttemptsExceeded: number;
  /** The original TaskActivation protobuf bytes, served back unchanged. */
  activation: Uint8Array;
  origin: KafkaOrigin | null;
  /**
   * Scoped idempotency key (application, NUL, the activation's
   * `taskplatform-idempotency-key` header); null or absent when it has none.
   */
  idempotencyKey?: string | null;
}

/** A row handed to a worker: its id and original bytes. */
export interface ClaimedActivation {
  id: string;
  activation: Uint8Array;
}

/** Told after a commit that rows entered Pending: how many, and by pendingKey(application, namespace) where known. */
export type PendingListener = (count: number, byKey: ReadonlyMap<string, number> | null) => void;

/** The key of a PendingListener's map: application and namespace. */
export function pendingKey(application: string, namespace: string): string {
  return `${application}\u0000${namespace}`;
}

/** A row claimed by claimMany: also its seq, which finds it again without the id index. */
export interface ClaimedRow extends ClaimedActivation {
  seq: number;
}

/**
 * Streaming delivery's standing offer to take rows as they are inserted
 * (store.insert), instead of waking a stream to claim them in a second
 * transaction: a stream waiting for work reserves the row while it is
 * inserted, the row is stored as Processing (its deadline starting now) in
 * the insert's own transaction, and it is handed over only once that
 * transaction has committed. A row that was not stored after all (a duplicate
 * id, a rolled-back transaction) gives its credit back.
 */
export interface HandOff {
  /** A waiting stream for this application/namespace reserves one of its credits; null when none waits. */
  reserve(application: string, namespace: string): object | null;
  /** After the commit: the row, now Processing, for the stream that reserved it. */
  deliver(taker: object, row: ClaimedRow): void;
  /** The reserved row was not stored: the credit goes back. */
  cancel(taker: object): void;
}

export interface ClaimFilter {
  /** When set, only rows of this application. */
  application?: string;
  /** When set (and application set), only rows of this namespace. */
  namespace?: string;
}

/** Worker-reported outcome (wire statuses FAILURE=3, RETRY=4, COMPLETE=5). */
export type TerminalStatus = "failure" | "retry" | "complete";

export interface StatusUpdate {
  id: string;
  status: TerminalStatus;
  /** RETRY only: rewrite retry_state.max_attempts before retrying. */
  maxAttempts?: number;
  /** RETRY only: rewrite retry_state.delay_on_retry before retrying. */
  delayOnRetry?: bigint;
  /** The row's seq when the caller knows it (a ClaimedRow): found by rowid, the id still checked. */
  seq?: number;
}

export interface InsertResult {
  accepted: number;
  /** Ids already held; ignored. */
  duplicates: number;
  /** Idempotency keys already claimed within the window; not stored. */
  keyDuplicates: number;
}

export type StateCounts = Record<ActivationState, number>;

/** A dead letter kept locally when no Kafka is configured. */
export interface DeadLetter {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  /** Unix ms when it was dead-lettered. */
  deadLetteredAtMs: number;
  activation: Uint8Array;
}

/** A page of dead letters: at most `limit` rows and about `maxBytes` of activation bytes (at least one row). */
export interface DeadLetterPageOptions {
  limit: number;
  afterId?: string;
  /** Activation bytes a page may hold; the first row is always included. Default 4 MiB. */
  maxBytes?: number;
}

export interface DeadLetterPage {
  items: DeadLetter[];
  total: number;
  /** The cursor of the next page (the last id here) when more dead letters follow; null on the last page. */
  nextAfter: string | null;
}

/** A row as the admin API sees it (GetActivation). */
export interface StoredActivation {
  id: string;
  state: ActivationState;
  namespace: string;
  taskname: string;
  application: string;
  processingAttempts: number;
  /** Unix ms; null unless processing. */
  processingDeadlineMs: number | null;
  receivedAtMs: number;
  origin: KafkaOrigin | null;
  activation: Uint8Array;
}

export interface NamespaceDepth {
  namespace: string;
  state: ActivationState;
  count: number;
}

/** A Retry or Failure row that upkeep hands to a publisher. */
export interface UpkeepRow {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  /** 0 unspecified, 1 discard, 2 deadletter. */
  onAttemptsExceeded: number;
  activation: Uint8Array;
}

/** A row the kill switch may drop (runtime config, src/runtime/). */
export interface KillCandidate {
  id: string;
  namespace: string;
  taskname: string;
  activation: Uint8Array;
}

/**
 * The inflight store. Claims and status updates are asynchronous because
 * concurrent callers share one transaction (group commit); everything else is
 * synchronous and committed on return.
 */
/** The store side of upkeep (docs/spec/broker.md "Upkeep"); each step is one transaction and returns what it did. */
export interface UpkeepSteps {
  retryRows(limit: number): UpkeepRow[];
  failureRows(limit: number): UpkeepRow[];
  /** Retry/Failure -> Complete (after a successful publish). */
  markComplete(ids: string[]): number;
  resetExpiredDeadlines(nowMs: number): { reset: number; failed: number };
  expireClaims(nowMs: number): number;
  failExhaustedAttempts(maxAttempts: number): number;
  /** At most `limit` rows per call (bounded pause); default unlimited. */
  removeExpired(nowMs: number, limit?: number): number;
  undelay(nowMs: number): number;
  /** Failure rows whose policy is discard/unspecified -> Complete. */
  discardFailures(): number;
  /** At most `limit` rows per call (bounded pause); default unlimited. */
  deleteComplete(limit?: number): number;
  /** Incremental vacuum of at most maxPages free pages; returns pages freed. */
  reclaimSpace(maxPages: number): number;
  /** VACUUM: rebuilds the file compactly (full_vacuum_on_start / full_vacuum_on_upkeep); returns the ms it took. */
  fullVacuum(): number;
  /** Free pages as a share of the file's pages (0..1): what a VACUUM would give back. */
  freePageShare(): number;
}

export interface ForwardRow {
  id: string;
  namespace: string;
  taskname: string;
  activation: Uint8Array;
}

/** Stored rows forwarded to another topic (runtime config demotion; forwarding.ts). */
export interface Forwarding {
  /** Pending -> Claimed (lease of leaseMs) for at most `limit` unexpired rows of these namespaces, oldest first. */
  claimForForward(namespaces: string[], limit: number, leaseMs: number): ForwardRow[];
  /** Claimed -> Complete after an acknowledged publish; returns rows moved. */
  completeForwarded(ids: string[]): number;
  /** Claimed -> Pending after a failed publish; returns rows moved. */
  releaseForwarded(ids: string[]): number;
}

export interface InflightStore extends UpkeepSteps, Forwarding {
  /** One transaction; duplicate ids (still held) are ignored and counted. */
  insert(rows: NewRow[]): InsertResult;
  /** Pending -> Processing for the oldest matching row; null when none. */
  claim(filter: ClaimFilter): Promise<ClaimedActivation | null>;
  /**
   * Pending -> Processing for up to `max` of the oldest matching rows, in one
   * statement (shared with the other claims of the same group commit); each
   * row's processing deadline starts now. Empty when none.
   */
  claimMany(filter: ClaimFilter, max: number): Promise<ClaimedRow[]>;
  /**
   * Runs the queued claims and status updates now instead of at the end of
   * this turn of the event loop (a delivery stream woken by new rows: they go
   * out without waiting for the turn to end).
   */
  flushNow(): void;
  /** Processing -> Pending for rows claimMany handed out that were never sent; not counted as an attempt. */
  releaseUnsent(rows: readonly ClaimedRow[]): number;
  /**
   * Calls `listener` after every commit that made rows claimable (inserted,
   * deadline reset, undelayed, released): how many, and by application and
   * namespace where the store knows them (null map or a smaller sum: wake all).
   * One listener; returns the function that removes it.
   */
  watchPending(listener: PendingListener): () => void;
  /** Sets (null: clears) the one taker of freshly inserted rows (see HandOff). */
  offerHandOff(handOff: HandOff | null): void;
  /** Applies a worker's outcome (unknown id: no-op) and, with fetchNext, claims the next row. */
  setStatus(update: StatusUpdate, fetchNext?: ClaimFilter): Promise<ClaimedActivation | null>;
  setStatuses(updates: StatusUpdate[]): Promise<void>;

  /** Push mode: Pending -> Claimed with a lease of leaseMs; the pusher then calls markDelivered or releaseClaim. */
  claimForPush(filter: ClaimFilter, leaseMs: number): ClaimedActivation | null;
  /** Push mode: Claimed -> Processing (deadline starts now). False when the row is no longer claimed. */
  markDelivered(id: string): boolean;
  /** Push mode: Claimed -> Pending (the push failed). */
  releaseClaim(id: string): boolean;

  /** Deletes at most `limit` idempotency keys past their window; returns how many (upkeep). */
  removeExpiredKeys(nowMs: number, limit: number): number;
  /** Idempotency keys still within their window. */
  idempotencyKeyCount(): number;
  /** Whether commits are failing on the disk, and the free space left (disk.ts). */
  writeHealth(): WriteHealth;
  /** Free bytes on the store's filesystem, at most ~20 ms old (Infinity for :memory:). */
  diskFreeBytes(): number;

  /** O(1): in-memory counters kept in step with every transition. */
  counts(): StateCounts;
  /** Re-derives counts() from the database (self-healing; upkeep calls it). */
  recount(): StateCounts;
  depthsByNamespace(): NamespaceDepth[];
  /** received_at of the oldest pending row by arrival; null when none is pending. */
  oldestPendingReceivedAtMs(): number | null;
  sizeBytes(): { db: number; wal: number };
  /** Bytes of WAL written since its last restart, from the WAL index (wal-index.ts); 0 when the next commit restarts it. */
  walContentBytes(): number;
  getActivation(id: string): StoredActivation | null;

  // Local dead letters (no Kafka).
  addDeadLetter(row: UpkeepRow, nowMs: number): void;
  /** A page bounded by rows and activation bytes (dead-letters.ts). */
  listDeadLetters(opts: DeadLetterPageOptions): DeadLetterPage;
  getDeadLetter(id: string): DeadLetter | null;
  /** Re-queues as a new activation (new id, attempts 0, received now); returns the new id, null if unknown. */
  replayDeadLetter(id: string): string | null;
  discardDeadLetter(id: string): boolean;

  // Kill switch (runtime config): paged sweep over the rows of killed task names, in any state.
  killableByTaskname(tasknames: string[], afterId: string | null, limit: number): KillCandidate[];
  removeKilled(ids: string[]): number;
  /**
   * Kafka rebalances: deletes the rows of these origins that were never handed
   * out (pending or delay), so the partition's next owner stores them once.
   * Returns rows deleted.
   */
  discardUncommitted(origins: KafkaOrigin[]): number;
  /**
   * Kafka offset bookkeeping (kafka-offsets.ts): called before an offset
   * commit is sent, and once Kafka acknowledged it. Completed rows are kept
   * until their offsets are known committed, so a redelivery is a duplicate.
   */
  kafkaCommitting(topic: string, partition: number, next: string): void;
  kafkaCommitted(topic: string, partition: number, next: string): void;
  /** Kafka refused the commit announced by kafkaCommitting: back to what is known committed. */
  kafkaCommitFailed(topic: string, partition: number): void;
  /**
   * The group's committed offsets (seen at each join): drops never-handed-out
   * rows this broker stored and did not commit that the group committed past
   * (another broker re-consumed them). Returns rows dropped.
   */
  reconcileKafkaCommits(commits: KafkaPartitionCommit[]): number;
  /** Completed rows of topics not in this list (no longer consumed here) are no longer held for a commit. */
  releaseKafkaTopicsExcept(consumedTopics: string[]): void;

  /** Flushes queued claims/status updates, then closes the database. */
  close(): Promise<void>;
}
