// Running a batch of activations for the streaming delivery loop, each one
// the way execution.ts runs it in pull and push mode (expiry, at-most-once,
// the task pool under its deadline, the outcome as the status to report), but
// without a promise per task: the whole batch is checked and handed to the
// pool in one pass (the pool posts it to its threads as one message per
// thread), and one function takes every outcome as the threads post them
// back in batches. At most `concurrency` run at once; activations delivered
// beyond that (the stream loop's prefetch) wait here, oldest first, and are
// checked (expiry, at-most-once) when they start.
import type { WireActivation } from "../activation/wire.ts";
import type { ReportStatus } from "../sdk/execute.ts";
import { createExecutionSteps, type Execution, type ExecutorOptions } from "./execution.ts";
import type { LoopOptions } from "./loop.ts";
import type { PoolOutcome } from "./pool.ts";

/** One finished run: the status to report (null: nothing to report), the retry delay, and the caller's tag. */
export type RunDone = (
  a: WireActivation,
  status: ReportStatus | null,
  delayOnRetry: number | undefined,
  tag: unknown,
) => void;

export interface BatchRunner {
  /** Starts every activation of the batch (or queues it behind `concurrency` running ones); `done` is called once per activation as it finishes. */
  start(batch: WireActivation[], tag: unknown, done: RunDone): void;
  /** Runs going now, and activations waiting for a slot. */
  running(): number;
  queued(): number;
  /** Stops the task threads; runs still going end with nothing to report. */
  abort(): Promise<void>;
}

/** What the pool hands back with each outcome: the activation, and its batch's tag and callback (shared). */
interface Running {
  a: WireActivation;
  batch: { tag: unknown; done: RunDone };
}

export function createBatchRunner(
  o: ExecutorOptions & { concurrency: number; onResult?: LoopOptions["onResult"] },
): BatchRunner {
  const steps = createExecutionSteps(o);
  let running = 0;
  // Waiting for a slot, oldest first (a ring would save the shift; batches are a few hundred at most).
  let waiting: Running[] = [];
  let head = 0;
  const finish = (a: WireActivation, e: Execution, batch: Running["batch"]) => {
    o.onResult?.(a, e.outcome, e.status, e.error);
    batch.done(a, e.status, e.delayOnRetry, batch.tag);
  };
  /** Starts waiting activations while slots are free; true when any went to the pool. */
  const fill = (now: number): boolean => {
    let submitted = false;
    while (running < o.concurrency && head < waiting.length) {
      const r = waiting[head++]!;
      const run = steps.begin(r.a, now);
      if ("req" in run) {
        running++;
        o.pool.submit(run, r, onOutcome);
        submitted = true;
      } else finish(r.a, run, r.batch);
    }
    if (head === waiting.length) {
      waiting = [];
      head = 0;
    }
    return submitted;
  };
  let refill = false;
  const onOutcome = (out: PoolOutcome, r: Running) => {
    running--;
    finish(r.a, steps.end(r.a, out), r.batch);
    // Outcomes arrive in batches from a thread: refill once they are all in.
    if (head < waiting.length && !refill) {
      refill = true;
      queueMicrotask(() => {
        refill = false;
        if (fill(Date.now())) o.pool.flush();
      });
    }
  };
  return {
    start(list, tag, done) {
      const batch = { tag, done };
      for (const a of list) waiting.push({ a, batch });
      // What fits goes to the threads now, one message per thread.
      if (fill(Date.now())) o.pool.flush();
    },
    running: () => running,
    queued: () => waiting.length - head,
    abort: () => {
      // Not started: nothing to report (the broker's deadline hands them out again).
      const left = waiting.slice(head);
      waiting = [];
      head = 0;
      for (const r of left) finish(r.a, { status: null, outcome: "aborted" as Execution["outcome"] }, r.batch);
      return o.pool.close();
    },
  };
}
