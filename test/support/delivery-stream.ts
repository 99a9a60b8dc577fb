// Test helper: a streaming delivery client (src/connect/delivery-client.ts)
// that records what the broker sends, with awaitable conditions instead of
// sleeps, and never more in hand than the credit granted (checked on every
// message, so "credit never exceeded" is asserted throughout a test).
import type { ConnectError } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema, type TaskActivation } from "../../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { openDeliveryStream, type DeliveryStream } from "../../src/connect/delivery-client.ts";
import type { WorkerMessageFields } from "../../src/protocol/delivery-messages.ts";

export interface RecordedStream {
  stream: DeliveryStream;
  /** Every activation received, in order. */
  received: TaskActivation[];
  /** Received and not yet reported by report(). */
  inHand: Map<string, TaskActivation>;
  /** Credit as the client counts it: granted + returned - received. */
  credit(): number;
  /** Largest number of activations held at once beyond the credit ever granted (must stay 0). */
  overdrawn(): number;
  committed(): number;
  messages(): number;
  /** The stream's end: undefined while open, null for OK, else the error. */
  ended(): ConnectError | null | undefined;
  /** Reports outcomes (default COMPLETE) for these ids; each returns a credit. */
  report(ids: string[], status?: 3 | 4 | 5): void;
  send(m: WorkerMessageFields): boolean;
  /** Resolves once `predicate` holds (checked after every message and at the end), or rejects after timeoutMs. */
  until(predicate: () => boolean, what: string, timeoutMs?: number): Promise<void>;
}

export function recordStream(opts: {
  address: string;
  credit: number;
  application?: string;
  namespace?: string;
  secrets?: string[];
  worker?: string;
  /** Called with every batch before it is recorded as in hand. */
  onBatch?: (batch: TaskActivation[], rec: RecordedStream) => void;
}): RecordedStream {
  const received: TaskActivation[] = [];
  const inHand = new Map<string, TaskActivation>();
  let credit = opts.credit;
  let overdrawn = 0;
  let committed = 0;
  let messages = 0;
  let end: ConnectError | null | undefined;
  const checks = new Set<() => void>();
  const check = () => {
    for (const c of [...checks]) c();
  };
  const rec: RecordedStream = {
    stream: undefined as unknown as DeliveryStream,
    received,
    inHand,
    credit: () => credit,
    overdrawn: () => overdrawn,
    committed: () => committed,
    messages: () => messages,
    ended: () => end,
    report(ids, status = 5) {
      for (const id of ids) inHand.delete(id);
      credit += ids.length;
      rec.stream.send({ results: ids.map((id) => ({ id, status })) });
    },
    send(m) {
      credit += (m.credit ?? 0) + (m.results?.length ?? 0);
      return rec.stream.send(m);
    },
    until(predicate, what, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        const entry = () => {
          if (predicate()) {
            checks.delete(entry);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          checks.delete(entry);
          reject(
            new Error(
              `timed out waiting for ${what} (received ${received.length}, in hand ${inHand.size}, committed ${committed}, ended ${end === undefined ? "no" : String(end)})`,
            ),
          );
        }, timeoutMs);
        checks.add(entry);
        entry();
      });
    },
  };
  const open: { application?: string; namespace?: string; worker?: string } = {};
  if (opts.application !== undefined) open.application = opts.application;
  if (opts.namespace !== undefined) open.namespace = opts.namespace;
  if (opts.worker !== undefined) open.worker = opts.worker;
  rec.stream = openDeliveryStream({
    address: opts.address,
    secrets: opts.secrets,
    open,
    credit: opts.credit,
    keepaliveMs: 0,
    onMessage(m) {
      messages++;
      committed += m.resultsCommitted;
      credit += m.revoked;
      if (m.activations.length > 0) {
        const batch = m.activations.map((b) => fromBinary(TaskActivationSchema, b));
        credit -= batch.length;
        if (credit < 0) overdrawn = Math.max(overdrawn, -credit);
        for (const a of batch) {
          received.push(a);
          inHand.set(a.id, a);
        }
        opts.onBatch?.(batch, rec);
      }
      check();
    },
    onEnd(err) {
      end = err;
      check();
    },
  });
  return rec;
}
