// Where upkeep sends retries and dead letters. Pluggable: the Kafka publisher
// (src/kafka/) produces to the retry / dead-letter topics; the local one here
// is used without Kafka and writes back into the same SQLite database.
import { activationToRow } from "../store/row.ts";
import type { InflightStore, NewRow } from "../store/types.ts";

export interface DeadLetterRow {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
}

export interface UpkeepPublisher {
  /** Resolves once the retry activation is durably accepted; upkeep marks the old row Complete only then. */
  publishRetry(activation: Uint8Array): Promise<void>;
  /** Resolves once the original bytes are durably dead-lettered; until then the Failure row stays. */
  publishDeadLetter(original: Uint8Array, row: DeadLetterRow): Promise<void>;
}

/**
 * Retries are re-inserted as new Pending/Delay activations (no backpressure:
 * a retry must never be dropped); dead letters go to the local table. Both
 * are idempotent (retry ids are derived, dead letters keyed by id), so a
 * publish repeated after a crash adds nothing.
 */
export function localPublisher(
  store: Pick<InflightStore, "insert" | "addDeadLetter">,
  opts: {
    maxDelaySec?: number;
    /** Runtime kill switch: a killed task's retry is dropped, as it would be on its way back in from Kafka. */
    drop?: (row: NewRow) => boolean;
  } = {},
): UpkeepPublisher {
  const maxDelaySec = opts.maxDelaySec ?? 3600;
  return {
    async publishRetry(activation) {
      const row = activationToRow(activation, Date.now(), { maxDelaySec }, null);
      if (opts.drop?.(row)) return;
      store.insert([row]);
    },
    async publishDeadLetter(original, row) {
      store.addDeadLetter({ ...row, onAttemptsExceeded: 2, activation: original }, Date.now());
    },
  };
}

/** Alias of localPublisher (the name src/broker.ts uses). */
export const createLocalPublisher = localPublisher;
