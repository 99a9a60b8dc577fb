// Retry policy: how many attempts, which errors retry, what happens when the
// attempts run out, and the delay before each retry. The decision itself is a
// pure function of the policy, the activation's retry state and the error.
import { type ErrorClass, isErrorOf, isRetryRequest, ProcessingDeadlineExceeded } from "./errors.ts";

export type OnAttemptsExceeded = "discard" | "deadletter";

export interface RetryOptions {
  /** Total attempts, the first run included (max_attempts on the wire). Default 1 (no retry). */
  times?: number;
  /** Errors that retry (subclasses match). Default: every error except the processing deadline. */
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
  readonly on: readonly ErrorClass[] | null;
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
    on: options.on ? [...options.on] : null,
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

/** Whether a run that threw `err` should be reported as RETRY (true) or FAILURE (false). */
export function shouldRetry(policy: Retry, state: AttemptState, err: unknown): boolean {
  if (isLastAttempt(state)) return false;
  if (isRetryRequest(err)) return true;
  if (policy.ignore.some((cls) => isErrorOf(err, cls))) return false;
  if (policy.on === null) return !isErrorOf(err, ProcessingDeadlineExceeded);
  return policy.on.some((cls) => isErrorOf(err, cls));
}

/** Whether the policy retries a run stopped at its processing deadline (only when it lists the deadline error). */
export function retriesOnDeadline(policy: Retry): boolean {
  if (policy.on === null) return false;
  if (policy.ignore.some((cls) => cls === ProcessingDeadlineExceeded || cls.name === "ProcessingDeadlineExceeded")) return false;
  return policy.on.some((cls) => cls === ProcessingDeadlineExceeded || cls.name === "ProcessingDeadlineExceeded" || cls === Error);
}
