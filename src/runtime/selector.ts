// Argument values for the reference broker's kill switch selectors
// (`drop_task_killswitch` entries with `select_arg` / `select_kwarg`), read
// exactly the way that broker reads them, so a selector drops the same
// activations here as there:
//   - only `parameters_bytes` is read (msgpack `{"args": [...], "kwargs": {...}}`,
//     zstd when the header `compression-type` is `zstd`, at most 64 MiB once
//     decompressed); the deprecated JSON `parameters` never matches;
//   - a value matches only a value of the same kind: the integer 123 is not
//     the float 123.0 and not the string "123";
//   - any msgpack bin or ext value in the parameters makes them unreadable
//     (the reference broker cannot hold them in its value type), and an
//     unreadable activation is kept (fail open).
// Pure; used by rules.ts.
import { Decoder } from "@msgpack/msgpack";
import { zstdDecompressSync } from "node:zlib";
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { COMPRESSION_HEADER } from "../activation/parameters.ts";

/** The reference broker's bound on decompressed parameters. */
export const MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024;

/** A msgpack float, kept apart from integers (which decode to number or bigint). */
export class MsgpackFloat {
  constructor(readonly value: number) {}
}

/**
 * The library's decoder with floats wrapped, so an integer and a float of the
 * same value stay distinguishable: its own float32/float64 readers (private
 * to TypeScript, plain methods at run time) are replaced on this one instance.
 * test/runtime-rules.test.ts pins the behaviour, so a library change that
 * renames them fails there.
 */
type FloatReaders = { readF32(this: Decoder): number; readF64(this: Decoder): number };
const baseReaders = Decoder.prototype as unknown as FloatReaders;
const decoder = new Decoder({ useBigInt64: true });
Object.assign(decoder, {
  readF32(this: Decoder) {
    return new MsgpackFloat(baseReaders.readF32.call(this));
  },
  readF64(this: Decoder) {
    return new MsgpackFloat(baseReaders.readF64.call(this));
  },
});

export interface SelectorParameters {
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** The parameters cannot be read the reference broker's way; the activation is kept. */
export class UnreadableSelectorParameters extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnreadableSelectorParameters";
  }
}

function holdsBinaryOrExt(value: unknown): boolean {
  if (value instanceof Uint8Array || value instanceof Date) return true;
  if (value === null || typeof value !== "object" || value instanceof MsgpackFloat) return false;
  if (Array.isArray(value)) return value.some(holdsBinaryOrExt);
  // ExtData (unknown ext types) is a plain class instance with `type` and `data`.
  if (!(Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) return true;
  return Object.values(value as Record<string, unknown>).some(holdsBinaryOrExt);
}

/** Throws UnreadableSelectorParameters when the reference broker would fail to read them. */
export function selectorParameters(
  activation: Pick<TaskActivation, "headers" | "parametersBytes">,
): SelectorParameters {
  let bytes = activation.parametersBytes;
  if (bytes.byteLength === 0) throw new UnreadableSelectorParameters("parameters_bytes is empty");
  // Decompressed here rather than by the shared codec (activation/zstd.ts):
  // node:zlib can bound the output, as the reference broker does.
  if (activation.headers[COMPRESSION_HEADER] === "zstd") {
    try {
      bytes = zstdDecompressSync(bytes, { maxOutputLength: MAX_DECOMPRESSED_BYTES });
    } catch (err) {
      throw new UnreadableSelectorParameters(`zstd: ${(err as Error).message}`);
    }
  }
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (err) {
    throw new UnreadableSelectorParameters(`msgpack: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof MsgpackFloat) {
    throw new UnreadableSelectorParameters("not a map with args/kwargs");
  }
  const map = value as Record<string, unknown>;
  const args = map.args ?? [];
  const kwargs = map.kwargs ?? {};
  if (!Array.isArray(args)) throw new UnreadableSelectorParameters("args is not an array");
  if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs) || kwargs instanceof MsgpackFloat) {
    throw new UnreadableSelectorParameters("kwargs is not a map");
  }
  if (holdsBinaryOrExt(args) || holdsBinaryOrExt(kwargs)) {
    throw new UnreadableSelectorParameters("bin or ext values in the parameters");
  }
  return { args, kwargs: kwargs as Record<string, unknown> };
}

/**
 * A configured value (parsed from YAML with integers as bigint, floats as
 * number) against an argument value (from selectorParameters). Same kind and
 * same value; sequences element by element, mappings key by key.
 */
export function sameValue(wanted: unknown, actual: unknown): boolean {
  if (typeof wanted === "bigint") {
    if (typeof actual === "bigint") return actual === wanted;
    return typeof actual === "number" && Number.isInteger(actual) && BigInt(actual) === wanted;
  }
  if (typeof wanted === "number") {
    return (
      actual instanceof MsgpackFloat &&
      (actual.value === wanted || (Number.isNaN(wanted) && Number.isNaN(actual.value)))
    );
  }
  if (wanted === null || typeof wanted !== "object") return actual === wanted;
  if (Array.isArray(wanted)) {
    return Array.isArray(actual) && actual.length === wanted.length && wanted.every((w, i) => sameValue(w, actual[i]));
  }
  if (actual === null || typeof actual !== "object" || Array.isArray(actual) || actual instanceof MsgpackFloat)
    return false;
  const w = Object.entries(wanted as Record<string, unknown>);
  const a = actual as Record<string, unknown>;
  return w.length === Object.keys(a).length && w.every(([k, v]) => Object.hasOwn(a, k) && sameValue(v, a[k]));
}
