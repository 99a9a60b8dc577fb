// Running a batch of activations for the streaming delivery loop, each one
// the way execution.ts runs it in pull and push mode (expiry, at-most-once,
// the task pool under its deadline, the outcome as the status to report), but
// without a promise per task: the whole batch is checked and handed to the
// pool in one pass (the pool posts it to its threads as one message per
// thread), and one function takes every outcome as the threads post them
// back in batches.
import type { WireActivation } from "../activation/wire.ts";
import type { ReportStatus } from "../sdk/execute.ts";
import { createExecutionSteps, type Execution, type ExecutorOptions } from "./execution.ts";
import type { LoopOptions } from "./loop.ts";
import type { PoolOutcome } from "./pool.ts";

/** One finished run: the status to report (null: nothing to report), the retry delay, and the caller's tag. */
export type RunDone = (a: WireActivation, status: ReportStatus | null, delayOnRetry: number | undefined, tag: unknown) => void;

export interface BatchRunner {
  /** Starts every activation of the batch; `done` is called once per activation as it finishes. */
  start(batch: WireActivation[], tag: unknown, done: RunDone): void;
  /** Stops the task threads; runs still going end with nothing to report. */
  abort(): Promise<void>;
}

/** What the pool hands back with each outcome: the activation, and its batch's tag and callback (shared). */
interface Running {
  a: WireActivation;
  batch: { tag: unknown; done: RunDone };
}

export function createBatchRunner(o: ExecutorOptions & { onResult?: LoopOptions["onResult"] }): BatchRunner {
  const steps = createExecutionSteps(o);
  const finish = (a: WireActivation, e: Execution, batch: Running["batch"]) => {
    o.onResult?.(a, e.outcome, e.status, e.error);
    batch.done(a, e.status, e.delayOnRetry, batch.tag);
  };
  const onOutcome = (out: PoolOutcome, r: Running) => finish(r.a, steps.end(r.a, out), r.batch);
  return {
    start(list, tag, done) {
      const now = Date.now();
      const batch = { tag, done };
      for (const a of list) {
        const run = steps.begin(a, now);
        if ("req" in run) o.pool.submit(run, { a, batch }, onOutcome);
        else finish(a, run, batch);
      }
      // The whole batch goes to the threads now, one message per thread.
      o.pool.flush();
    },
    abort: () => o.pool.close(),
  };
}
