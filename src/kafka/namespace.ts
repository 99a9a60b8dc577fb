// The namespace of a TaskActivation read straight from its protobuf bytes,
// without decoding the message: namespace demotion (runtime config) asks about
// every consumed activation, and a full decode per message would cost the
// ingest path more than the lookup it serves. Pure.

/** TaskActivation.namespace is field 2, a string (proto/sentry_protos/taskbroker/v1/taskbroker.proto). */
const NAMESPACE_FIELD = 2;
const LEN = 2;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The activation's namespace; "" when absent (proto3 default); null when the
 * bytes are not a well-formed message (the caller lets ingest reject it).
 * A repeated field is read last-wins, as protobuf parsers do.
 */
export function activationNamespace(bytes: Uint8Array): string | null {
  let pos = 0;
  let found: Uint8Array | null = null;
  const varint = (): number | null => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= bytes.length) return null;
      const b = bytes[pos++]!;
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    return null;
  };
  while (pos < bytes.length) {
    const key = varint();
    if (key === null) return null;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0) return null;
    switch (wire) {
      case 0:
        if (varint() === null) return null;
        break;
      case 1:
        pos += 8;
        break;
      case LEN: {
        const len = varint();
        if (len === null || pos + len > bytes.length) return null;
        if (field === NAMESPACE_FIELD) found = bytes.subarray(pos, pos + len);
        pos += len;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        // Groups (3, 4) are not used by this message; anything else is malformed.
        return null;
    }
    if (pos > bytes.length) return null;
  }
  if (found === null) return "";
  try {
    return utf8.decode(found);
  } catch {
    return null;
  }
}
