// How an activation is shown to people (dashboard, inspect CLI, admin JSON):
// the stored protobuf bytes decoded into task name, namespace, attempts and
// parameters (msgpack/zstd decoded), with undecodable parameters reported
// instead of failing the whole view.
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { TaskActivationSchema } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { activationParameters } from "../activation/parameters.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A JSON-safe rendering of decoded values for people: msgpack bin becomes its
 * UTF-8 text when it is text, else `{"$base64": ...}`; bigints become strings.
 */
export function displayable(value: unknown): unknown {
  if (value instanceof Uint8Array) {
    try {
      return { $bytes: utf8.decode(value) };
    } catch {
      return { $base64: Buffer.from(value).toString("base64") };
    }
  }
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(displayable);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = displayable(v);
    return out;
  }
  return value;
}

export interface ActivationView {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  /** retry_state.attempts: attempts already made (0 on the first run). */
  attempts: number;
  maxAttempts: number;
  receivedAtMs: number | null;
  headers: Record<string, string>;
  /** Decoded `{args, kwargs}` made JSON-safe, or null with `parametersError`. */
  parameters: { args: unknown[]; kwargs: Record<string, unknown> } | null;
  parametersError?: string;
  /** Size of the stored activation, bytes. */
  sizeBytes: number;
}

export function describeActivation(bytes: Uint8Array): ActivationView {
  const a = fromBinary(TaskActivationSchema, bytes);
  let parameters: ActivationView["parameters"] = null;
  let parametersError: string | undefined;
  try {
    parameters = displayable(activationParameters(a)) as ActivationView["parameters"];
  } catch (err) {
    parametersError = (err as Error).message;
  }
  return {
    id: a.id,
    namespace: a.namespace,
    taskname: a.taskname,
    application: a.application ?? "",
    attempts: a.retryState?.attempts ?? 0,
    maxAttempts: a.retryState?.maxAttempts ?? 0,
    receivedAtMs: a.receivedAt ? timestampMs(a.receivedAt) : null,
    headers: a.headers,
    parameters,
    ...(parametersError !== undefined ? { parametersError } : {}),
    sizeBytes: bytes.byteLength,
  };
}

/** The whole activation as protobuf JSON (for --json consumers that want every field). */
export function activationJson(bytes: Uint8Array): unknown {
  return toJson(TaskActivationSchema, fromBinary(TaskActivationSchema, bytes));
}

/** A dead letter as the dashboard, the admin JSON API and `inspect` show it. */
export interface DeadLetterRow {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  deadLetteredAtMs: number;
  attempts: number;
  parameters: unknown;
  parametersError?: string;
  /** Set when the activation was too large to decode for a list; its size, bytes. */
  parametersOmittedBytes?: number;
}

export function deadLetterRow(
  d: {
    id: string;
    namespace: string;
    taskname: string;
    application: string;
    deadLetteredAtMs: number;
    activation: Uint8Array;
  },
  opts: { maxParameterBytes?: number } = {},
): DeadLetterRow {
  const row = {
    id: d.id,
    namespace: d.namespace,
    taskname: d.taskname,
    application: d.application,
    deadLetteredAtMs: d.deadLetteredAtMs,
  };
  let view: ActivationView | null = null;
  const omitted = opts.maxParameterBytes !== undefined && d.activation.byteLength > opts.maxParameterBytes;
  if (omitted) {
    try {
      // The cheap fields only: no parameters decoded (a 12 MiB one decodes to far more as JSON).
      const a = fromBinary(TaskActivationSchema, d.activation);
      return {
        ...row,
        attempts: a.retryState?.attempts ?? 0,
        parameters: null,
        parametersOmittedBytes: d.activation.byteLength,
      };
    } catch {
      // Undecodable: shown below like any other.
    }
  }
  try {
    view = describeActivation(d.activation);
  } catch {
    // Undecodable bytes are exactly what ends up here: the row is still shown.
  }
  return {
    ...row,
    attempts: view?.attempts ?? 0,
    parameters: view?.parameters ?? null,
    ...(view?.parametersError ? { parametersError: view.parametersError } : {}),
  };
}
