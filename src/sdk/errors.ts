// Named errors task code and the worker use to signal outcomes. Each sets
// `this.name`, and checks go by name as well as by class, because user modules
// loaded from disk by the compiled binary may hold a second copy of the SDK.

/** Thrown by a task to ask for another attempt (if attempts remain), whatever the retry policy's `on` list says. */
export class RetryTaskError extends Error {
  /** Seconds before the retry may run; overrides the policy's delay when set. */
  readonly delaySec: number | undefined;
  constructor(message = "retry requested", options?: { delaySec?: number; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = "RetryTaskError";
    this.delaySec = options?.delaySec;
  }
}

/** What a task that ran past its processing deadline is reported as; list it in `Retry.on` to retry such tasks. */
export class ProcessingDeadlineExceeded extends Error {
  constructor(message = "processing deadline exceeded") {
    super(message);
    this.name = "ProcessingDeadlineExceeded";
  }
}

/** The activation names a namespace or task this worker does not know. */
export class UnknownTaskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnknownTaskError";
  }
}

/** Invalid task or namespace definition, found at registration time. */
export class TaskDefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TaskDefinitionError";
  }
}

const SDK_ERRORS = new Set(["RetryTaskError", "ProcessingDeadlineExceeded", "UnknownTaskError"]);

export type ErrorClass = abstract new (...args: never[]) => Error;

/** `err` is an instance of `cls` (subclasses match); SDK errors also match by name across SDK copies. */
export function isErrorOf(err: unknown, cls: ErrorClass): boolean {
  if (err instanceof cls) return true;
  return err instanceof Error && SDK_ERRORS.has(cls.name) && err.name === cls.name;
}

export function isRetryRequest(err: unknown): err is RetryTaskError {
  return err instanceof Error && err.name === "RetryTaskError";
}
