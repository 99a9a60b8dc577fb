// Push delivery (docs/spec/broker.md "States": Pending -> Claimed -> Processing): one
// loop claims the oldest Pending row with a lease (store.claimForPush), hands
// it to a worker with WorkerService.PushTask, and on OK marks it delivered
// (Processing, its deadline starts). A worker that answers RESOURCE_EXHAUSTED
// ("worker busy") or cannot be reached gets the row released back to Pending
// and is left alone for a short back-off (targets.ts); the next row goes to
// another worker. A broker that dies between claim and answer leaves the row
// Claimed: upkeep step 3 returns it to Pending when the lease expires.
//
// The loop wakes when ingest stores rows (wake()), when a call slot frees or
// a back-off ends, and otherwise polls with a short back-off (upkeep also
// makes rows Pending: delays, retries, deadline resets, expired leases).
import { Code, ConnectError } from "@connectrpc/connect";
import { createWorkerClient, type WorkerClient } from "../connect/worker-client.ts";
import type { Logger } from "../log.ts";
import type { ClaimedActivation, InflightStore } from "../store/types.ts";
import { pushTotal } from "./metrics.ts";
import {
  newTarget,
  nextReadyInMs,
  noteBusy,
  noteDelivered,
  noteFailure,
  pickTarget,
  type PushTarget,
} from "./targets.ts";

/** A worker's push port and, when it serves only one application (worker_map), that application. */
export interface PushWorker {
  address: string;
  application?: string;
}

/** What push delivery asks of the store: lease a row, mark it delivered or release it, record results. */
export type PushStore = Pick<InflightStore, "claimForPush" | "markDelivered" | "releaseClaim" | "setStatuses">;

export interface PusherOptions {
  store: PushStore;
  /** Workers' push ports; a worker with an application only gets that application's rows. */
  workers: PushWorker[];
  /** Signing secrets; the first signs every PushTask. */
  secrets: string[];
  /** Most PushTask calls in flight to one worker. */
  concurrency: number;
  /** Claim lease; a PushTask call gives up well before it so a row is never pushed twice. */
  leaseMs: number;
  /** Longest a PushTask call may take, ms (push.timeout); capped below the lease. */
  timeoutMs?: number;
  /** Largest activation pushed, bytes (grpc_max_message_size); a bigger one can never be delivered and is failed. */
  maxMessageBytes?: number;
  /**
   * This broker's RPC address (host:port) as workers reach it, sent as
   * PushTaskRequest.callback_url so a worker serving several brokers reports
   * each result to the broker that pushed it. Known once the RPC port is bound.
   */
  callbackAddress: () => string | undefined;
  log: Logger;
  /** Longest idle poll interval, ms. Default 250. */
  maxIdlePollMs?: number;
}

export interface Pusher {
  /** Rows were stored: look for work now instead of at the next poll. */
  wake(): void;
  /** Stops claiming; in-flight pushes finish (delivered or released); clients close. */
  stop(): Promise<void>;
}

export function startPusher(o: PusherOptions): Pusher {
  const maxIdle = o.maxIdlePollMs ?? 250;
  const callDeadlineMs = Math.max(100, Math.min(o.timeoutMs ?? 10_000, Math.floor(o.leaseMs * 0.8)));
  const targets: PushTarget[] = o.workers.map((w) => newTarget(w.address));
  const filters = o.workers.map((w) => (w.application ? { application: w.application } : {}));
  const clients: WorkerClient[] = o.workers.map(({ address }) =>
    createWorkerClient({ address, secrets: o.secrets, deadlineMs: callDeadlineMs }),
  );
  const inflight = new Set<Promise<void>>();
  let stopping = false;
  let cursor = 0;

  // One pending wait at a time; anything that could make progress possible resolves it.
  let signal: (() => void) | null = null;
  const poke = () => {
    const s = signal;
    signal = null;
    s?.();
  };
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        signal = null;
        resolve();
      }, ms);
      signal = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const push = async (k: number, row: ClaimedActivation) => {
    const t = targets[k]!;
    const address = t.address;
    if (o.maxMessageBytes !== undefined && row.activation.byteLength > o.maxMessageBytes) {
      // No worker accepts it: fail it now (upkeep dead-letters or discards it) instead of claiming it forever.
      o.log.warn("push_activation_too_large", {
        id: row.id,
        bytes: row.activation.byteLength,
        limit: o.maxMessageBytes,
      });
      pushTotal.inc({ worker: address, result: "too_large" });
      if (safely(() => o.store.markDelivered(row.id), "mark_delivered")) {
        await o.store
          .setStatuses([{ id: row.id, status: "failure" }])
          .catch((err) => o.log.error("push_fail_too_large_failed", { error: err }));
      }
      return;
    }
    t.inflight++;
    try {
      await clients[k]!.pushTask(row.activation, o.callbackAddress());
      // False when the worker already reported (its status moved the row on) or the lease expired meanwhile.
      safely(() => o.store.markDelivered(row.id), "mark_delivered");
      noteDelivered(t);
      pushTotal.inc({ worker: address, result: "delivered" });
    } catch (err) {
      safely(() => o.store.releaseClaim(row.id), "release_claim");
      const e = ConnectError.from(err);
      const now = Date.now();
      if (e.code === Code.ResourceExhausted) {
        noteBusy(t, now);
        pushTotal.inc({ worker: address, result: "busy" });
        o.log.debug("push_worker_busy", { worker: address, id: row.id });
      } else {
        const first = t.failureStreak === 0;
        noteFailure(t, now);
        const result = e.code === Code.Unavailable || e.code === Code.DeadlineExceeded ? "unavailable" : "error";
        pushTotal.inc({ worker: address, result });
        // Once per outage, not once per retry.
        if (first) o.log.warn("push_failed", { worker: address, code: Code[e.code], error: e.rawMessage, id: row.id });
      }
    } finally {
      t.inflight--;
      poke();
    }
  };

  const safely = (fn: () => unknown, what: string): boolean => {
    try {
      return fn() !== false;
    } catch (err) {
      // The lease is the safety net: an unreleased row returns to Pending when it expires.
      o.log.error(`push_${what}_failed`, { error: err });
      return false;
    }
  };

  const loop = async () => {
    let idleMs = 1;
    while (!stopping) {
      const now = Date.now();
      const k0 = pickTarget(targets, cursor, now, o.concurrency);
      if (k0 < 0) {
        // Every worker is full or backing off: wait for a slot or the first back-off to end.
        await wait(Math.min(maxIdle, Math.max(1, nextReadyInMs(targets, now))));
        continue;
      }
      // The first free worker with a row for it: a worker of one application (worker_map) only claims that application's rows.
      let row: ClaimedActivation | null = null;
      let k = k0;
      const tried = new Set<string>();
      for (let i = 0; i < targets.length && row === null; i++) {
        const j = (k0 + i) % targets.length;
        const t = targets[j]!;
        const key = filters[j]!.application ?? "";
        if (tried.has(key) || t.inflight >= o.concurrency || t.notBeforeMs > now) continue;
        tried.add(key);
        try {
          row = o.store.claimForPush(filters[j]!, o.leaseMs);
        } catch (err) {
          o.log.error("push_claim_failed", { error: err });
        }
        k = j;
      }
      if (row === null) {
        await wait(idleMs);
        idleMs = Math.min(maxIdle, idleMs * 2);
        continue;
      }
      idleMs = 1;
      cursor = (k + 1) % targets.length;
      const p = push(k, row).finally(() => inflight.delete(p));
      inflight.add(p);
    }
  };

  // Wake-ups reset the idle back-off implicitly: the loop claims at once and starts from 1 ms again.
  const done = loop().catch((err) => o.log.error("pusher_crashed", { error: err }));
  o.log.info("pusher_started", {
    workers: o.workers.map((w) => (w.application ? `${w.application}=${w.address}` : w.address)).join(","),
    concurrency: o.concurrency,
    lease_ms: o.leaseMs,
    call_timeout_ms: callDeadlineMs,
  });

  let stopped: Promise<void> | null = null;
  return {
    wake: poke,
    stop() {
      stopped ??= (async () => {
        stopping = true;
        poke();
        await done;
        await Promise.allSettled([...inflight]);
        await Promise.allSettled(clients.map((c) => c.close()));
      })();
      return stopped;
    },
  };
}
