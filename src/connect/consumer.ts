// What ConsumerService and IngestService do, independent of transport: the
// fast gRPC path (fast-grpc.ts) and the Connect/gRPC-Web services
// (services.ts) both call these, so status codes are decided in one place
// (docs/spec/wire-contract.md "Status codes and their meaning to clients").
import { Code, ConnectError } from "@connectrpc/connect";
import type { BrokerConfig } from "../config/broker.ts";
import { InvalidActivation } from "../activation/decode.ts";
import { Backpressure } from "../ingest/ingest.ts";
import type { Logger } from "../log.ts";
import { completionTotal } from "../metrics.ts";
import { storageFaultOf } from "../store/disk.ts";
import type { ClaimFilter, ClaimedActivation, InflightStore, StatusUpdate, TerminalStatus } from "../store/types.ts";
import type { DecodedStatusUpdate, TaskFilter } from "../protocol/messages.ts";

/** The part of the ingest pipeline (src/ingest/ingest.ts) the Produce RPC needs. */
export interface ProduceTarget {
  produce(
    activations: Uint8Array[],
    source: "rpc" | "kafka",
  ):
    | { accepted: number; duplicates: number; expired: number }
    | Promise<{ accepted: number; duplicates: number; expired: number }>;
}

export interface ProduceCounts {
  accepted: number;
  duplicates: number;
  expired: number;
}

export interface ConsumerCore {
  /** Claimed activation, or null for "nothing claimable" (NOT_FOUND on GetTask). */
  getTask(filter: TaskFilter): Promise<ClaimedActivation | null>;
  /** Next activation when fetch_next was asked and one was claimable, else null (never NOT_FOUND). */
  setTaskStatus(update: DecodedStatusUpdate): Promise<ClaimedActivation | null>;
  setBatchStatus(updates: DecodedStatusUpdate[]): Promise<void>;
  /** Commits already validated outcomes (statusUpdateOf) and counts them; streaming delivery's results. */
  commitResults(updates: StatusUpdate[]): Promise<void>;
  /** True when the broker delivers by push: GetTask and the delivery stream are refused (PERMISSION_DENIED). */
  readonly push: boolean;
  produce(activations: Uint8Array[]): Promise<ProduceCounts>;
}

export const NO_PENDING = "No pending activations";
const BRIEF_BACKPRESSURE_WAIT_MS = 1000;

const TERMINAL: Record<number, TerminalStatus> = { 3: "failure", 4: "retry", 5: "complete" };

/**
 * Claim filter of a request, or null when it can match nothing: a namespace
 * without an application claims nothing (namespaces are unique only within
 * an application). Empty strings count as unset.
 */
export function claimFilterOf(filter: TaskFilter | undefined): ClaimFilter | null {
  const application = filter?.application || undefined;
  const namespace = filter?.namespace || undefined;
  if (namespace !== undefined && application === undefined) return null;
  const out: ClaimFilter = {};
  if (application !== undefined) out.application = application;
  if (namespace !== undefined) out.namespace = namespace;
  return out;
}

/** Validates a worker's status update; INVALID_ARGUMENT for anything but FAILURE, RETRY, COMPLETE. */
export function statusUpdateOf(u: DecodedStatusUpdate): StatusUpdate {
  const status = TERMINAL[u.status];
  if (status === undefined) {
    throw new ConnectError(
      `invalid status ${u.status} for activation ${JSON.stringify(u.id)}: expected FAILURE (3), RETRY (4) or COMPLETE (5)`,
      Code.InvalidArgument,
    );
  }
  const out: StatusUpdate = { id: u.id, status };
  if (status === "retry") {
    if (u.maxAttempts !== undefined) out.maxAttempts = u.maxAttempts;
    if (u.delayOnRetry !== undefined) out.delayOnRetry = u.delayOnRetry;
  }
  return out;
}

/**
 * A store error as an RPC error. A full disk, failing I/O or a database
 * locked past busy_timeout is UNAVAILABLE, which clients retry (Sentry's
 * worker also moves to another broker after a few); anything else is
 * INTERNAL naming the operation (wire contract "Storage failures").
 */
function storageFailure(operation: string, err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  const fault = storageFaultOf(err);
  if (fault !== null) {
    const what = fault === "full" ? "disk full" : fault === "io" ? "disk I/O failing" : "database busy";
    return new ConnectError(
      `storage unavailable during ${operation} (${what}): ${detail}; retry later`,
      Code.Unavailable,
      undefined,
      undefined,
      err,
    );
  }
  return new ConnectError(`storage failure during ${operation}: ${detail}`, Code.Internal, undefined, undefined, err);
}

/** What ConsumerService asks of the store: claims and status updates. */
export type DispatchStore = Pick<InflightStore, "claim" | "setStatus" | "setStatuses">;
/**
 * A storage error worth a log line per call. Disk faults are not: the store
 * logs when commits start and stop failing, and thousands of calls a second
 * would each log the same line meanwhile.
 */
function logFailure(log: Logger, operation: string, err: unknown): void {
  if (storageFaultOf(err) === null) log.error("rpc_storage_failure", { operation, error: err });
}

export function createConsumerCore(deps: {
  config: Pick<BrokerConfig, "delivery_mode">;
  store: DispatchStore;
  ingest: ProduceTarget;
  log: Logger;
}): ConsumerCore {
  const { config, store, ingest, log } = deps;
  const push = config.delivery_mode === "push";
  // Outcomes reported by workers, by status (the store counts only unknown ids); children cached for the hot path.
  const outcomes = {
    failure: completionTotal.labels("failure"),
    retry: completionTotal.labels("retry"),
    complete: completionTotal.labels("complete"),
  };
  async function commit(valid: StatusUpdate[], operation: string): Promise<void> {
    if (valid.length === 0) return;
    try {
      await store.setStatuses(valid);
    } catch (err) {
      logFailure(log, "set_statuses", err);
      throw storageFailure(operation, err);
    }
    for (const u of valid) outcomes[u.status].inc();
  }
  return {
    // getTask and setTaskStatus return the store's promise directly (no async
    // frame): they are the hot path, and each extra promise hop is measurable.
    getTask(filter) {
      if (push)
        return Promise.reject(
          new ConnectError("GetTask is disabled: the broker delivers by push", Code.PermissionDenied),
        );
      const claim = claimFilterOf(filter);
      if (claim === null) return Promise.resolve(null);
      return store.claim(claim).then(undefined, (err: unknown) => {
        logFailure(log, "claim", err);
        throw storageFailure("GetTask (claim)", err);
      });
    },
    setTaskStatus(u) {
      let update: StatusUpdate;
      try {
        update = statusUpdateOf(u);
      } catch (err) {
        return Promise.reject(err);
      }
      // fetch_next in push mode would bypass push delivery; treat it as not asked.
      const next = u.fetchNext !== undefined && !push ? claimFilterOf(u.fetchNext) : null;
      const counter = outcomes[update.status];
      return store.setStatus(update, next ?? undefined).then(
        (claimed) => {
          counter.inc();
          return claimed;
        },
        (err: unknown) => {
          logFailure(log, "set_status", err);
          throw storageFailure("SetTaskStatus", err);
        },
      );
    },
    setBatchStatus(updates) {
      // Validate every update before writing any (wire contract).
      let valid: StatusUpdate[];
      try {
        valid = updates.map(statusUpdateOf);
      } catch (err) {
        return Promise.reject(err);
      }
      return commit(valid, "SetBatchActivationStatus");
    },
    commitResults: (updates) => commit(updates, "delivery results"),
    push,
    async produce(activations) {
      if (activations.length === 0) return { accepted: 0, duplicates: 0, expired: 0 };
      // A brief refusal (the WAL checkpointer behind a burst) is waited out here, up to a second, rather than answered.
      const until = Date.now() + BRIEF_BACKPRESSURE_WAIT_MS;
      for (;;) {
        try {
          const r = await ingest.produce(activations, "rpc");
          return { accepted: r.accepted, duplicates: r.duplicates, expired: r.expired };
        } catch (err) {
          if (err instanceof Backpressure && err.brief && Date.now() < until) {
            await new Promise((r) => setTimeout(r, 10));
            continue;
          }
          throw produceError(err, log);
        }
      }
    },
  };
}

/**
 * Ingest's refusals as RPC errors: invalid activation (INVALID_ARGUMENT),
 * backpressure, a filling or full disk included (RESOURCE_EXHAUSTED: retry
 * later), or storage failure. The one place Produce's codes are decided, for
 * every transport.
 */
function produceError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof InvalidActivation) {
    // ingest's message already names the index ("activation 3: activation is missing namespace").
    const where = err.index !== undefined && !err.message.startsWith("activation ") ? `activation ${err.index}: ` : "";
    return new ConnectError(`${where}${err.message}; no activation of this request was stored`, Code.InvalidArgument);
  }
  if (err instanceof Backpressure) {
    return new ConnectError(`broker is not accepting work right now: ${err.message}`, Code.ResourceExhausted);
  }
  logFailure(log, "produce", err);
  return storageFailure("Produce (insert)", err);
}
