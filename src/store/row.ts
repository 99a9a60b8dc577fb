// Turning TaskActivation bytes into the row the store keeps (validation
// included): ingest, the local retry publisher and dead-letter replay use it.
// Pure: no I/O, the clock is a parameter. Rules: docs/spec/broker.md "Ingest".
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { KafkaOrigin, NewRow } from "./types.ts";
import { decodeActivation, InvalidActivation } from "../activation/decode.ts";
import { scanActivation, type ActivationFields } from "../activation/wire.ts";
import { IDEMPOTENCY_HEADER } from "../activation/headers.ts";

/** The indexed fields from a fully decoded activation (the slow path). */
function fieldsOf(a: TaskActivation): ActivationFields {
  const ts = a.receivedAt;
  return {
    id: a.id,
    namespace: a.namespace,
    taskname: a.taskname,
    application: a.application ?? "",
    receivedAtMs:
      !ts || (ts.seconds === 0n && ts.nanos === 0)
        ? null
        : Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000),
    processingDeadlineDuration: Number(a.processingDeadlineDuration),
    expires: a.expires !== undefined ? Number(a.expires) : undefined,
    delay: a.delay !== undefined ? Number(a.delay) : undefined,
    atMostOnce: a.retryState?.atMostOnce ?? false,
    onAttemptsExceeded: a.retryState?.onAttemptsExceeded ?? 0,
    idempotencyKey: a.headers[IDEMPOTENCY_HEADER],
  };
}

/** Keys longer than this are stored as their SHA-256, so a producer cannot make the key table's rows arbitrarily large. */
const MAX_STORED_KEY_CHARS = 200;

/**
 * The stored form of an activation's idempotency key: scoped to its
 * application (keys are the producers' own strings), null when it has none.
 */
export function scopedIdempotencyKey(application: string, key: string | undefined): string | null {
  if (key === undefined || key === "") return null;
  const k =
    key.length <= MAX_STORED_KEY_CHARS ? key : `sha256:${new Bun.CryptoHasher("sha256").update(key).digest("hex")}`;
  return `${application}\u0000${k}`;
}

/**
 * Validates and maps one activation. Throws InvalidActivation naming the first
 * missing field (id, namespace, taskname, application) or "undecodable".
 * A zero `expires` or `delay` is treated as unset (never "expire immediately").
 * The fast wire scan (activation/wire.ts) handles ordinary activations; anything it is
 * unsure about goes through the full decoder.
 */
export function activationToRow(
  bytes: Uint8Array,
  nowMs: number,
  opts: { maxDelaySec: number },
  origin: KafkaOrigin | null,
): NewRow {
  if (bytes.byteLength === 0) throw new InvalidActivation("empty activation payload");
  const a = scanActivation(bytes) ?? fieldsOf(decodeActivation(bytes));
  for (const field of ["id", "namespace", "taskname"] as const) {
    if (!a[field]) throw new InvalidActivation(`activation is missing ${field}`);
  }
  if (!a.application) throw new InvalidActivation(`activation ${a.id} is missing application`);
  const receivedAtMs = a.receivedAtMs ?? nowMs;
  const expires = a.expires ?? 0;
  const delay = Math.min(a.delay ?? 0, opts.maxDelaySec);
  return {
    id: a.id,
    namespace: a.namespace,
    taskname: a.taskname,
    application: a.application,
    receivedAtMs,
    expiresAtMs: expires > 0 ? receivedAtMs + expires * 1000 : null,
    delayUntilMs: delay > 0 ? receivedAtMs + delay * 1000 : null,
    processingDeadlineDurationS: a.processingDeadlineDuration,
    atMostOnce: a.atMostOnce,
    onAttemptsExceeded: a.onAttemptsExceeded,
    activation: bytes,
    origin,
    idempotencyKey: scopedIdempotencyKey(a.application, a.idempotencyKey),
  };
}
