// The inflight store's contract: what ingest, dispatch and upkeep may ask of
// it. The SQLite implementation is sqlite.ts; the state machine it enforces is
// in ../../../shared/spec/broker.md ("States", "Upkeep").

/** Row states of broker.md. Stored as small integers (see STATE_CODE). */
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

/** A decoded activation ready to be stored; built by ingest/activation.ts. */
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
}

/** A row handed to a worker: its id and original bytes. */
export interface ClaimedActivation {
  id: string;
  activation: Uint8Array;
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
}

export interface InsertResult {
  accepted: number;
  duplicates: number;
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
