// Task parameters on the wire, the one codec every component uses: msgpack of
// {args, kwargs} (string keys, bytes as bin, floats as float64) in
// parameters_bytes, zstd-compressed (level 3) when forced or when the encoded
// size passes 3,000,000 bytes, flagged by headers["compression-type"]; old
// producers put JSON in the deprecated `parameters` field instead.
// Byte-compatible with Sentry's Python client; see the vectors in docs/spec/wire-contract.md "Parameters" and
// test/sdk.test.ts. Writers: the SDK's builder (build.ts), raw Kafka topics
// (kafka/raw.ts). Readers: the worker (sdk/execute.ts), the kill switch and the
// admin views (activationParameters).
import { Decoder, Encoder } from "@msgpack/msgpack";
import { zstd } from "./zstd.ts";

/** Encoded parameters above this many bytes are compressed even when not forced. */
export const AUTO_COMPRESS_BYTES = 3_000_000;
export const COMPRESSION_HEADER = "compression-type";

// Shared codec instances: constructing one per call shows up in profiles (all are re-entrant).
// ignoreUndefined: Python has no undefined; dropping it from maps beats sending nil.
const encoder = new Encoder({ ignoreUndefined: true });
// Raw topics' header kwargs carry 64-bit integers as bigint; they are written as msgpack int64.
const int64Encoder = new Encoder({ ignoreUndefined: true, useBigInt64: true });
const decoder = new Decoder();

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

/**
 * msgpack {args, kwargs}, compressed per `compression` (zstd at `level`,
 * default 3). `int64` writes bigint values as msgpack int64 (raw topics);
 * without it a bigint is not serialisable.
 */
export function encodeParameters(
  params: TaskParameters,
  compression: Compression = "auto",
  options: { int64?: boolean; level?: number } = {},
): EncodedParameters {
  let raw: Uint8Array;
  try {
    raw = (options.int64 ? int64Encoder : encoder).encode({ args: params.args, kwargs: params.kwargs });
  } catch (err) {
    throw new ParameterError(`parameters are not serialisable: ${detail(err)}`, { cause: err });
  }
  const compress = compression === "zstd" || (compression === "auto" && raw.byteLength > AUTO_COMPRESS_BYTES);
  if (!compress) return { bytes: raw, compression: null };
  return { bytes: zstd.compress(raw, options.level ?? 3), compression: "zstd" };
}

/** The one msgpack decode of parameters: every reader goes through here. */
function unpack(raw: Uint8Array): unknown {
  try {
    return decoder.decode(raw);
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

/** Old producers send JSON in the deprecated `parameters` field; the worker accepts it leniently. */
export function decodeLegacyParameters(json: string): TaskParameters {
  let value: unknown;
  try {
    value = JSON.parse(json);
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
      value = JSON.parse(activation.parameters);
    } catch (err) {
      throw new UndecodableParameters(`parameters is not valid JSON: ${detail(err)}`, { cause: err });
    }
    return shape(value, "parameters");
  }
  return { args: [], kwargs: {} };
}
