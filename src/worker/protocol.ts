// Messages between the worker's main thread and its task threads. Runs and
// results travel in batches: one postMessage carries every run started (or
// finished) in the same turn of the event loop, so the thread hop is paid per
// batch, not per task.
import type { RunRequest, RunResult } from "../sdk/execute.ts";

/** What the main thread needs to know about a task to report a run it had to stop. */
export interface TaskMeta {
  application: string;
  namespace: string;
  taskname: string;
  retriesOnDeadline: boolean;
  retryDelaySec: number | undefined;
  atMostOnce: boolean;
}

export interface ThreadInit {
  /** Absolute paths (or module names) of the user's task modules. */
  modules: string[];
  /** Environment for producers inside tasks (follow-up dispatches). */
  env: Record<string, string>;
}

export type ToThread = { type: "run"; runs: RunRequest[] } | { type: "abort"; ids: string[] };

export type FromThread =
  | { type: "ready"; tasks: TaskMeta[] }
  | { type: "load_error"; message: string }
  | { type: "results"; results: RunResult[] };
