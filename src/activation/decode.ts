// Decoding TaskActivation bytes in full with the generated code, and the error
// for bytes that are not an acceptable activation. The hot paths read the
// bytes by hand (wire.ts); this decode is their fallback and the start of
// every rewrite (rewrite.ts).
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema, type TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

/** An activation ingest refuses; `index` is its position in the offered batch when known. */
export class InvalidActivation extends Error {
  index: number | undefined;
  constructor(message: string, index?: number) {
    super(message);
    this.name = "InvalidActivation";
    this.index = index;
  }
}

/** The full decode (@bufbuild/protobuf), which has the last word on what is valid. */
export function decodeActivation(bytes: Uint8Array): TaskActivation {
  if (bytes.byteLength === 0) throw new InvalidActivation("empty activation payload");
  try {
    return fromBinary(TaskActivationSchema, bytes);
  } catch (err) {
    throw new InvalidActivation(`undecodable activation: ${err instanceof Error ? err.message : String(err)}`);
  }
}
