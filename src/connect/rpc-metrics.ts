// Per-method RPC counters, cheap enough for the hot path: prom-client label
// lookups hash the label set on every call, so children are cached by
// (method, code) and the histogram child by method.
import { Code } from "@connectrpc/connect";
import type { Histogram, Counter } from "prom-client";
import { rpcDuration, rpcTotal } from "../metrics.ts";

type CounterChild = ReturnType<Counter<"method" | "code">["labels"]>;
type HistogramChild = ReturnType<Histogram<"method">["labels"]>;

/** gRPC code names as used on the wire spec and in metrics (OK, NOT_FOUND, ...). */
export const CODE_NAME: Record<number, string> = {
  0: "OK",
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

const counters = new Map<string, CounterChild>();
const histograms = new Map<string, HistogramChild>();

/** Counts one answered RPC. `method` is the short name (GetTask), `startMs` from performance.now(). */
export function recordRpc(method: string, code: number, startMs: number): void {
  const key = method + "\u0000" + code;
  let c = counters.get(key);
  if (c === undefined) {
    c = rpcTotal.labels(method, CODE_NAME[code] ?? String(code));
    counters.set(key, c);
  }
  c.inc();
  let h = histograms.get(method);
  if (h === undefined) {
    h = rpcDuration.labels(method);
    histograms.set(method, h);
  }
  h.observe((performance.now() - startMs) / 1000);
}

/** The short method name of a path: "/pkg.Service/GetTask" -> "GetTask". */
export function methodName(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash >= 0 ? path.slice(slash + 1) : path;
}
