// The worker in push mode (docs/spec/worker.md "Push mode"): instead of fetch loops, a
// push port where the broker hands activations over with PushTask. Each one
// takes a slot (at most `concurrency` run at once); a push arriving with every
// slot taken waits up to the push-task timeout (and never past the caller's
// own deadline) for one to free, else it is answered RESOURCE_EXHAUSTED
// "worker busy" and the broker tries elsewhere or later. Runs go through the
// same execution path as pull mode (expiry, at-most-once, deadlines, retry
// statuses) and results are reported in batches with SetBatchActivationStatus
// (status-batcher.ts) to the broker that pushed: the one named by the push's
// callback_url, else the first configured broker. callback_url makes the
// worker connect where the push says, so it is followed only when the push
// was signed (by a broker holding the shared secret) or names a configured
// broker (--rpc-host-list, --push-callback-hosts); otherwise the result goes
// to the first configured broker.
//
// Like Sentry's push worker, the port serves grpc.health.v1.Health from the
// moment it listens: NOT_SERVING (and pushes answered UNAVAILABLE) while the
// task threads load the task modules, SERVING once all of them are up or the
// warm-up timeout passed (a degraded worker beats one that never becomes
// ready), NOT_SERVING again as soon as shutdown begins.
import { Code } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import { type Outcome, type ReportStatus, STATUS_RETRY } from "../sdk/execute.ts";
import type { WireActivation } from "../activation/wire.ts";
import type { BrokerClient } from "./broker-client.ts";
import { createExecutor, type Execution, type ExecutorOptions } from "./execution.ts";
import type { HealthFile } from "./health.ts";
import type { SignaturePolicy } from "../connect/signing.ts";
import { createPushHealth, type PushAnswer, startPushServer } from "./push-server.ts";
import { createStatusBatcher, type StatusBatcher } from "./status-batcher.ts";

export interface PushModeOptions extends Omit<ExecutorOptions, "tasks"> {
  port: number;
  concurrency: number;
  /** How pushes are authenticated (connect/signing.ts). */
  signing: SignaturePolicy;
  /** Serve unsigned pushes when no secret is configured. */
  allowUnsigned?: boolean;
  /** Brokers (host:port) an unsigned push's callback_url may name: the configured ones. */
  knownBrokers: readonly string[];
  /** Largest PushTask request accepted, bytes; undefined: the server's default. */
  maxMessageBytes?: number;
  /** Longest a push waits for a free slot before it is answered busy, ms. */
  pushTaskTimeoutMs: number;
  /** Longest the health service stays NOT_SERVING waiting for every task thread, ms. */
  warmupTimeoutMs: number;
  /** Where results go when a push names no callback_url (the first configured broker). */
  reportTo: BrokerClient;
  /** A client for a broker named by a push's callback_url (signed like every call). */
  clientFor: (address: string) => BrokerClient;
  health: HealthFile;
  log: Logger;
  onResult?: (activation: WireActivation, outcome: Outcome, status: ReportStatus | null, error?: string) => void;
}

export interface PushMode {
  port: number;
  /** Resolves once the task modules are loaded (SERVING follows after warm-up); rejects when they fail to load. */
  ready: Promise<void>;
  /** Resolves once stop() has finished. */
  done: Promise<void>;
  /** Stop accepting pushes; let running tasks finish within graceMs; report every result held. */
  stop(graceMs: number): Promise<void>;
}

export async function startPushMode(o: PushModeOptions): Promise<PushMode> {
  let execute: ((a: WireActivation) => Promise<Execution>) | null = null;
  // One batcher per reporting broker, created on the first result for it.
  const batchers = new Map<string, StatusBatcher>();
  const batcherFor = (callbackUrl: string): StatusBatcher => {
    const address = callbackUrl.replace(/^https?:\/\//, "") || o.reportTo.address;
    let b = batchers.get(address);
    if (!b) {
      const client = address === o.reportTo.address ? o.reportTo : o.clientFor(address);
      batchers.set(address, (b = createStatusBatcher({ client, log: o.log })));
    }
    return b;
  };
  const known = new Set(o.knownBrokers.map((a) => a.toLowerCase()));
  const refusedCallbacks = new Set<string>();
  /** Where a push's result goes: its callback_url when that may be trusted, else the first configured broker. */
  const reportAddress = (callbackUrl: string, signed: boolean): string => {
    const named = callbackUrl.replace(/^https?:\/\//, "").replace(/\/+$/, "");
    if (named === "") return o.reportTo.address;
    if (signed || known.has(named.toLowerCase())) return named;
    if (!refusedCallbacks.has(named) && refusedCallbacks.size < 100) {
      refusedCallbacks.add(named);
      o.log.warn("push_callback_refused", {
        callback_url: callbackUrl,
        reporting_to: o.reportTo.address,
        detail: "an unsigned push named a broker that is not configured (--rpc-host-list, --push-callback-hosts)",
      });
    }
    return o.reportTo.address;
  };
  const running = new Set<Promise<void>>();
  /** Pushes waiting for a slot, first come first served. */
  const waiting: Array<() => void> = [];
  let stopping = false;
  const healthState = createPushHealth();

  const setBusy = () => o.metrics.occupancy.set(running.size / o.concurrency);

  const run = async (a: WireActivation, callbackUrl: string) => {
    const r = await execute!(a);
    o.onResult?.(a, r.outcome, r.status, r.error);
    if (r.status !== null) {
      o.health.progress();
      batcherFor(callbackUrl).add({
        id: a.id,
        status: r.status,
        maxAttempts: r.status === STATUS_RETRY ? a.maxAttempts : undefined,
        delayOnRetry:
          r.status === STATUS_RETRY && r.delayOnRetry !== undefined ? BigInt(Math.ceil(r.delayOnRetry)) : undefined,
      });
    }
  };

  const start = (a: WireActivation, callbackUrl: string) => {
    const p = run(a, callbackUrl)
      .catch((err) => o.log.error("push_run_failed", { id: a.id, error: err }))
      .finally(() => {
        running.delete(p);
        setBusy();
        waiting.shift()?.();
      });
    running.add(p);
    setBusy();
  };

  /** Resolves true when a slot is free within `ms` (false: still full, or stopping). */
  const slotWithin = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(!stopping);
      };
      const timer = setTimeout(() => {
        const i = waiting.indexOf(wake);
        if (i >= 0) waiting.splice(i, 1);
        resolve(false);
      }, ms);
      waiting.push(wake);
    });

  const accept = async (a: WireActivation, callbackUrl: string, budgetMs: number | undefined): Promise<PushAnswer> => {
    if (stopping) return { code: Code.Unavailable, message: "worker is shutting down" };
    if (execute === null) return { code: Code.Unavailable, message: "worker is warming up" };
    o.health.progress();
    if (running.size >= o.concurrency) {
      const waitMs = Math.max(0, Math.min(o.pushTaskTimeoutMs, budgetMs ?? Infinity));
      // A freed slot goes to the first waiter; anyone else keeps waiting for the next one.
      if (waitMs === 0 || !(await slotWithin(waitMs)) || running.size >= o.concurrency) {
        return stopping
          ? { code: Code.Unavailable, message: "worker is shutting down" }
          : { code: Code.ResourceExhausted, message: "worker busy" };
      }
    }
    start(a, callbackUrl);
    return null;
  };

  const server = await startPushServer({
    port: o.port,
    signing: o.signing,
    allowUnsigned: o.allowUnsigned,
    ...(o.maxMessageBytes !== undefined ? { maxMessageBytes: o.maxMessageBytes } : {}),
    log: o.log,
    health: healthState,
    accept: (a, callbackUrl, budgetMs, signed) => {
      const reportTo = reportAddress(callbackUrl, signed);
      // The common case (a slot free) answers without a promise.
      if (!stopping && execute !== null && running.size < o.concurrency && waiting.length === 0) {
        o.health.progress();
        start(a, reportTo);
        return null;
      }
      return accept(a, reportTo, budgetMs);
    },
  });

  const warmStart = Date.now();
  const ready = (async () => {
    const tasks = await o.pool.ready;
    execute = createExecutor({ ...o, tasks });
    // Every thread up, or the warm-up timeout: then SERVING.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      o.pool.allReady.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), o.warmupTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (stopping) return;
    healthState.set(true);
    o.log.info("warmup_complete", {
      ready_threads: o.pool.readyThreads(),
      timed_out: timedOut,
      ms: Date.now() - warmStart,
    });
  })();
  const loaded = o.pool.ready.then(() => undefined);
  ready.catch(() => {});

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopped: Promise<void> | null = null;
  return {
    port: server.port,
    ready: loaded,
    done,
    stop(graceMs) {
      stopped ??= (async () => {
        stopping = true;
        healthState.set(false);
        for (const w of waiting.splice(0)) w();
        const closed = server.close();
        const all = Promise.allSettled([...running]).then(() => "done" as const);
        if ((await Promise.race([all, Bun.sleep(graceMs).then(() => "grace" as const)])) === "grace") {
          o.log.warn("shutdown_grace_exceeded", { running: running.size });
          await o.pool.close(); // remaining runs end "aborted": unreported, the broker's deadline hands them out again
        }
        await all;
        await Promise.all([...batchers.values()].map((b) => b.close()));
        await closed;
        resolveDone();
      })();
      return stopped;
    },
  };
}
