// The running task's context (id, attempts, headers, deadline, abort signal),
// reachable from anywhere inside the task through `currentTask()`; follow-up
// dispatches read it to carry trace headers along.
import { AsyncLocalStorage } from "node:async_hooks";
import { isLastAttempt } from "./retry.ts";

export interface TaskContext {
  readonly id: string;
  readonly application: string;
  readonly namespace: string;
  readonly taskname: string;
  /** Attempts made before this one (0 on the first run). */
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Wall-clock ms at which the worker stops this run. */
  readonly deadlineAtMs: number;
  /** Aborted when the run is being stopped (deadline or shutdown); pass it to fetch() and friends. */
  readonly signal: AbortSignal;
  /** True when a failure now will not be retried because attempts run out. */
  isLastAttempt(): boolean;
}

export interface TaskContextInit extends Omit<TaskContext, "isLastAttempt"> {}

// Shared across SDK copies (user modules loaded from disk by the compiled binary).
const KEY = Symbol.for("taskplatform.taskContextStorage");
const holder = globalThis as unknown as Record<symbol, AsyncLocalStorage<TaskContext> | undefined>;
const storage: AsyncLocalStorage<TaskContext> = (holder[KEY] ??= new AsyncLocalStorage<TaskContext>());

export function makeTaskContext(init: TaskContextInit): TaskContext {
  return { ...init, isLastAttempt: () => isLastAttempt(init) };
}

export function runInTaskContext<T>(ctx: TaskContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The context of the task running now, or undefined outside a task. */
export function currentTask(): TaskContext | undefined {
  return storage.getStore();
}
