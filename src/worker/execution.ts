// Running one activation the way the worker promises in pull and push mode
// alike: expired ones are not started (FAILURE), at-most-once ones run at most
// once per id (a repeat is skipped, unreported), the rest run in the task pool
// under their processing deadline; the outcome becomes the status to report
// (COMPLETE, RETRY with the task's delay, FAILURE), is counted in metrics and
// logged: one `task_finished` line per run (info, retries included; warn for
// an unexpected failure, a deadline or an unknown task) with task, namespace,
// attempt, outcome and duration.
import type { WireActivation } from "../activation/wire.ts";
import type { Logger } from "../log.ts";
import { DEFAULT_PROCESSING_DEADLINE_S } from "../activation/build.ts";
import { type Outcome, type ReportStatus, STATUS_FAILURE, STATUS_RETRY } from "../sdk/execute.ts";
import { isLastAttempt } from "../sdk/retry.ts";
import type { AtMostOnceStore } from "./at-most-once.ts";
import { createRecorder, type WorkerMetrics } from "./metrics.ts";
import type { PoolOutcome, PoolRun, TaskPool } from "./pool.ts";
import type { TaskMeta } from "./protocol.ts";

export interface ExecutorOptions {
  pool: TaskPool;
  tasks: TaskMeta[];
  atMostOnce: AtMostOnceStore;
  atMostOnceTtlSec: number;
  metrics: WorkerMetrics;
  log: Logger;
}

export interface Execution {
  /** null: nothing to report (an at-most-once repeat, or a run aborted by shutdown). */
  status: ReportStatus | null;
  outcome: Outcome;
  delayOnRetry?: number;
  error?: string;
}

/** received_at + expires lies in the past: the activation must not start. */
export function isExpired(a: Pick<WireActivation, "expiresS" | "receivedAtMs">, nowMs: number): boolean {
  return a.expiresS !== undefined && a.receivedAtMs !== undefined && a.receivedAtMs + a.expiresS * 1000 < nowMs;
}

const metaKey = (app: string, ns: string, task: string) => `${app}\u0000${ns}\u0000${task}`;

/**
 * The two halves of a run, for callers that run whole batches without a
 * promise per task (streaming delivery, batch-run.ts): begin() checks an
 * activation and builds its pool run, or answers at once when it must not run
 * (expired, an at-most-once repeat); end() turns the pool's outcome into the
 * status to report. Both record metrics.
 */
export interface ExecutionSteps {
  begin(a: WireActivation, nowMs: number): PoolRun | Execution;
  end(a: WireActivation, out: PoolOutcome): Execution;
}

export function createExecutionSteps(o: ExecutorOptions): ExecutionSteps {
  const meta = new Map<string, TaskMeta>();
  const metaByNs = new Map<string, TaskMeta>();
  for (const t of o.tasks) {
    meta.set(metaKey(t.application, t.namespace, t.taskname), t);
    metaByNs.set(metaKey("", t.namespace, t.taskname), t);
  }
  const metaOf = (a: WireActivation) => {
    const app = a.application ?? "";
    return (
      meta.get(metaKey(app, a.namespace, a.taskname)) ??
      (app ? undefined : metaByNs.get(metaKey("", a.namespace, a.taskname)))
    );
  };
  const recorder = createRecorder(o.metrics);
  /** Counts the run and logs its one task_finished line (warn for an unexpected failure, a deadline, an unknown task). */
  const record = (a: WireActivation, outcome: Outcome, durationMs?: number, error?: string, expected = true) => {
    recorder.record(a.namespace, a.taskname, outcome, durationMs, a.attempts);
    const loud =
      outcome === "deadline" ||
      outcome === "unknown_task" ||
      (outcome as string) === "aborted" ||
      (!expected && outcome === "failure");
    (loud ? o.log.warn : o.log.info)("task_finished", {
      task: a.taskname,
      namespace: a.namespace,
      attempt: a.attempts,
      outcome,
      duration_ms: durationMs === undefined ? 0 : Math.round(durationMs * 10) / 10,
      id: a.id,
      ...(error !== undefined ? { error } : {}),
    });
  };

  return {
    begin(a, now) {
      if (isExpired(a, now)) {
        record(a, "expired");
        return { status: STATUS_FAILURE, outcome: "expired", error: "activation expired before it started" };
      }
      const atMostOnce = a.atMostOnce;
      if (atMostOnce && !o.atMostOnce.add(a.id, o.atMostOnceTtlSec)) {
        record(a, "skipped", undefined, "at-most-once: this id ran before");
        return { status: null, outcome: "skipped" };
      }
      const deadlineS = a.processingDeadlineS || DEFAULT_PROCESSING_DEADLINE_S;
      return {
        atMostOnce,
        req: {
          id: a.id,
          application: a.application ?? "",
          namespace: a.namespace,
          taskname: a.taskname,
          headers: a.headers,
          // A copy: the view may sit in a large socket buffer that would otherwise be cloned whole.
          parametersBytes: a.parametersBytes.slice(),
          parameters: a.parameters,
          attempts: a.attempts,
          maxAttempts: a.maxAttempts || 1,
          deadlineAtMs: now + deadlineS * 1000,
        },
      };
    },
    end(a, out) {
      if (out.outcome === "aborted") {
        // Stopped by shutdown after the grace period: not reported; the broker's deadline hands it out again.
        record(a, "aborted" as Outcome, out.durationMs, "stopped by shutdown; left to the broker's deadline", false);
        return { status: null, outcome: "aborted" as Outcome };
      }
      if (out.outcome === "deadline") {
        const deadlineS = a.processingDeadlineS || DEFAULT_PROCESSING_DEADLINE_S;
        const m = metaOf(a);
        const retry =
          m?.retriesOnDeadline === true && !isLastAttempt({ attempts: a.attempts, maxAttempts: a.maxAttempts || 1 });
        const error = `processing deadline of ${deadlineS}s exceeded; task stopped`;
        record(a, "deadline", out.durationMs, error);
        return {
          status: retry ? STATUS_RETRY : STATUS_FAILURE,
          outcome: "deadline",
          delayOnRetry: retry ? m?.retryDelaySec : undefined,
          error,
        };
      }
      record(a, out.outcome, out.durationMs, out.error, out.expected === true);
      return { status: out.status, outcome: out.outcome, delayOnRetry: out.delayOnRetry, error: out.error };
    },
  };
}

export function createExecutor(o: ExecutorOptions): (a: WireActivation) => Promise<Execution> {
  const steps = createExecutionSteps(o);
  return async (a: WireActivation): Promise<Execution> => {
    const run = steps.begin(a, Date.now());
    if (!("req" in run)) return run;
    return steps.end(a, await o.pool.run(run));
  };
}
