// Raw topics (docs/spec/broker.md "Raw topics"): messages that are not TaskActivations become
// activations for a configured application/namespace/task. Payload mode wraps
// the message bytes as the single positional argument; headers mode builds
// kwargs from typed headers (headers.ts). The message's UTF-8 Kafka headers become
// the activation's headers in both modes, as the reference's raw mode copies them. Parameters (activation/parameters.ts) are msgpack
// {"args": [...], "kwargs": {...}}, zstd level 3, header compression-type: zstd,
// exactly as the reference Python producer writes them. Pure.
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { KafkaTopicConfig } from "../config/broker.ts";
import {
  OnAttemptsExceeded,
  RetryStateSchema,
  TaskActivationSchema,
} from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { derivedActivationId } from "../activation/ids.ts";
import { encodeParameters } from "../activation/parameters.ts";
import { taskKwargs, type DispatchPath, type RawHeaders } from "./headers.ts";

export type RawTopicSpec = NonNullable<KafkaTopicConfig["raw"]>;

/** A consumed message, independent of the Kafka client library. */
export interface RawMessage {
  topic: string;
  partition: number;
  offset: string;
  value: Uint8Array | null;
  headers: RawHeaders;
  /** Kafka message timestamp, Unix ms (0 when the producer set none). */
  timestampMs: number;
}

/**
 * Deterministic activation id for a raw message: a redelivered message (crash
 * before the offset commit) gets the same id, so the store ignores it as a
 * duplicate instead of running the task twice. UUID4-shaped, 32 hex chars.
 */
export function rawActivationId(topic: string, partition: number, offset: string): string {
  return derivedActivationId(`raw:${topic}:${partition}:${offset}`);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The message's Kafka headers that go onto its activation: every header whose
 * value is UTF-8, as text (as the reference copies them, so e.g. a producer's
 * trace headers reach the task); a null or non-UTF-8 value is left out.
 */
function activationHeaders(headers: RawHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === null || value === undefined) continue;
    try {
      out[name] = utf8.decode(value);
    } catch {}
  }
  return out;
}

/** raw.compression_level that leaves the parameters uncompressed (the reference's value). */
export const COMPRESSION_DISABLED = -1;

/**
 * The activation for one raw message. Headers mode returns which path built
 * the kwargs; throws HeaderDecodeError when neither headers nor payload decode.
 */
export function rawActivation(
  msg: RawMessage,
  spec: RawTopicSpec,
  nowMs: number,
): { bytes: Uint8Array; path?: DispatchPath } {
  let args: unknown[];
  let kwargs: Record<string, unknown>;
  let path: DispatchPath | undefined;
  if (spec.mode === "headers") {
    const decoded = taskKwargs(msg.headers, msg.value, {
      spec: spec.header_kwargs,
      version: spec.header_version,
      payloadFormat: spec.payload_fallback,
    });
    args = [];
    kwargs = decoded.kwargs;
    path = decoded.path;
  } else {
    args = [msg.value ?? new Uint8Array(0)];
    kwargs = {};
  }
  const level = spec.compression_level ?? 3;
  const activation = create(TaskActivationSchema, {
    id: rawActivationId(msg.topic, msg.partition, msg.offset),
    application: spec.application,
    namespace: spec.namespace,
    taskname: spec.taskname,
    parametersBytes: encodeParameters({ args, kwargs }, level === COMPRESSION_DISABLED ? "none" : "zstd", { level })
      .bytes,
    // compression-type is set after the message's own headers, so it always describes these parameters.
    headers:
      level === COMPRESSION_DISABLED
        ? activationHeaders(msg.headers)
        : { ...activationHeaders(msg.headers), "compression-type": "zstd" },
    receivedAt: timestampFromMs(msg.timestampMs > 0 ? msg.timestampMs : nowMs),
    processingDeadlineDuration: BigInt(spec.processing_deadline_duration),
    expires: spec.expires !== undefined && spec.expires > 0 ? BigInt(spec.expires) : undefined,
    retryState: create(RetryStateSchema, {
      attempts: 0,
      maxAttempts: 1,
      onAttemptsExceeded: OnAttemptsExceeded.DISCARD,
    }),
  });
  return { bytes: toBinary(TaskActivationSchema, activation), path };
}
