// Building a TaskActivation from a task definition and a dispatch call: id,
// received_at, msgpack parameters, retry state, deadline, expiry, delay,
// application and string headers. Pure apart from the clock and the id source.
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  OnAttemptsExceeded,
  RetryStateSchema,
  type TaskActivation,
  TaskActivationSchema,
} from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { type HeaderValue, IDEMPOTENCY_HEADER, stringifyHeaders } from "./headers.ts";
import { newActivationId } from "./ids.ts";
import { COMPRESSION_HEADER, type Compression, encodeParameters } from "./parameters.ts";

/** Seconds a worker gives one run when neither the task nor the activation says (docs/spec/worker.md default). */
export const DEFAULT_PROCESSING_DEADLINE_S = 10;

/** The retry fields an activation carries (the SDK's Retry policy is one). */
export interface RetryPolicy {
  /** Total attempts, the first run included (max_attempts). */
  readonly times: number;
  readonly onAttemptsExceeded: "discard" | "deadletter";
  /** Seconds before a retry may run (delay_on_retry), or none. */
  readonly delaySec: number | undefined;
}

/** Everything about a task that shapes its activations. */
export interface ActivationTemplate {
  application: string;
  namespace: string;
  taskname: string;
  retry: RetryPolicy;
  /** Seconds after received_at after which the activation must not start. */
  expiresSec: number | undefined;
  processingDeadlineS: number;
  atMostOnce: boolean;
  compression: Compression;
}

export interface DispatchOptions {
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Seconds to wait before the activation may run (delay on the wire). */
  countdown?: number;
  /** Seconds after dispatch after which it must not start; overrides the task's default. */
  expires?: number;
  headers?: Record<string, HeaderValue>;
  /**
   * Our extension: the broker stores this activation once per key (and
   * application) within its idempotency window, however often it is sent
   * (the taskplatform-idempotency-key header; docs/spec/idempotency.md).
   */
  idempotencyKey?: string;
}

export interface BuiltActivation {
  activation: TaskActivation;
  bytes: Uint8Array;
}

function wholeSeconds(name: string, value: number): bigint {
  if (!Number.isFinite(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative number of seconds, got ${value}`);
  return BigInt(Math.ceil(value));
}

export function buildActivation(
  template: ActivationTemplate,
  options: DispatchOptions,
  inherited: Record<string, string> = {},
  nowMs = Date.now(),
  id = newActivationId(),
): BuiltActivation {
  const params = encodeParameters({ args: options.args ?? [], kwargs: options.kwargs ?? {} }, template.compression);
  const headers: Record<string, string> = { ...inherited, ...stringifyHeaders(options.headers) };
  if (params.compression) headers[COMPRESSION_HEADER] = params.compression;
  if (options.idempotencyKey !== undefined) headers[IDEMPOTENCY_HEADER] = options.idempotencyKey;
  const policy = template.retry;
  // at-most-once means no retries: the broker must never hand it out twice.
  const retries = !template.atMostOnce && policy.times > 1;
  const expires = options.expires ?? template.expiresSec;
  const activation = create(TaskActivationSchema, {
    id,
    application: template.application,
    namespace: template.namespace,
    taskname: template.taskname,
    parametersBytes: params.bytes,
    headers,
    receivedAt: timestampFromMs(nowMs),
    processingDeadlineDuration: wholeSeconds("processing deadline", template.processingDeadlineS),
    expires: expires !== undefined ? wholeSeconds("expires", expires) : undefined,
    delay: options.countdown ? wholeSeconds("countdown", options.countdown) : undefined,
    retryState: create(RetryStateSchema, {
      attempts: 0,
      maxAttempts: retries ? policy.times : 1,
      onAttemptsExceeded:
        retries && policy.onAttemptsExceeded === "deadletter"
          ? OnAttemptsExceeded.DEADLETTER
          : OnAttemptsExceeded.DISCARD,
      atMostOnce: template.atMostOnce ? true : undefined,
      delayOnRetry: retries && policy.delaySec !== undefined ? wholeSeconds("retry delay", policy.delaySec) : undefined,
    }),
  });
  return { activation, bytes: toBinary(TaskActivationSchema, activation) };
}
