// Running a batch of activations for the streaming delivery loop: each one
// the way execution.ts runs it in pull and push mode (expiry, at-most-once,
// the task pool under its deadline, the outcome as the status to report),
// with one callback for the whole batch instead of a promise per task.
import type { WireActivation } from "../activation/wire.ts";
import type { ReportStatus } from "../sdk/execute.ts";
import { createExecutor, type ExecutorOptions } from "./execution.ts";
import type { LoopOptions } from "./loop.ts";

/** One finished run: the status to report (null: nothing to report), the retry delay, and the caller's tag. */
export type RunDone = (a: WireActivation, status: ReportStatus | null, delayOnRetry: number | undefined, tag: unknown) => void;

export interface BatchRunner {
  /** Starts every activation of the batch; `done` is called once per activation as it finishes. */
  start(batch: WireActivation[], tag: unknown, done: RunDone): void;
  /** Stops the task threads; runs still going end with nothing to report. */
  abort(): Promise<void>;
}

export function createBatchRunner(o: ExecutorOptions & { onResult?: LoopOptions["onResult"] }): BatchRunner {
  const execute = createExecutor(o);
  return {
    start(batch, tag, done) {
      for (const a of batch) {
        execute(a).then((e) => {
          o.onResult?.(a, e.outcome, e.status, e.error);
          done(a, e.status, e.delayOnRetry, tag);
        });
      }
    },
    abort: () => o.pool.close(),
  };
}
