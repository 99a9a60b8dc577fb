// The pool of task threads. Runs are spread over a few Bun Worker threads,
// each running many tasks concurrently (a thread hop per batch, not per task).
// A run still going at its deadline is stopped by terminating its thread (the
// only way to stop synchronous code); the thread is replaced, and the other
// runs it held are started again on a healthy thread (at-most-once runs are
// not: they end as FAILURE, since they may have had effects). With
// maxTasksPerThread a thread is recycled after that many runs (Sentry's
// --max-child-task-count: leaks in task code do not accumulate): a
// replacement starts at once, the old thread takes no new runs and ends when
// its last run finishes; while fewer than minReadyThreads others are ready it
// keeps taking runs, so capacity does not drop while the replacement loads.
import type { RunRequest, RunResult } from "../sdk/execute.ts";
import type { Logger } from "../log.ts";
import type { FromThread, TaskMeta, ThreadInit, ToThread } from "./protocol.ts";
import { threadEntry } from "../thread-entry.ts";

export interface PoolOptions {
  threads: number;
  init: ThreadInit;
  log: Logger;
  /** How often deadlines are checked. Default 50 ms. */
  deadlineTickMs?: number;
  /** URL of the thread entry; default src/worker/thread.ts next to this file. */
  threadUrl?: string | URL;
  /** Recycle a thread after it finished this many runs; unset: never. */
  maxTasksPerThread?: number;
  /** While threads are recycled, at least this many keep taking runs (Sentry's --min-concurrency). Default 0. */
  minReadyThreads?: number;
}

/** A run as the pool sees it; `atMostOnce` runs are never restarted. */
export interface PoolRun {
  req: RunRequest;
  atMostOnce: boolean;
}

export type PoolOutcome =
  | RunResult
  | { id: string; outcome: "deadline"; durationMs: number }
  | { id: string; outcome: "aborted"; durationMs: number };

export interface TaskPool {
  /** Resolves with the tasks the threads registered once the first thread is up; rejects if a task module fails to load. */
  ready: Promise<TaskMeta[]>;
  /** Resolves once every thread of the pool has loaded the task modules (warm-up). */
  allReady: Promise<void>;
  /** Threads that have loaded the task modules and take runs. */
  readyThreads(): number;
  run(run: PoolRun): Promise<PoolOutcome>;
  /**
   * As run(), without a promise per run: `done(outcome, ctx)` is called when
   * it finishes, so one function serves a whole batch.
   */
  submit<C>(run: PoolRun, ctx: C, done: (outcome: PoolOutcome, ctx: C) => void): void;
  /** Posts the runs submitted so far to their threads now rather than at the end of this turn (a whole batch was submitted). */
  flush(): void;
  /** Runs in flight right now. */
  busy(): number;
  /** Stops every thread; pending runs resolve as "aborted". */
  close(): Promise<void>;
}

interface Pending {
  run: PoolRun;
  startedAt: number;
  resolve(outcome: PoolOutcome, ctx: unknown): void;
  /** submit()'s context, handed back to resolve. */
  ctx?: unknown;
}

interface Thread {
  worker: Worker;
  /** retiring: recycled, takes no new runs, ends when its last run has finished. */
  state: "starting" | "ready" | "retiring" | "dead";
  inflight: Map<string, Pending>;
  queued: RunRequest[];
  flushScheduled: boolean;
  /** Runs finished on this thread. */
  ran: number;
  /** Due for recycling; still taking runs until enough other threads are ready. */
  recycleDue: boolean;
}

/** The thread entry, from source or inside the compiled binary. */
function defaultThreadUrl(): URL {
  return threadEntry("worker/thread.ts", new URL("./thread.ts", import.meta.url), import.meta.url);
}

export function createTaskPool(options: PoolOptions): TaskPool {
  const url = options.threadUrl ?? defaultThreadUrl();
  const threads: Thread[] = [];
  let closed = false;
  let resolveReady!: (tasks: TaskMeta[]) => void;
  let rejectReady!: (err: Error) => void;
  let readyDone = false;
  const ready = new Promise<TaskMeta[]>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  ready.catch(() => {});
  /** Runs waiting for a thread (none ready yet). */
  const waiting: Pending[] = [];
  const size = Math.max(1, options.threads);
  const minReady = Math.min(options.minReadyThreads ?? 0, size);
  let everReady = 0;
  let resolveAllReady!: () => void;
  const allReady = new Promise<void>((r) => (resolveAllReady = r));
  const readyCount = () => threads.filter((t) => t.state === "ready" && !t.recycleDue).length;

  const send = (t: Thread) => {
    t.flushScheduled = false;
    if (t.state !== "ready" || t.queued.length === 0) return;
    const runs = t.queued;
    t.queued = [];
    t.worker.postMessage({ type: "run", runs } satisfies ToThread);
  };

  const assign = (p: Pending) => {
    let best: Thread | undefined;
    for (const t of threads) if (t.state === "ready" && (!best || t.inflight.size < best.inflight.size)) best = t;
    if (!best) {
      waiting.push(p);
      return;
    }
    best.inflight.set(p.run.req.id, p);
    best.queued.push(p.run.req);
    if (!best.flushScheduled) {
      best.flushScheduled = true;
      // setImmediate, not a microtask: every run started in this turn of the loop joins one message.
      setImmediate(() => send(best));
    }
  };

  /** A recycled thread with nothing left to run ends. */
  const endIfIdle = (t: Thread) => {
    if (t.state !== "retiring" || t.inflight.size > 0) return;
    t.state = "dead";
    t.worker.terminate();
    threads.splice(threads.indexOf(t), 1);
    options.log.info("task_thread_recycled", { ran: t.ran, threads: threads.length });
  };

  /** Stops giving runs to threads due for recycling, as far as minReady allows. */
  const retireDue = () => {
    for (const t of threads) {
      if (!t.recycleDue || t.state !== "ready") continue;
      if (readyCount() < minReady) break; // keep it taking runs until a replacement is up
      t.state = "retiring";
      endIfIdle(t);
    }
  };

  const spawn = (): Thread => {
    const worker = new Worker(url, { workerData: options.init } as WorkerOptions);
    const t: Thread = {
      worker,
      state: "starting",
      inflight: new Map(),
      queued: [],
      flushScheduled: false,
      ran: 0,
      recycleDue: false,
    };
    worker.onmessage = (ev: MessageEvent<FromThread>) => {
      const msg = ev.data;
      if (msg.type === "results") {
        for (const r of msg.results) {
          const p = t.inflight.get(r.id);
          if (!p) continue;
          t.inflight.delete(r.id);
          t.ran++;
          p.resolve(r, p.ctx);
        }
        const max = options.maxTasksPerThread;
        if (max !== undefined && t.ran >= max && t.state === "ready" && !t.recycleDue && !closed) {
          t.recycleDue = true;
          spawn(); // the replacement loads while this thread finishes what it holds
          retireDue();
        }
        endIfIdle(t);
      } else if (msg.type === "ready") {
        t.state = "ready";
        if (++everReady === size) resolveAllReady();
        if (!readyDone) {
          readyDone = true;
          resolveReady(msg.tasks);
        }
        retireDue();
        for (const p of waiting.splice(0)) assign(p);
      } else {
        options.log.error("task_modules_failed", { error: msg.message });
        if (!readyDone) {
          readyDone = true;
          rejectReady(new Error(msg.message));
        }
      }
    };
    worker.onerror = (ev) => {
      options.log.error("task_thread_crashed", { error: ev.message });
      if (t.state === "starting" && !readyDone) {
        // Never came up (missing entry, broken module): respawning would only loop.
        readyDone = true;
        rejectReady(new Error(`task thread failed to start: ${ev.message}`));
        t.state = "dead";
        threads.splice(threads.indexOf(t), 1);
        return;
      }
      replace(t, "crash");
    };
    threads.push(t);
    return t;
  };

  /** Terminates `t`, starts a replacement, and restarts (or fails) the runs it held. */
  const replace = (t: Thread, why: "deadline" | "crash") => {
    if (t.state === "dead") return;
    // A thread already due for recycling has its replacement starting.
    const replaced = t.recycleDue;
    t.state = "dead";
    t.worker.terminate();
    threads.splice(threads.indexOf(t), 1);
    if (!closed && !replaced) spawn();
    for (const p of t.inflight.values()) {
      if (p.run.atMostOnce) {
        p.resolve(
          {
            id: p.run.req.id,
            status: 3,
            outcome: "failure",
            error: `task thread stopped (${why}) while an at-most-once task ran`,
            durationMs: performance.now() - p.startedAt,
          },
          p.ctx,
        );
      } else {
        assign(p);
      }
    }
    t.inflight.clear();
  };

  const tick = setInterval(() => {
    const now = Date.now();
    for (const t of [...threads]) {
      if (t.state !== "ready" && t.state !== "retiring") continue;
      let expired: Pending[] | undefined;
      for (const p of t.inflight.values()) if (p.run.req.deadlineAtMs <= now) (expired ??= []).push(p);
      if (!expired) continue;
      for (const p of expired) {
        t.inflight.delete(p.run.req.id);
        p.resolve({ id: p.run.req.id, outcome: "deadline", durationMs: performance.now() - p.startedAt }, p.ctx);
      }
      options.log.warn("task_thread_stopped", {
        reason: "processing_deadline",
        ids: expired.map((p) => p.run.req.id),
        restarted: t.inflight.size,
      });
      replace(t, "deadline");
    }
  }, options.deadlineTickMs ?? 50);

  for (let i = 0; i < size; i++) spawn();

  return {
    ready,
    allReady,
    readyThreads: () => threads.filter((t) => t.state === "ready").length,
    run(run) {
      return new Promise<PoolOutcome>((resolve) => {
        if (closed) return resolve({ id: run.req.id, outcome: "aborted", durationMs: 0 });
        assign({ run, startedAt: performance.now(), resolve });
      });
    },
    flush() {
      for (const t of threads) if (t.flushScheduled) send(t);
    },
    submit(run, ctx, done) {
      if (closed) return done({ id: run.req.id, outcome: "aborted", durationMs: 0 }, ctx);
      assign({ run, startedAt: performance.now(), resolve: done as Pending["resolve"], ctx });
    },
    busy() {
      let n = waiting.length;
      for (const t of threads) n += t.inflight.size;
      return n;
    },
    async close() {
      closed = true;
      clearInterval(tick);
      for (const t of threads.splice(0)) {
        t.state = "dead";
        t.worker.terminate();
        for (const p of t.inflight.values())
          p.resolve({ id: p.run.req.id, outcome: "aborted", durationMs: performance.now() - p.startedAt }, p.ctx);
      }
      for (const p of waiting.splice(0)) p.resolve({ id: p.run.req.id, outcome: "aborted", durationMs: 0 }, p.ctx);
    },
  };
}
