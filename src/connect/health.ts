// grpc.health.v1.Health: "" reports the process (NOT_SERVING while its store
// cannot commit: a full or failing disk), the named ConsumerService also
// whether upkeep is alive (docs/spec/broker.md "Health"). Watch streams each change;
// it ends when the client goes away, or after reporting NOT_SERVING once the
// broker is shutting down. Watchers are cheap: one shared ticker polls the
// health source while any watcher exists and wakes them all on a change
// (gRPC watchers are served on the raw stream by health-watch.ts; this
// implementation serves Connect and gRPC-Web).
import { Code, ConnectError } from "@connectrpc/connect";
import type { ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as Serving } from "../gen/grpc/health/v1/health_pb.ts";

export const CONSUMER_SERVICE_NAME = "sentry_protos.taskbroker.v1.ConsumerService";

export interface HealthSource {
  /** False when upkeep has stalled. */
  isHealthy(): boolean;
  /** True once shutdown began: everything reports NOT_SERVING. */
  isClosing(): boolean;
  /** False while the store's commits fail on the disk: everything reports NOT_SERVING. Absent: always writable. */
  isStoreWritable?(): boolean;
  /** How often Watch re-checks. */
  watchIntervalMs: number;
}

/** Serving status of a service name, or null when the name is unknown. */
export function servingStatus(service: string, src: HealthSource): Serving | null {
  if (service !== "" && service !== CONSUMER_SERVICE_NAME) return null;
  if (src.isClosing()) return Serving.NOT_SERVING;
  if (src.isStoreWritable && !src.isStoreWritable()) return Serving.NOT_SERVING;
  if (service === "") return Serving.SERVING;
  return src.isHealthy() ? Serving.SERVING : Serving.NOT_SERVING;
}

/** One poll of the health source shared by every watcher; subscribers are called when any answer may have changed. */
export interface HealthTicker {
  subscribe(onChange: () => void): () => void;
}

export function createHealthTicker(src: HealthSource): HealthTicker {
  const subscribers = new Set<() => void>();
  let timer: ReturnType<typeof setInterval> | null = null;
  let last = "";
  const fingerprint = () =>
    `${servingStatus("", src)}:${servingStatus(CONSUMER_SERVICE_NAME, src)}:${src.isClosing() ? 1 : 0}`;
  const tick = () => {
    const now = fingerprint();
    if (now === last) return;
    last = now;
    for (const s of [...subscribers]) s();
  };
  return {
    subscribe(onChange) {
      subscribers.add(onChange);
      if (timer === null) {
        last = fingerprint();
        timer = setInterval(tick, src.watchIntervalMs);
        timer.unref?.();
      }
      return () => {
        subscribers.delete(onChange);
        if (subscribers.size === 0 && timer !== null) {
          clearInterval(timer);
          timer = null;
        }
      };
    },
  };
}

/** Resolves on the ticker's next change or when `signal` aborts. */
function nextChange(ticker: HealthTicker, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      unsubscribe();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const unsubscribe = ticker.subscribe(done);
    signal.addEventListener("abort", done);
  });
}

export function healthServiceImpl(
  src: HealthSource,
  ticker: HealthTicker = createHealthTicker(src),
): ServiceImpl<typeof Health> {
  return {
    async check(req) {
      const status = servingStatus(req.service, src);
      if (status === null) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return { status };
    },
    async *watch(req, ctx) {
      let last: Serving | -1 = -1;
      while (!ctx.signal.aborted) {
        const status = servingStatus(req.service, src) ?? Serving.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
        }
        // Shutting down: watchers have been told NOT_SERVING; ending the
        // stream lets the drain finish instead of waiting out its timeout.
        if (src.isClosing()) return;
        await nextChange(ticker, ctx.signal);
      }
    },
  };
}
