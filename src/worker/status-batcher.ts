// Push mode's result reporting: outcomes collect here and go to the broker in
// one SetBatchActivationStatus call every few ms or every N results, so a
// worker running many short tasks pays one round trip per batch. A failed
// call keeps its results and tries again with back-off (the broker applies
// an update for an id it no longer holds as a no-op, so a repeat is harmless),
// whatever the error (a wrong secret is fixed by the operator, and the held
// results go in then), as Sentry's worker requeues them; only NOT_FOUND (the
// broker does not know the batch's ids) drops it, logged. close() sends
// everything held, within its give-up time.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import type { BrokerClient, StatusReport } from "./broker-client.ts";

export interface StatusBatcherOptions {
  client: BrokerClient;
  log: Logger;
  /** Longest a result waits before its batch is sent, ms. Default 5. */
  flushMs?: number;
  /** A batch is sent as soon as it holds this many results. Default 64. */
  maxBatch?: number;
}

export interface StatusBatcher {
  add(report: StatusReport): void;
  /** Results not yet acknowledged by the broker. */
  held(): number;
  /** Sends everything held (retrying transient failures for up to giveUpMs), then stops. */
  close(giveUpMs?: number): Promise<void>;
}

export function createStatusBatcher(o: StatusBatcherOptions): StatusBatcher {
  const flushMs = o.flushMs ?? 5;
  const maxBatch = o.maxBatch ?? 64;
  let queue: StatusReport[] = [];
  let sending = 0; // results in the call in flight
  let timer: ReturnType<typeof setTimeout> | null = null;
  let inFlight: Promise<void> | null = null;
  let failures = 0;
  let closing = false;

  const schedule = (ms: number) => {
    if (timer !== null || inFlight !== null) return;
    timer = setTimeout(() => {
      timer = null;
      void flush();
    }, ms);
  };

  const flush = (): Promise<void> => {
    if (inFlight !== null) return inFlight;
    if (queue.length === 0) return Promise.resolve();
    const batch = queue.splice(0, maxBatch);
    sending = batch.length;
    inFlight = (async () => {
      try {
        await o.client.setBatchStatus(batch);
        failures = 0;
      } catch (err) {
        const e = ConnectError.from(err);
        if (e.code !== Code.NotFound) {
          failures++;
          queue = batch.concat(queue); // keep order; tried again after the back-off
          if (failures === 1 || failures % 20 === 0) {
            o.log.warn("set_batch_status_failed", {
              broker: o.client.address,
              code: Code[e.code],
              error: e.rawMessage,
              held: queue.length,
            });
          }
        } else {
          o.log.error("results_dropped", {
            broker: o.client.address,
            code: Code[e.code],
            error: e.rawMessage,
            count: batch.length,
          });
        }
      } finally {
        sending = 0;
        inFlight = null;
      }
      if (queue.length > 0 && !closing) {
        const wait =
          failures > 0 ? Math.min(2000, 20 * 2 ** Math.min(failures - 1, 10)) : queue.length >= maxBatch ? 0 : flushMs;
        schedule(wait);
      }
    })();
    return inFlight;
  };

  return {
    add(report) {
      queue.push(report);
      if (queue.length >= maxBatch && failures === 0) {
        if (timer !== null) {
          clearTimeout(timer);
          timer = null;
        }
        void flush();
      } else schedule(flushMs);
    },
    held: () => queue.length + sending,
    async close(giveUpMs = 5000) {
      closing = true;
      if (timer !== null) {
        clearTimeout(timer);
        timer = null;
      }
      const until = Date.now() + giveUpMs;
      while (queue.length > 0 || inFlight !== null) {
        await flush();
        if (queue.length > 0 && failures > 0) {
          if (Date.now() >= until) {
            o.log.error("results_dropped", { broker: o.client.address, reason: "shutdown", count: queue.length });
            queue = [];
            break;
          }
          await Bun.sleep(Math.min(200, 20 * 2 ** Math.min(failures - 1, 4)));
        }
      }
    },
  };
}
