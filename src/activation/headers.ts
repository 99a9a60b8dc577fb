// Activation headers: values must be scalars and travel as strings, written
// the way Sentry's Python producer writes them (True/False/None), so either
// side reads the other's headers the same way.

/** Headers that carry a trace from the producer into the task (and on to its follow-ups). */
export const TRACE_HEADERS = ["sentry-trace", "baggage", "traceparent", "tracestate"] as const;

/** Header set to "False" on activations whose trace must not continue into the task or its follow-ups (scheduled ones). */
export const PROPAGATE_TRACES_HEADER = "sentry-propagate-traces";

/**
 * Our extension (docs/spec/idempotency.md): an activation carrying this header
 * is stored once per key and application within the broker's idempotency window.
 */
export const IDEMPOTENCY_HEADER = "taskplatform-idempotency-key";

export type HeaderValue = string | number | boolean | bigint | null | undefined;

export function headerString(key: string, value: HeaderValue): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  throw new TypeError(
    `header ${JSON.stringify(key)} must be a scalar (string, number, boolean, null), got ${typeof value}`,
  );
}

export function stringifyHeaders(headers: Record<string, HeaderValue> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!headers) return out;
  for (const [k, v] of Object.entries(headers)) out[k] = headerString(k, v);
  return out;
}

/** The trace headers present in `headers`, for carrying into a follow-up activation. */
export function traceHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of TRACE_HEADERS) if (headers[name] !== undefined) out[name] = headers[name];
  return out;
}
