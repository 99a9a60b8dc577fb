// Rewriting a stored activation: the copy a retry re-publishes, the copy an
// operator's replay of a dead letter re-queues, and the retry_state a
// SetTaskStatus(RETRY) may change. Pure: the clock is a parameter. Rules:
// docs/spec/broker.md "Upkeep" step 1.
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { RetryStateSchema, TaskActivationSchema } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { decodeActivation } from "./decode.ts";
import { IDEMPOTENCY_HEADER } from "./headers.ts";
import { derivedActivationId, newActivationId } from "./ids.ts";

/**
 * The id a retry of `id` at `attempt` gets: UUID4-shaped but derived, so a
 * retry published twice (crash between publish and marking the old row
 * Complete) carries the same id and the second copy is ignored as a duplicate.
 */
export function retryActivationId(id: string, attempt: number): string {
  return derivedActivationId(`${id}:retry:${attempt}`);
}

/**
 * The activation a Retry row re-publishes: new id, received_at = now,
 * retry_state.attempts + 1, delay = delay_on_retry when set (otherwise no
 * delay: the producer's original countdown is not served twice), and no
 * idempotency key: a retry is the same enqueue running again, it must not
 * meet its own key.
 */
export function buildRetryActivation(stored: Uint8Array, nowMs: number): { id: string; bytes: Uint8Array } {
  const a = decodeActivation(stored);
  delete a.headers[IDEMPOTENCY_HEADER];
  const retry = a.retryState ?? create(RetryStateSchema);
  retry.attempts += 1;
  a.retryState = retry;
  a.id = retryActivationId(a.id, retry.attempts);
  a.receivedAt = timestampFromMs(nowMs);
  a.delay = retry.delayOnRetry !== undefined && retry.delayOnRetry > 0n ? retry.delayOnRetry : undefined;
  return { id: a.id, bytes: toBinary(TaskActivationSchema, a) };
}

/**
 * A dead letter re-queued by an operator: new random id, attempts 0,
 * received_at = now, no idempotency key (the replay is deliberate; the
 * original still holds the key).
 */
export function buildReplayActivation(stored: Uint8Array, nowMs: number): { id: string; bytes: Uint8Array } {
  const a = decodeActivation(stored);
  delete a.headers[IDEMPOTENCY_HEADER];
  a.id = newActivationId();
  a.receivedAt = timestampFromMs(nowMs);
  if (a.retryState) a.retryState.attempts = 0;
  return { id: a.id, bytes: toBinary(TaskActivationSchema, a) };
}

/** SetTaskStatus(RETRY) may carry a new max_attempts / delay_on_retry: rewrite retry_state first. */
export function rewriteRetryState(
  stored: Uint8Array,
  maxAttempts: number | undefined,
  delayOnRetry: bigint | undefined,
): Uint8Array {
  const a = decodeActivation(stored);
  const retry = a.retryState ?? create(RetryStateSchema);
  if (maxAttempts !== undefined) retry.maxAttempts = maxAttempts;
  if (delayOnRetry !== undefined) retry.delayOnRetry = delayOnRetry;
  a.retryState = retry;
  return toBinary(TaskActivationSchema, a);
}
