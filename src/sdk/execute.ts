// Running one activation's task: resolve it, decode its parameters, call the
// handler inside a task context, and turn the outcome into the status the
// broker gets (COMPLETE / RETRY / FAILURE) per the task's retry policy. Used by
// the worker's task threads and by eager mode; the deadline itself is enforced
// outside (the worker stops the whole thread).
import { CANARY_TASK, findTask, INTERNAL_NAMESPACE, type Task } from "./app.ts";
import { makeTaskContext, runInTaskContext } from "./context.ts";
import { executeWithHooks } from "./hooks.ts";
import { isErrorOf, isRetryRequest, UnknownTaskError } from "./errors.ts";
import { COMPRESSION_HEADER, decodeLegacyParameters, decodeParameters } from "../activation/parameters.ts";
import { shouldRetry } from "./retry.ts";

export const STATUS_FAILURE = 3;
export const STATUS_RETRY = 4;
export const STATUS_COMPLETE = 5;
export type ReportStatus = typeof STATUS_FAILURE | typeof STATUS_RETRY | typeof STATUS_COMPLETE;

/** The parts of an activation a run needs; plain data so it crosses thread boundaries cheaply. */
export interface RunRequest {
  id: string;
  application: string;
  namespace: string;
  taskname: string;
  headers: Record<string, string>;
  parametersBytes: Uint8Array;
  /** Deprecated JSON parameters, used when parametersBytes is empty. */
  parameters: string;
  attempts: number;
  maxAttempts: number;
  deadlineAtMs: number;
}

export type Outcome = "complete" | "retry" | "failure" | "unknown_task" | "deadline" | "expired" | "skipped";

export interface RunResult {
  id: string;
  status: ReportStatus;
  outcome: Outcome;
  /** Seconds the retry waits (RETRY only). */
  delayOnRetry?: number;
  /** Error message (and stack unless expected) when the run failed. */
  error?: string;
  /** The error was listed in the task's expectedErrors. */
  expected?: boolean;
  durationMs: number;
}

export function resolveTask(req: Pick<RunRequest, "application" | "namespace" | "taskname">): Task | undefined {
  return findTask(req.application || undefined, req.namespace, req.taskname);
}

function describe(err: unknown, expected: boolean): string {
  if (err instanceof Error)
    return expected ? `${err.name}: ${err.message}` : (err.stack ?? `${err.name}: ${err.message}`);
  return String(err);
}

export async function runActivation(req: RunRequest, signal: AbortSignal): Promise<RunResult> {
  const started = performance.now();
  const done = (r: Omit<RunResult, "id" | "durationMs">): RunResult => ({
    id: req.id,
    durationMs: performance.now() - started,
    ...r,
  });
  const task = resolveTask(req);
  if (!task) {
    if (req.namespace === INTERNAL_NAMESPACE && req.taskname === CANARY_TASK)
      return done({ status: STATUS_COMPLETE, outcome: "complete" });
    const err = new UnknownTaskError(
      `unknown task ${req.namespace}:${req.taskname} (application ${req.application || "-"})`,
    );
    return done({ status: STATUS_FAILURE, outcome: "unknown_task", error: err.message });
  }
  try {
    const params =
      req.parametersBytes.byteLength === 0 && req.parameters
        ? decodeLegacyParameters(req.parameters)
        : decodeParameters(req.parametersBytes, req.headers[COMPRESSION_HEADER]);
    const kwargs = task.wantsHeaders ? { ...params.kwargs, headers: req.headers } : params.kwargs;
    const args = Object.keys(kwargs).length > 0 ? [...params.args, kwargs] : params.args;
    const ctx = makeTaskContext({
      id: req.id,
      application: task.app.name,
      namespace: req.namespace,
      taskname: req.taskname,
      attempts: req.attempts,
      maxAttempts: req.maxAttempts,
      headers: req.headers,
      deadlineAtMs: req.deadlineAtMs,
      signal,
    });
    const call = async () => (task.handler as (...a: unknown[]) => unknown)(...args);
    await runInTaskContext(ctx, () => executeWithHooks(task.app.contextHooks, req.headers, call));
    return done({ status: STATUS_COMPLETE, outcome: "complete" });
  } catch (err) {
    const expected = task.expectedErrors.some((cls) => isErrorOf(err, cls));
    const state = { attempts: req.attempts, maxAttempts: req.maxAttempts };
    if (shouldRetry(task.retry, state, err)) {
      const delay = isRetryRequest(err) && err.delaySec !== undefined ? err.delaySec : task.retry.delaySec;
      // A retry is routine, as Sentry's worker logs it (info, the error's message, no stack):
      // the policy asked for it. Only a final failure carries the stack.
      return done({
        status: STATUS_RETRY,
        outcome: "retry",
        delayOnRetry: delay,
        error: describe(err, true),
        expected: true,
      });
    }
    return done({ status: STATUS_FAILURE, outcome: "failure", error: describe(err, expected), expected });
  }
}
