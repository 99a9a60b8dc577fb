// Decodes a task's arguments out of a TaskActivation, the way workers do:
// `parameters_bytes` is msgpack `{"args": [...], "kwargs": {...}}`, zstd-compressed
// when the header `compression-type` is `zstd`; old producers put JSON in
// `parameters` instead. Used by the kill switch (matching on argument values)
// and by the admin views (showing decoded parameters). See wire-contract.md.
import { decode } from "@msgpack/msgpack";
import type { TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

export interface TaskParameters {
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** The parameters could not be decoded; callers fail open (keep the task, show the raw size). */
export class UndecodableParameters extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UndecodableParameters";
  }
}

function shape(value: unknown, source: string): TaskParameters {
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new UndecodableParameters(`${source} is not a map with args/kwargs`);
  }
  const map = value as Record<string, unknown>;
  const args = map.args ?? [];
  const kwargs = map.kwargs ?? {};
  if (!Array.isArray(args)) throw new UndecodableParameters(`${source}: args is not an array`);
  if (!kwargs || typeof kwargs !== "object" || Array.isArray(kwargs)) {
    throw new UndecodableParameters(`${source}: kwargs is not a map`);
  }
  return { args, kwargs: kwargs as Record<string, unknown> };
}

/** Throws UndecodableParameters when neither encoding yields `{args, kwargs}`. */
export function decodeParameters(activation: Pick<TaskActivation, "headers" | "parameters" | "parametersBytes">): TaskParameters {
  if (activation.parametersBytes.byteLength > 0) {
    let bytes = activation.parametersBytes;
    if (activation.headers["compression-type"] === "zstd") {
      try {
        bytes = Bun.zstdDecompressSync(bytes);
      } catch (err) {
        throw new UndecodableParameters(`parameters_bytes: zstd: ${(err as Error).message}`);
      }
    }
    let value: unknown;
    try {
      value = decode(bytes);
    } catch (err) {
      throw new UndecodableParameters(`parameters_bytes: msgpack: ${(err as Error).message}`);
    }
    return shape(value, "parameters_bytes");
  }
  if (activation.parameters !== "") {
    let value: unknown;
    try {
      value = JSON.parse(activation.parameters);
    } catch (err) {
      throw new UndecodableParameters(`parameters: JSON: ${(err as Error).message}`);
    }
    return shape(value, "parameters");
  }
  return { args: [], kwargs: {} };
}

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
