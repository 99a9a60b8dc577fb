// Turning TaskActivation bytes into an inflight row (validation included),
// and building the activation that a retry re-publishes. Pure: no I/O, the
// clock is a parameter. Rules: broker.md "Ingest" and "Upkeep" step 1.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { RetryStateSchema, TaskActivationSchema, type TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { KafkaOrigin, NewRow } from "../store/types.ts";
import { scanActivation, type ActivationFields } from "../activation/wire.ts";

/** An activation ingest refuses; `index` is its position in the offered batch when known. */
export class InvalidActivation extends Error {
  index: number | undefined;
  constructor(message: string, index?: number) {
    super(message);
    this.name = "InvalidActivation";
    this.index = index;
  }
}

export function decodeActivation(bytes: Uint8Array): TaskActivation {
  if (bytes.byteLength === 0) throw new InvalidActivation("empty activation payload");
  try {
    return fromBinary(TaskActivationSchema, bytes);
  } catch (err) {
    throw new InvalidActivation(`undecodable activation: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The indexed fields from a fully decoded activation (the slow path). */
function fieldsOf(a: TaskActivation): ActivationFields {
  const ts = a.receivedAt;
  return {
    id: a.id,
    namespace: a.namespace,
    taskname: a.taskname,
    application: a.application ?? "",
    receivedAtMs:
      !ts || (ts.seconds === 0n && ts.nanos === 0) ? null : Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000),
    processingDeadlineDuration: Number(a.processingDeadlineDuration),
    expires: a.expires !== undefined ? Number(a.expires) : undefined,
    delay: a.delay !== undefined ? Number(a.delay) : undefined,
    atMostOnce: a.retryState?.atMostOnce ?? false,
    onAttemptsExceeded: a.retryState?.onAttemptsExceeded ?? 0,
  };
}

/**
 * Validates and maps one activation. Throws InvalidActivation naming the first
 * missing field (id, namespace, taskname, application) or "undecodable".
 * A zero `expires` or `delay` is treated as unset (never "expire immediately").
 * The fast wire scan (activation/wire.ts) handles ordinary activations; anything it is
 * unsure about goes through the full decoder.
 */
export function activationToRow(
  bytes: Uint8Array,
  nowMs: number,
  opts: { maxDelaySec: number },
  origin: KafkaOrigin | null,
): NewRow {
  if (bytes.byteLength === 0) throw new InvalidActivation("empty activation payload");
  const a = scanActivation(bytes) ?? fieldsOf(decodeActivation(bytes));
  for (const field of ["id", "namespace", "taskname"] as const) {
    if (!a[field]) throw new InvalidActivation(`activation is missing ${field}`);
  }
  if (!a.application) throw new InvalidActivation(`activation ${a.id} is missing application`);
  const receivedAtMs = a.receivedAtMs ?? nowMs;
  const expires = a.expires ?? 0;
  const delay = Math.min(a.delay ?? 0, opts.maxDelaySec);
  return {
    id: a.id,
    namespace: a.namespace,
    taskname: a.taskname,
    application: a.application,
    receivedAtMs,
    expiresAtMs: expires > 0 ? receivedAtMs + expires * 1000 : null,
    delayUntilMs: delay > 0 ? receivedAtMs + delay * 1000 : null,
    processingDeadlineDurationS: a.processingDeadlineDuration,
    atMostOnce: a.atMostOnce,
    onAttemptsExceeded: a.onAttemptsExceeded,
    activation: bytes,
    origin,
  };
}

/** A random UUID4 as 32 lowercase hex chars (the producers' id format). */
export function newActivationId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

/**
 * The id a retry of `id` at `attempt` gets: UUID4-shaped but derived, so a
 * retry published twice (crash between publish and marking the old row
 * Complete) carries the same id and the second copy is ignored as a duplicate.
 */
export function retryActivationId(id: string, attempt: number): string {
  const h = new Bun.CryptoHasher("sha256").update(`${id}:retry:${attempt}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x40; // version 4
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  return h.subarray(0, 16).toString("hex");
}

/**
 * The activation a Retry row re-publishes: new id, received_at = now,
 * retry_state.attempts + 1, delay = delay_on_retry when set (otherwise no
 * delay: the producer's original countdown is not served twice).
 */
export function buildRetryActivation(stored: Uint8Array, nowMs: number): { id: string; bytes: Uint8Array } {
  const a = decodeActivation(stored);
  const retry = a.retryState ?? create(RetryStateSchema);
  retry.attempts += 1;
  a.retryState = retry;
  a.id = retryActivationId(a.id, retry.attempts);
  a.receivedAt = timestampFromMs(nowMs);
  a.delay = retry.delayOnRetry !== undefined && retry.delayOnRetry > 0n ? retry.delayOnRetry : undefined;
  return { id: a.id, bytes: toBinary(TaskActivationSchema, a) };
}

/** A dead letter re-queued by an operator: new random id, attempts 0, received_at = now. */
export function buildReplayActivation(stored: Uint8Array, nowMs: number): { id: string; bytes: Uint8Array } {
  const a = decodeActivation(stored);
  a.id = newActivationId();
  a.receivedAt = timestampFromMs(nowMs);
  if (a.retryState) a.retryState.attempts = 0;
  return { id: a.id, bytes: toBinary(TaskActivationSchema, a) };
}

/** SetTaskStatus(RETRY) may carry a new max_attempts / delay_on_retry: rewrite retry_state first. */
export function rewriteRetryState(stored: Uint8Array, maxAttempts: number | undefined, delayOnRetry: bigint | undefined): Uint8Array {
  const a = decodeActivation(stored);
  const retry = a.retryState ?? create(RetryStateSchema);
  if (maxAttempts !== undefined) retry.maxAttempts = maxAttempts;
  if (delayOnRetry !== undefined) retry.delayOnRetry = delayOnRetry;
  a.retryState = retry;
  return toBinary(TaskActivationSchema, a);
}
