// The pull loop: `concurrency` fetch loops, each taking an activation from a
// broker, running it in the task pool, and reporting the result to the broker
// that handed it out with SetTaskStatus + fetch_next (one round trip reports
// and fetches). Idle loops park behind a single "scout" that polls with
// exponential back-off, so an idle worker sends one GetTask at a time and a
// new task is still picked up within the current back-off.
import { Code, ConnectError } from "@connectrpc/connect";
import type { WireActivation } from "../activation/wire.ts";
import type { Logger } from "../log.ts";
import { type Outcome, type ReportStatus, STATUS_RETRY } from "../sdk/execute.ts";
import type { AtMostOnceStore } from "./at-most-once.ts";
import type { Balancer } from "./balancer.ts";
import type { BrokerClient, FetchFilter, StatusReport } from "./broker-client.ts";
import type { HealthFile } from "./health.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { TaskPool } from "./pool.ts";
import type { TaskMeta } from "./protocol.ts";

export interface LoopOptions {
  concurrency: number;
  filter: FetchFilter;
  pool: TaskPool;
  tasks: TaskMeta[];
  clients: Map<string, BrokerClient>;
  balancer: Balancer;
  atMostOnce: AtMostOnceStore;
  atMostOnceTtlSec: number;
  health: HealthFile;
  metrics: WorkerMetrics;
  log: Logger;
  maxBackoffMs: number;
  /** Called after every finished run (tests, demo progress). */
  onResult?: (activation: WireActivation, outcome: Outcome, status: ReportStatus | null, error?: string) => void;
}

export interface WorkerLoop {
  /** Stop fetching; let running tasks finish within graceMs, report every result held, then resolve. */
  stop(graceMs: number): Promise<void>;
  /** Resolves when every fetch loop has ended. */
  done: Promise<void>;
}

interface Held {
  activation: WireActivation;
  client: BrokerClient;
}

export { isExpired } from "./execution.ts";
import { createExecutor } from "./execution.ts";

export function startWorkerLoop(o: LoopOptions): WorkerLoop {
  let stopping = false;
  let wakeSleepers: Array<() => void> = [];
  const stopped = new Promise<void>((r) => wakeSleepers.push(r));
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopping) return resolve();
      const t = setTimeout(resolve, ms);
      wakeSleepers.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  let busy = 0;
  const setBusy = (d: number) => {
    busy += d;
    o.metrics.occupancy.set(busy / o.concurrency);
  };
  const pendingReports = new Set<Promise<unknown>>();

  // --- idle gate: one scout polls, the other idle loops park ---
  let scouting = false;
  const parked: Array<() => void> = [];
  let emptyStreak = 0;
  // Doubles every third empty answer from 1 ms: a steady trickle of tasks (gaps of a few ms) keeps the
  // scout polling fast, while a queue that stays empty reaches the maximum after a few seconds.
  const backoff = (n: number) => Math.min(o.maxBackoffMs, 2 ** Math.min((n - 1) / 3, 20));

  const errorCode = (err: unknown) => ConnectError.from(err).code;
  const noteError = (client: BrokerClient, err: unknown, what: string) => {
    const code = errorCode(err);
    if (code === Code.Unavailable) o.balancer.unavailable(client.address);
    o.metrics.fetches.inc({ broker: client.address, result: "error" });
    o.log.warn(`${what}_failed`, { broker: client.address, code: Code[code], error: ConnectError.from(err).rawMessage });
  };

  const scout = async (cursor: ReturnType<Balancer["cursor"]>): Promise<Held | null> => {
    let errors = 0;
    while (!stopping) {
      if (scouting) {
        await new Promise<void>((r) => parked.push(r));
        continue;
      }
      scouting = true;
      try {
        while (!stopping) {
          const client = o.clients.get(cursor.current())!;
          let activation: WireActivation | null;
          try {
            activation = await client.getTask(o.filter);
            o.balancer.succeeded(client.address);
            errors = 0;
          } catch (err) {
            noteError(client, err, "get_task");
            cursor.move();
            await sleep(Math.min(o.maxBackoffMs, 10 * 2 ** Math.min(errors++, 10)));
            continue;
          }
          if (activation) {
            emptyStreak = 0;
            o.metrics.fetches.inc({ broker: client.address, result: "task" });
            return { activation, client };
          }
          o.metrics.fetches.inc({ broker: client.address, result: "empty" });
          cursor.move();
          await sleep(backoff(++emptyStreak));
        }
      } finally {
        scouting = false;
        parked.shift()?.();
      }
    }
    return null;
  };

  const execute = createExecutor(o);

  /** Reports to the broker that handed out the task; retried on transient errors so no result is dropped lightly. */
  const report = async (held: Held, r: StatusReport): Promise<WireActivation | null> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const next = await held.client.setTaskStatus(r);
        o.balancer.succeeded(held.client.address);
        return next;
      } catch (err) {
        noteError(held.client, err, "set_task_status");
        const code = errorCode(err);
        if (attempt >= 4 || ![Code.Unavailable, Code.ResourceExhausted, Code.DeadlineExceeded, Code.Internal, Code.Unknown].includes(code)) {
          o.log.error("result_dropped", { id: r.id, status: r.status, broker: held.client.address });
          return null;
        }
        // Fetching again is pointless if we are retrying; just get the result in.
        r = { ...r, fetchNext: undefined };
        await Bun.sleep(50 * 2 ** attempt);
      }
    }
  };

  const slot = async () => {
    const cursor = o.balancer.cursor();
    let held: Held | null = null;
    while (!stopping || held) {
      if (!held) {
        held = await scout(cursor);
        if (!held) break;
      }
      const activation: WireActivation = held.activation;
      const client: BrokerClient = held.client;
      setBusy(1);
      let result: Awaited<ReturnType<typeof execute>>;
      try {
        result = await execute(activation);
      } finally {
        setBusy(-1);
      }
      o.onResult?.(activation, result.outcome, result.status, result.error);
      if (result.status === null) {
        held = null;
        continue;
      }
      const rebalance = client.address === cursor.current() ? cursor.fetched() : true;
      const fetchNext = !stopping && !rebalance;
      const req: StatusReport = {
        id: activation.id,
        status: result.status,
        fetchNext: fetchNext ? o.filter : undefined,
        maxAttempts: result.status === STATUS_RETRY ? activation.maxAttempts : undefined,
        delayOnRetry: result.status === STATUS_RETRY && result.delayOnRetry !== undefined ? BigInt(Math.ceil(result.delayOnRetry)) : undefined,
      };
      const p = report(held, req);
      pendingReports.add(p);
      const next = await p.finally(() => pendingReports.delete(p));
      o.health.progress();
      if (rebalance) cursor.move();
      if (next && stopping) {
        // Handed out while we were stopping: run it too rather than let it wait for the deadline.
        held = { activation: next, client };
      } else {
        held = next ? { activation: next, client } : null;
      }
      if (next) o.metrics.fetches.inc({ broker: client.address, result: "task" });
    }
  };

  const done = Promise.all(Array.from({ length: o.concurrency }, () => slot())).then(() => undefined);
  void stopped;

  return {
    done,
    async stop(graceMs) {
      if (!stopping) {
        stopping = true;
        const w = wakeSleepers;
        wakeSleepers = [];
        w.forEach((f) => f());
        parked.splice(0).forEach((f) => f());
      }
      const graceOver = Bun.sleep(graceMs).then(() => "grace" as const);
      if ((await Promise.race([done.then(() => "done" as const), graceOver])) === "grace") {
        o.log.warn("shutdown_grace_exceeded", { running: busy });
        await o.pool.close(); // remaining runs end "aborted": not reported, the broker's deadline hands them out again
      }
      await done;
      await Promise.allSettled([...pendingReports]);
    },
  };
}
