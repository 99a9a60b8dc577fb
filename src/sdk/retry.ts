// Retry policy: how many attempts, which errors retry, what happens when the
// attempts run out, and the delay before each retry. The decision itself is a
// pure function of the policy, the activation's retry state and the error,
// and follows Sentry's `Retry` (taskbroker_client): with attempts left, a
// RetryTaskError always retries; errors in `ignore` never do; then only
// timeouts (errors named "TimeoutError", as AbortSignal.timeout() and fetch
// raise them) and the errors `on` names retry. Everything else fails. The
// processing deadline retries only when `on` names ProcessingDeadlineExceeded
// itself (upstream's deadline error sits outside Exception, so `on: [Error]`
// does not cover it either).
import { type ErrorClass, isErrorOf, isRetryRequest, ProcessingDeadlineExceeded } from "./errors.ts";

export type OnAttemptsExceeded = "discard" | "deadletter";

export interface RetryOptions {
  /** Total attempts, the first run included (max_attempts on the wire). Default 1 (no retry). */
  times?: number;
  /**
   * Errors that retry (subclasses match). Default none: only RetryTaskError and
   * timeouts retry. `[Error]` retries every error except the processing deadline.
   */
  on?: ErrorClass[];
  /** Errors that never retry (subclasses match); wins over `on`. */
  ignore?: ErrorClass[];
  /** What the broker does when attempts run out. Default "discard". */
  onAttemptsExceeded?: OnAttemptsExceeded;
  /** Seconds before a retry may run (delay_on_retry). Default none. */
  delay?: number;
}

export interface Retry {
  readonly times: number;
  readonly on: readonly ErrorClass[];
  readonly ignore: readonly ErrorClass[];
  readonly onAttemptsExceeded: OnAttemptsExceeded;
  readonly delaySec: number | undefined;
}

export function retry(options: RetryOptions = {}): Retry {
  const times = options.times ?? 1;
  if (!Number.isInteger(times) || times < 1) throw new RangeError(`Retry times must be an integer >= 1, got ${times}`);
  if (options.delay !== undefined && !(options.delay >= 0)) throw new RangeError(`Retry delay must be >= 0 seconds`);
  return Object.freeze({
    times,
    on: [...(options.on ?? [])],
    ignore: [...(options.ignore ?? [])],
    onAttemptsExceeded: options.onAttemptsExceeded ?? "discard",
    delaySec: options.delay,
  });
}

export const NO_RETRY: Retry = retry({ times: 1 });

/** Attempts made so far (0 on the first run) and the activation's limit. */
export interface AttemptState {
  attempts: number;
  maxAttempts: number;
}

export function isLastAttempt(state: AttemptState): boolean {
  return state.attempts + 1 >= state.maxAttempts;
}

const isDeadlineClass = (cls: ErrorClass) =>
  cls === ProcessingDeadlineExceeded || cls.name === "ProcessingDeadlineExceeded";

/** A timeout raised inside the task: DOMException "TimeoutError" (AbortSignal.timeout, fetch) or any error so named. */
function isTimeout(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === "TimeoutError";
}

/** Whether a run that threw `err` should be reported as RETRY (true) or FAILURE (false). */
export function shouldRetry(policy: Retry, state: AttemptState, err: unknown): boolean {
  if (isLastAttempt(state)) return false;
  if (isRetryRequest(err)) return true;
  if (isErrorOf(err, ProcessingDeadlineExceeded)) return retriesOnDeadline(policy);
  if (policy.ignore.some((cls) => isErrorOf(err, cls))) return false;
  if (isTimeout(err)) return true;
  return policy.on.some((cls) => isErrorOf(err, cls));
}

/** Whether the policy retries a run stopped at its processing deadline: only when `on` names the deadline error. */
export function retriesOnDeadline(policy: Retry): boolean {
  if (policy.ignore.some(isDeadlineClass)) return false;
  return policy.on.some(isDeadlineClass);
}
