// Task parameters on the wire: msgpack of {args, kwargs} (string keys, bytes as
// bin, floats as float64), zstd-compressed (level 3) when forced or when the
// encoded size passes 3,000,000 bytes, flagged by headers["compression-type"].
// Byte-compatible with Sentry's Python client; see the vectors in worker.md and
// test/sdk-params.test.ts.
import { Decoder, Encoder } from "@msgpack/msgpack";
import { zstd } from "./zstd.ts";

/** Encoded parameters above this many bytes are compressed even when not forced. */
export const AUTO_COMPRESS_BYTES = 3_000_000;
export const COMPRESSION_HEADER = "compression-type";

// Shared codec instances: constructing one per call shows up in profiles (both are re-entrant).
const encoder = new Encoder({ ignoreUndefined: true });
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

export class ParameterError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ParameterError";
  }
}

export function encodeParameters(params: TaskParameters, compression: Compression = "auto"): EncodedParameters {
  let raw: Uint8Array;
  try {
    // ignoreUndefined: Python has no undefined; dropping it from maps beats sending nil.
    raw = encoder.encode({ args: params.args, kwargs: params.kwargs });
  } catch (err) {
    throw new ParameterError(`parameters are not serialisable: ${(err as Error).message}`, { cause: err });
  }
  const compress = compression === "zstd" || (compression === "auto" && raw.byteLength > AUTO_COMPRESS_BYTES);
  if (!compress) return { bytes: raw, compression: null };
  return { bytes: zstd.compress(raw, 3), compression: "zstd" };
}

export function decodeParameters(bytes: Uint8Array, compressionHeader: string | undefined): TaskParameters {
  let raw = bytes;
  if (compressionHeader === "zstd") {
    try {
      raw = zstd.decompress(bytes);
    } catch (err) {
      throw new ParameterError("parameters_bytes is not a valid zstd frame", { cause: err });
    }
  } else if (compressionHeader !== undefined && compressionHeader !== "" && compressionHeader !== "none") {
    throw new ParameterError(`unsupported compression-type ${JSON.stringify(compressionHeader)}`);
  }
  if (raw.byteLength === 0) return { args: [], kwargs: {} };
  let value: unknown;
  try {
    value = decoder.decode(raw);
  } catch (err) {
    throw new ParameterError("parameters_bytes is not valid msgpack", { cause: err });
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new ParameterError("parameters must be a map with args and kwargs");
  }
  const map = value as { args?: unknown; kwargs?: unknown };
  const args = map.args ?? [];
  const kwargs = map.kwargs ?? {};
  if (!Array.isArray(args)) throw new ParameterError("parameters.args must be an array");
  if (!kwargs || typeof kwargs !== "object" || Array.isArray(kwargs)) {
    throw new ParameterError("parameters.kwargs must be a map");
  }
  return { args, kwargs: kwargs as Record<string, unknown> };
}

/** Old producers send JSON in the deprecated `parameters` field; accept it when bytes are empty. */
export function decodeLegacyParameters(json: string): TaskParameters {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new ParameterError("parameters is not valid JSON", { cause: err });
  }
  const map = (value ?? {}) as { args?: unknown; kwargs?: unknown };
  return {
    args: Array.isArray(map.args) ? map.args : [],
    kwargs: map.kwargs && typeof map.kwargs === "object" ? (map.kwargs as Record<string, unknown>) : {},
  };
}
