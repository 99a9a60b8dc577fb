// The worker in push mode (docs/spec/worker.md "Push mode"): instead of fetch loops, a
// push port where the broker hands activations over with PushTask. Each one
// takes a slot (at most `concurrency` run at once; a push arriving with every
// slot taken is answered RESOURCE_EXHAUSTED "worker busy", and the broker
// tries elsewhere or later), runs through the same execution path as pull
// mode (expiry, at-most-once, deadlines, retry statuses) and its result is
// reported in batches with SetBatchActivationStatus (status-batcher.ts) to the
// broker that pushed it: the one named by the push's callback_url, else the
// first configured broker. A worker may so serve several brokers at once.
import { Code } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import { type Outcome, type ReportStatus, STATUS_RETRY } from "../sdk/execute.ts";
import type { WireActivation } from "../activation/wire.ts";
import type { BrokerClient } from "./broker-client.ts";
import { createExecutor, type ExecutorOptions } from "./execution.ts";
import type { HealthFile } from "./health.ts";
import { startPushServer } from "./push-server.ts";
import { createStatusBatcher, type StatusBatcher } from "./status-batcher.ts";

export interface PushModeOptions extends ExecutorOptions {
  port: number;
  concurrency: number;
  secrets?: string[];
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
  /** Resolves once stop() has finished. */
  done: Promise<void>;
  /** Stop accepting pushes; let running tasks finish within graceMs; report every result held. */
  stop(graceMs: number): Promise<void>;
}

export async function startPushMode(o: PushModeOptions): Promise<PushMode> {
  const execute = createExecutor(o);
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
  const running = new Set<Promise<void>>();
  let stopping = false;

  const setBusy = () => o.metrics.occupancy.set(running.size / o.concurrency);

  const run = async (a: WireActivation, callbackUrl: string) => {
    const r = await execute(a);
    o.onResult?.(a, r.outcome, r.status, r.error);
    if (r.status !== null) {
      batcherFor(callbackUrl).add({
        id: a.id,
        status: r.status,
        maxAttempts: r.status === STATUS_RETRY ? a.maxAttempts : undefined,
        delayOnRetry: r.status === STATUS_RETRY && r.delayOnRetry !== undefined ? BigInt(Math.ceil(r.delayOnRetry)) : undefined,
      });
    }
    o.health.progress();
  };

  const server = await startPushServer({
    port: o.port,
    secrets: o.secrets,
    log: o.log,
    accept(a, callbackUrl) {
      if (stopping) return { code: Code.Unavailable, message: "worker is shutting down" };
      if (running.size >= o.concurrency) return { code: Code.ResourceExhausted, message: "worker busy" };
      const p = run(a, callbackUrl)
        .catch((err) => o.log.error("push_run_failed", { id: a.id, error: err }))
        .finally(() => {
          running.delete(p);
          setBusy();
        });
      running.add(p);
      setBusy();
      return null;
    },
  });

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopped: Promise<void> | null = null;
  return {
    port: server.port,
    done,
    stop(graceMs) {
      stopped ??= (async () => {
        stopping = true;
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
