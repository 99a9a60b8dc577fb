// The pull loop: `concurrency` fetch loops, each taking an activation from a
// broker, running it in the task pool, and reporting the result to the broker
// that handed it out with SetTaskStatus + fetch_next (one round trip reports
// and fetches). Idle loops park behind a single "scout" that polls with
// exponential back-off, so an idle worker sends one GetTask at a time and a
// new task is still picked up within the current back-off. Every request
// names an application (one per loaded application, taken in turn), so a
// worker never claims another application's tasks. A result the broker
// cannot take is kept and reported again with back-off until it is taken
// (as Sentry's worker requeues it), during shutdown until the grace period
// ends; only a broker that no longer knows the id (NOT_FOUND) ends it.
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
  /** GetTask filters taken in turn, one per application this worker claims for (at least one). */
  filters: FetchFilter[];
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
  /** The filter it was fetched with; fetch_next asks for more of the same. */
  filter: FetchFilter;
}

/** Longest wait between two attempts to report a held result, ms (Sentry's worker: 10 s). */
const MAX_REPORT_BACKOFF_MS = 10_000;

export { isExpired } from "./execution.ts";
import { createExecutor } from "./execution.ts";

export function startWorkerLoop(o: LoopOptions): WorkerLoop {
  let stopping = false;
  let wakeSleepers: Array<() => void> = [];
  const stopped = new Promise<void>((r) => wakeSleepers.push(r));
  /** Sleeps `ms`; stop() wakes it early unless `throughStop` (a held result keeps its back-off while stopping). */
  const sleep = (ms: number, throughStop = false) =>
    new Promise<void>((resolve) => {
      if (throughStop) return void setTimeout(resolve, ms);
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
    o.log.warn(`${what}_failed`, {
      broker: client.address,
      code: Code[code],
      error: ConnectError.from(err).rawMessage,
    });
  };

  let nextFilter = 0;
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
          const filter = o.filters[nextFilter % o.filters.length]!;
          let activation: WireActivation | null;
          o.health.progress();
          try {
            activation = await client.getTask(filter);
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
            return { activation, client, filter };
          }
          o.metrics.fetches.inc({ broker: client.address, result: "empty" });
          nextFilter++;
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

  let heldResults = 0;
  let reportGiveUpAtMs = Infinity; // set by stop(): the end of the grace period
  const setHeld = (d: number) => {
    heldResults += d;
    o.metrics.resultsHeld.set(heldResults);
  };

  /**
   * Reports to the broker that handed out the task. A failed report keeps the result and tries again with
   * back-off (up to 10 s apart) for as long as it takes, or until the shutdown grace period ends.
   */
  const report = async (held: Held, r: StatusReport): Promise<WireActivation | null> => {
    let failures = 0;
    try {
      for (;;) {
        o.health.progress();
        try {
          const next = await held.client.setTaskStatus(r);
          o.balancer.succeeded(held.client.address);
          if (failures > 0)
            o.log.info("result_reported", {
              id: r.id,
              status: r.status,
              broker: held.client.address,
              attempts: failures + 1,
            });
          return next;
        } catch (err) {
          const code = errorCode(err);
          if (code === Code.Unavailable) o.balancer.unavailable(held.client.address);
          if (code === Code.NotFound) {
            o.log.warn("result_unknown_to_broker", { id: r.id, status: r.status, broker: held.client.address });
            return null;
          }
          if (failures++ === 0) setHeld(1);
          const waitMs = Math.min(MAX_REPORT_BACKOFF_MS, 50 * 2 ** Math.min(failures - 1, 10));
          if (Date.now() + waitMs > reportGiveUpAtMs) {
            o.log.error("result_dropped", {
              id: r.id,
              status: r.status,
              broker: held.client.address,
              attempts: failures,
              reason: "shutdown grace period over",
            });
            return null;
          }
          if (failures === 1 || failures % 10 === 0) {
            o.log.warn("set_task_status_failed", {
              id: r.id,
              broker: held.client.address,
              code: Code[code],
              error: ConnectError.from(err).rawMessage,
              attempts: failures,
              result: "kept, retrying",
            });
          }
          // Fetching again is pointless while the broker cannot take results: just get this one in.
          r = { ...r, fetchNext: undefined };
          await sleep(waitMs, true);
        }
      }
    } finally {
      if (failures > 0) setHeld(-1);
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
        fetchNext: fetchNext ? held.filter : undefined,
        maxAttempts: result.status === STATUS_RETRY ? activation.maxAttempts : undefined,
        delayOnRetry:
          result.status === STATUS_RETRY && result.delayOnRetry !== undefined
            ? BigInt(Math.ceil(result.delayOnRetry))
            : undefined,
      };
      const p = report(held, req);
      pendingReports.add(p);
      const next = await p.finally(() => pendingReports.delete(p));
      if (rebalance) cursor.move();
      // Handed out while we were stopping too: run it rather than let it wait for the deadline.
      held = next ? { activation: next, client, filter: held.filter } : null;
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
        reportGiveUpAtMs = Date.now() + graceMs;
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
