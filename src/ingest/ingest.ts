// Ingest: the one path by which activations enter the inflight store (the
// ingest RPC and the Kafka consumer both call produce). Validates the whole
// batch before storing any of it, drops already-expired and killed rows,
// applies backpressure (a filling disk included), drops activations whose
// idempotency key is already claimed (in the store's insert transaction), and
// returns only once the batch is committed.
import type { BrokerConfig } from "../config/broker.ts";
import type { Logger } from "../log.ts";
import { ingestTotal } from "../metrics.ts";
import type { InflightStore, KafkaOrigin, NewRow } from "../store/types.ts";
import { InvalidActivation } from "../activation/decode.ts";
import { storageFaultOf } from "../store/disk.ts";
import { activationToRow } from "../store/row.ts";
import { admit, limitsFromConfig } from "./backpressure.ts";

/** Ingest refused the batch for now; retry later (RPC: RESOURCE_EXHAUSTED; Kafka: pause). */
export class Backpressure extends Error {
  readonly reason: string;
  /** Lifts by itself within tens of milliseconds (the WAL checkpointer catching up): worth waiting for. */
  readonly brief: boolean;
  constructor(reason: string, brief = false) {
    super(`backpressure: ${reason}`);
    this.name = "Backpressure";
    this.reason = reason;
    this.brief = brief;
  }
}

export interface ProduceResult {
  /** Rows newly stored. */
  accepted: number;
  /** Ids already held, or idempotency keys already claimed; ignored. */
  duplicates: number;
  /** Of `duplicates`, those dropped for their idempotency key. */
  keyDuplicates: number;
  /** Already past expiry at ingest; dropped. */
  expired: number;
  /** Dropped by the runtime kill switch. */
  killed: number;
}

export type IngestSource = "rpc" | "kafka";

export interface Ingest {
  /**
   * Throws InvalidActivation (with `index` of the first bad one; nothing
   * stored) or Backpressure (nothing stored). Synchronous: durable on return.
   */
  produce(activations: Uint8Array[], source: IngestSource, origins?: (KafkaOrigin | null)[]): ProduceResult;
}

/** What ingest asks of the store: inserts, and the depths and size backpressure decides on. */
export type IngestStore = Pick<InflightStore, "insert" | "counts" | "sizeBytes" | "walContentBytes" | "diskFreeBytes">;

/** The settings ingest reads. */
export type IngestConfig = Pick<BrokerConfig, "store" | "max_delayed_task_allowed_sec">;

export interface IngestOptions {
  store: IngestStore;
  config: IngestConfig;
  log: Logger;
  /** Runtime kill switch; must not throw (it fails open). */
  drop?: (row: NewRow) => boolean;
}

export function createIngest({ store, config, log, drop }: IngestOptions): Ingest {
  const limits = limitsFromConfig(config.store);
  // Past this the checkpointer is behind (commits that never pause): ingest waits for it (backpressure.ts).
  limits.maxWalBytes = config.store.wal_max_bytes;
  const rowOpts = { maxDelaySec: config.max_delayed_task_allowed_sec };

  function validate(activations: Uint8Array[], nowMs: number, source: IngestSource, origins?: (KafkaOrigin | null)[]) {
    return activations.map((bytes, index) => {
      try {
        return activationToRow(bytes, nowMs, rowOpts, origins?.[index] ?? null);
      } catch (err) {
        ingestTotal.inc({ source, result: "invalid" });
        const message = err instanceof Error ? err.message : String(err);
        log.warn("activation_invalid", { source, index, error: message, origin: origins?.[index] ?? undefined });
        throw new InvalidActivation(`activation ${index}: ${message}`, index);
      }
    });
  }

  return {
    produce(activations, source, origins) {
      const nowMs = Date.now();
      const rows = validate(activations, nowMs, source, origins);
      let expired = 0;
      let killed = 0;
      const keep = rows.filter((r) => {
        if (r.expiresAtMs !== null && r.expiresAtMs <= nowMs) {
          expired++;
          return false;
        }
        if (drop?.(r)) {
          killed++;
          return false;
        }
        return true;
      });
      if (keep.length > 0) {
        const size = store.sizeBytes();
        // Pages in the WAL may still be copied into the database file: count the WAL file's size (which bounds them) as used.
        const decision = admit(
          store.counts(),
          keep,
          limits,
          size.db,
          nowMs,
          store.diskFreeBytes() - size.wal,
          store.walContentBytes(),
        );
        if (!decision.ok) {
          ingestTotal.inc({ source, result: "rejected" }, keep.length);
          throw new Backpressure(decision.reason, decision.brief === true);
        }
      }
      let inserted;
      try {
        inserted = store.insert(keep);
      } catch (err) {
        // A full disk, failing I/O or a lock held too long: nothing was stored and
        // trying again later may work, so it is backpressure (RPC: retryable
        // RESOURCE_EXHAUSTED; Kafka: pause and retry), not a failure.
        const fault = storageFaultOf(err);
        if (fault === null) throw err;
        ingestTotal.inc({ source, result: "rejected" }, keep.length);
        const what = fault === "full" ? "disk full" : fault === "io" ? "disk I/O failing" : "database busy";
        throw new Backpressure(`${what} (${err instanceof Error ? err.message : String(err)})`);
      }
      const { accepted, duplicates, keyDuplicates } = inserted;
      if (accepted) ingestTotal.inc({ source, result: "accepted" }, accepted);
      if (duplicates) ingestTotal.inc({ source, result: "duplicate" }, duplicates);
      if (keyDuplicates) ingestTotal.inc({ source, result: "duplicate_key" }, keyDuplicates);
      if (expired) ingestTotal.inc({ source, result: "expired" }, expired);
      if (killed) ingestTotal.inc({ source, result: "killed" }, killed);
      return { accepted, duplicates: duplicates + keyDuplicates, keyDuplicates, expired, killed };
    },
  };
}
