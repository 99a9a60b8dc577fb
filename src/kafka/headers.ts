// Header-mapped dispatch (docs/spec/broker.md "Raw topics", the pattern of
// Sentry's post-process forwarder): a raw message's task kwargs are decoded from its Kafka
// headers with typed decoders, keyed by a `version` header and an `operation`
// header; when a header is missing or malformed the payload (JSON or msgpack)
// is decoded instead. Pure: no I/O, so every path is unit tested.
import { decode as msgpackDecode } from "@msgpack/msgpack";

export type HeaderDecoder = "string" | "optional_string" | "int" | "optional_int" | "bool";

/** operation -> kwarg name (= header name) -> decoder. */
export type HeaderKwargsSpec = Record<string, Record<string, HeaderDecoder>>;

/** Header values as Kafka delivers them: bytes, or absent / null. */
export type RawHeaders = Record<string, Uint8Array | null | undefined>;

export type KwargValue = string | number | bigint | boolean | null;

/** Why headers could not be used; the message names the header. */
export class HeaderDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HeaderDecodeError";
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function text(name: string, value: Uint8Array): string {
  try {
    return utf8.decode(value);
  } catch {
    throw new HeaderDecodeError(`header ${name} is not UTF-8`);
  }
}

/** Python's int(): optional sign, digits, surrounding whitespace allowed. */
function integer(name: string, value: Uint8Array): number | bigint {
  const s = text(name, value).trim();
  if (!/^[+-]?\d+$/.test(s)) throw new HeaderDecodeError(`header ${name}=${JSON.stringify(s)} is not an integer`);
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : BigInt(s);
}

/** The Python producer writes None for a missing optional value. */
function isNone(value: Uint8Array | null | undefined): boolean {
  return value === null || value === undefined || (value.byteLength === 4 && text("", value) === "None");
}

/** One header through one decoder; throws HeaderDecodeError when required and missing or malformed. */
export function decodeHeader(name: string, value: Uint8Array | null | undefined, decoder: HeaderDecoder): KwargValue {
  switch (decoder) {
    case "optional_string":
      return isNone(value) ? null : text(name, value!);
    case "optional_int":
      return isNone(value) ? null : integer(name, value!);
    default:
      break;
  }
  if (value === null || value === undefined) throw new HeaderDecodeError(`header ${name} is missing`);
  switch (decoder) {
    case "string":
      return text(name, value);
    case "int":
      return integer(name, value);
    case "bool": {
      // decode_bool is bool(int(value)) upstream; also accept the Python repr.
      const s = text(name, value).trim();
      if (s === "True" || s === "true") return true;
      if (s === "False" || s === "false") return false;
      const n = integer(name, value);
      return n !== 0 && n !== 0n;
    }
  }
}

/**
 * Task kwargs from headers: `version` must equal `expectedVersion`,
 * `operation` must be one of the spec's operations, then each declared kwarg
 * is decoded from the header of the same name. The operation itself is
 * passed as kwarg `operation` too, as the forwarder does.
 */
export function kwargsFromHeaders(
  headers: RawHeaders,
  spec: HeaderKwargsSpec,
  expectedVersion: number,
): Record<string, KwargValue> {
  const version = decodeHeader("version", headers.version, "int");
  if (Number(version) !== expectedVersion) {
    throw new HeaderDecodeError(`header version=${String(version)} is not the supported version ${expectedVersion}`);
  }
  const operation = decodeHeader("operation", headers.operation, "string") as string;
  const fields = spec[operation];
  if (!fields) throw new HeaderDecodeError(`header operation=${JSON.stringify(operation)} is not a known operation`);
  const kwargs: Record<string, KwargValue> = { operation };
  for (const [name, decoder] of Object.entries(fields)) kwargs[name] = decodeHeader(name, headers[name], decoder);
  return kwargs;
}

/**
 * Task kwargs from the payload: a JSON or msgpack map (`auto` tries JSON
 * first, since a JSON object can never start like a msgpack map byte 0x80-0x8f / 0xde-0xdf).
 * A map holding exactly `kwargs` (and optionally `args`) is unwrapped.
 * Throws HeaderDecodeError when neither decodes to a map.
 */
export function kwargsFromPayload(
  payload: Uint8Array | null,
  format: "auto" | "json" | "msgpack",
): Record<string, unknown> {
  if (!payload || payload.byteLength === 0) throw new HeaderDecodeError("payload is empty");
  const attempts: Array<() => unknown> = [];
  if (format !== "msgpack") attempts.push(() => JSON.parse(text("payload", payload)));
  if (format !== "json") attempts.push(() => msgpackDecode(payload, { useBigInt64: true }));
  for (const attempt of attempts) {
    let value: unknown;
    try {
      value = attempt();
    } catch {
      continue;
    }
    if (value && typeof value === "object" && !Array.isArray(value) && !(value instanceof Uint8Array)) {
      const map = value as Record<string, unknown>;
      const keys = Object.keys(map);
      const wrapped = keys.includes("kwargs") && keys.every((k) => k === "kwargs" || k === "args");
      if (wrapped && map.kwargs && typeof map.kwargs === "object") return map.kwargs as Record<string, unknown>;
      return map;
    }
  }
  throw new HeaderDecodeError(`payload is not a ${format === "auto" ? "JSON or msgpack" : format} map`);
}

export type DispatchPath = "headers" | "payload";

/**
 * The forwarder's `_get_task_kwargs`: headers first, the payload when a header
 * is missing or malformed. Returns the kwargs, the path taken and, when the
 * headers failed, why. Throws HeaderDecodeError when neither path decodes.
 */
export function taskKwargs(
  headers: RawHeaders,
  payload: Uint8Array | null,
  opts: { spec: HeaderKwargsSpec; version: number; payloadFormat: "auto" | "json" | "msgpack" },
): { kwargs: Record<string, unknown>; path: DispatchPath; headerProblem?: string } {
  try {
    return { kwargs: kwargsFromHeaders(headers, opts.spec, opts.version), path: "headers" };
  } catch (err) {
    if (!(err instanceof HeaderDecodeError)) throw err;
    try {
      return { kwargs: kwargsFromPayload(payload, opts.payloadFormat), path: "payload", headerProblem: err.message };
    } catch (payloadErr) {
      const why = payloadErr instanceof Error ? payloadErr.message : String(payloadErr);
      throw new HeaderDecodeError(`${err.message}; ${why}`);
    }
  }
}
