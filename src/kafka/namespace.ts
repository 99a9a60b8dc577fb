// The namespace of a TaskActivation read straight from its protobuf bytes,
// without decoding the message: namespace demotion (runtime config) asks about
// every consumed activation, and a full decode per message would cost the
// ingest path more than the lookup it serves. Pure.

import { MalformedMessage, WIRE_LEN, WireReader } from "../protocol/wire-reader.ts";

/** TaskActivation.namespace is field 2, a string (proto/sentry_protos/taskbroker/v1/taskbroker.proto). */
const NAMESPACE_FIELD = 2;

/**
 * The activation's namespace; "" when absent (proto3 default); null when the
 * bytes are not a well-formed message (the caller lets ingest reject it).
 * A repeated field is read last-wins, as protobuf parsers do.
 */
export function activationNamespace(bytes: Uint8Array): string | null {
  const r = new WireReader(bytes);
  let namespace = "";
  try {
    while (!r.done()) {
      const [field, wt] = r.tag();
      if (field === NAMESPACE_FIELD) {
        r.expect(field, wt, WIRE_LEN);
        namespace = r.string();
      } else r.skip(wt);
    }
  } catch (err) {
    if (err instanceof MalformedMessage) return null;
    throw err;
  }
  return namespace;
}
