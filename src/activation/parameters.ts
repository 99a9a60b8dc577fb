// Task parameters on the wire, the one codec every component uses: msgpack of
// {args, kwargs} (string keys, bytes as bin, floats as float64) in
// parameters_bytes, zstd-compressed (level 3) when forced or when the encoded
// size passes 3,000,000 bytes, flagged by headers["compression-type"]; old
// producers put JSON in the deprecated `parameters` field instead.
// Byte-compatible with Sentry's Python client; see the vectors in docs/spec/wire-contract.md "Parameters" and
// test/sdk.test.ts. 64-bit integers round-trip exactly: a bigint is written as
// msgpack int64/uint64, and an int64/uint64 outside JavaScript's safe integer
// range (2^53 - 1) is read as a bigint (inside it, as a number), in msgpack
// and in legacy JSON alike (test/int64.test.ts, against Python's msgpack).
// Writers: the SDK's builder (build.ts), raw Kafka topics (kafka/raw.ts).
// Readers: the worker (sdk/execute.ts), the kill switch and the
// admin views (activationParameters).
import { Decoder, Encoder } from "@msgpack/msgpack";
import { zstd } from "./zstd.ts";

/** Encoded parameters above this many bytes are compressed even when not forced. */
export const AUTO_COMPRESS_BYTES = 3_000_000;
export const COMPRESSION_HEADER = "compression-type";

// Shared codec instances: constructing one per call shows up in profiles (all are re-entrant).
// ignoreUndefined: Python has no undefined; dropping it from maps beats sending nil.
const encoder = new Encoder({ ignoreUndefined: true });
// For parameters holding a bigint: int64 (negative) or uint64, as Python writes such ints. This
// encoder would write numbers beyond 32 bits as floats, so those are widened to bigint first (widen64).
const encoder64 = new Encoder({ ignoreUndefined: true, useBigInt64: true });
const decoder = new Decoder();
// Reads every int64/uint64 as a bigint; narrowed back to numbers where they are safe (narrow64).
const decoder64 = new Decoder({ useBigInt64: true });
const UINT64 = 0xcf;
const INT64 = 0xd3;

export type Compression = "none" | "zstd" | "auto";

export interface TaskParameters {
  args: unknown[];
  kwargs: Record<string, unknown>;
}

export interface EncodedParameters {
  bytes: Uint8Array;
  /** "zstd" when `bytes` is a zstd frame; goes into headers["compression-type"]. */
  compression: "zstd" | null;
}

/** Parameters that cannot be encoded. */
export class ParameterError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ParameterError";
  }
}

/** Parameters that cannot be decoded; the kill switch and admin views fail open on it. */
export class UndecodableParameters extends ParameterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UndecodableParameters";
  }
}

const detail = (err: unknown) => (err instanceof Error ? err.message : String(err));

function hasBigInt(value: unknown): boolean {
  if (typeof value === "bigint") return true;
  if (Array.isArray(value)) return value.some(hasBigInt);
  if (value && typeof value === "object" && !(value instanceof Uint8Array)) return Object.values(value).some(hasBigInt);
  return false;
}

/** A copy where integers beyond 32 bits are bigint, so encoder64 writes them as ints, not floats. */
function widen64(value: unknown): unknown {
  if (typeof value === "bigint") {
    // msgpack holds int64 and uint64; anything wider would be silently cut to 64 bits.
    if (value < -(2n ** 63n) || value >= 2n ** 64n)
      throw new ParameterError(`integer ${value} does not fit in 64 bits (msgpack int64/uint64)`);
    return value;
  }
  if (typeof value === "number")
    return Number.isSafeInteger(value) && (value >= 2 ** 32 || value < -(2 ** 31)) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(widen64);
  if (value && typeof value === "object" && !(value instanceof Uint8Array) && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, widen64(v)]));
  }
  return value;
}

/** The plain encoder; parameters holding a bigint (it refuses those) go through encoder64. */
function pack(value: TaskParameters): Uint8Array {
  try {
    return encoder.encode(value);
  } catch (err) {
    if (!hasBigInt(value)) throw err;
    return encoder64.encode(widen64(value));
  }
}

/**
 * msgpack {args, kwargs}, compressed per `compression` (zstd at `level`,
 * default 3); bigint values are written as 64-bit integers.
 */
export function encodeParameters(
  params: TaskParameters,
  compression: Compression = "auto",
  options: { level?: number } = {},
): EncodedParameters {
  let raw: Uint8Array;
  try {
    raw = pack({ args: params.args, kwargs: params.kwargs });
  } catch (err) {
    throw new ParameterError(`parameters are not serialisable: ${detail(err)}`, { cause: err });
  }
  const compress = compression === "zstd" || (compression === "auto" && raw.byteLength > AUTO_COMPRESS_BYTES);
  if (!compress) return { bytes: raw, compression: null };
  return { bytes: zstd.compress(raw, options.level ?? 3), compression: "zstd" };
}

/** bigint values inside the safe integer range become numbers again (recursively); others stay bigint. */
function narrow64(value: unknown): unknown {
  if (typeof value === "bigint") {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = narrow64(value[i]);
    return value;
  }
  if (value && typeof value === "object" && !(value instanceof Uint8Array)) {
    const map = value as Record<string, unknown>;
    for (const k of Object.keys(map)) map[k] = narrow64(map[k]);
  }
  return value;
}

/** The one msgpack decode of parameters: every reader goes through here. */
function unpack(raw: Uint8Array): unknown {
  try {
    // Without an int64/uint64 marker byte no value can lie outside the safe range: the plain, faster decode.
    // (A marker byte may also be data, e.g. inside a string; the 64-bit decode is then merely slower.)
    if (raw.indexOf(UINT64) < 0 && raw.indexOf(INT64) < 0) return decoder.decode(raw);
    return narrow64(decoder64.decode(raw));
  } catch (err) {
    throw new UndecodableParameters(`parameters_bytes is not valid msgpack: ${detail(err)}`, { cause: err });
  }
}

/** A decoded value as {args, kwargs}; `source` names the field for the error. */
function shape(value: unknown, source: string): TaskParameters {
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new UndecodableParameters(`${source} must be a map with args and kwargs`);
  }
  const map = value as { args?: unknown; kwargs?: unknown };
  const args = map.args ?? [];
  const kwargs = map.kwargs ?? {};
  if (!Array.isArray(args)) throw new UndecodableParameters(`${source}.args must be an array`);
  if (!kwargs || typeof kwargs !== "object" || Array.isArray(kwargs)) {
    throw new UndecodableParameters(`${source}.kwargs must be a map`);
  }
  return { args, kwargs: kwargs as Record<string, unknown> };
}

/** parameters_bytes (with its compression-type header) as {args, kwargs}; empty bytes are no arguments. */
export function decodeParameters(bytes: Uint8Array, compressionHeader: string | undefined): TaskParameters {
  let raw = bytes;
  if (compressionHeader === "zstd") {
    try {
      raw = zstd.decompress(bytes);
    } catch (err) {
      throw new UndecodableParameters("parameters_bytes is not a valid zstd frame", { cause: err });
    }
  } else if (compressionHeader !== undefined && compressionHeader !== "" && compressionHeader !== "none") {
    throw new UndecodableParameters(`unsupported compression-type ${JSON.stringify(compressionHeader)}`);
  }
  if (raw.byteLength === 0) return { args: [], kwargs: {} };
  return shape(unpack(raw), "parameters");
}

/** JSON.parse reviver: an integer literal outside the safe range becomes a bigint (needs the reviver's source text: Bun, Node 22+). */
function exactIntegers(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}

/** Old producers send JSON in the deprecated `parameters` field; the worker accepts it leniently. */
export function decodeLegacyParameters(json: string): TaskParameters {
  let value: unknown;
  try {
    value = JSON.parse(json, exactIntegers as (this: unknown, key: string, value: unknown) => unknown);
  } catch (err) {
    throw new UndecodableParameters("parameters is not valid JSON", { cause: err });
  }
  const map = (value ?? {}) as { args?: unknown; kwargs?: unknown };
  return {
    args: Array.isArray(map.args) ? map.args : [],
    kwargs: map.kwargs && typeof map.kwargs === "object" ? (map.kwargs as Record<string, unknown>) : {},
  };
}

/**
 * An activation's parameters for inspection (kill switch, admin views):
 * parameters_bytes when set, else the legacy JSON, which must then be a map
 * with args and kwargs. Throws UndecodableParameters.
 */
export function activationParameters(activation: {
  headers: Record<string, string>;
  parameters: string;
  parametersBytes: Uint8Array;
}): TaskParameters {
  if (activation.parametersBytes.byteLength > 0) {
    return decodeParameters(activation.parametersBytes, activation.headers[COMPRESSION_HEADER]);
  }
  if (activation.parameters !== "") {
    let value: unknown;
    try {
      value = JSON.parse(
        activation.parameters,
        exactIntegers as (this: unknown, key: string, value: unknown) => unknown,
      );
    } catch (err) {
      throw new UndecodableParameters(`parameters is not valid JSON: ${detail(err)}`, { cause: err });
    }
    return shape(value, "parameters");
  }
  return { args: [], kwargs: {} };
}
