// Reading a TaskActivation straight from its protobuf bytes, for the three hot
// paths where a full @bufbuild decode costs more than the work it serves:
// ingest's scan of the fields the store indexes (scanActivation), the worker's
// decode of what it runs (decodeWireActivation) and the namespace lookup of
// demotion on the Kafka consume path (activationNamespace). One reader
// (protocol/wire-reader.ts); each function decides what malformed bytes mean
// for its caller. Field numbers: docs/spec/wire-contract.md. Checked against
// @bufbuild/protobuf in test/ingest.test.ts, test/worker-unit.test.ts and
// test/kafka-operating.test.ts.

import { MalformedMessage, WIRE_LEN, WIRE_VARINT, WireReader } from "../protocol/wire-reader.ts";
import { IDEMPOTENCY_HEADER } from "./headers.ts";

// ---- Ingest: the indexed fields ----
// The ingest hot path's scan of a TaskActivation: it pulls the
// handful of TaskActivation fields the store indexes (ids, names, timestamps,
// retry policy) straight from the bytes, ~10x cheaper than a full decode that
// also builds headers maps and parameter buffers. Anything unusual (groups,
// unexpected wire types, 64-bit values past 2^53, truncation) returns null
// and the caller falls back to the full @bufbuild decode, which has the last
// word on what is valid. Field numbers: docs/spec/wire-contract.md.

/** The TaskActivation fields ingest needs. Absent optional fields are undefined. */
export interface ActivationFields {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  /** Unix ms from received_at (ms precision), or null when absent/zero. */
  receivedAtMs: number | null;
  processingDeadlineDuration: number;
  expires: number | undefined;
  delay: number | undefined;
  atMostOnce: boolean;
  onAttemptsExceeded: number;
  /** The idempotency key header's value; undefined when absent. */
  idempotencyKey: string | undefined;
}

const KEY_NAME = new TextEncoder().encode(IDEMPOTENCY_HEADER);

/** Whether buf[s, e) holds exactly the key header's name (length first: most headers differ there). */
function isKeyName(buf: Uint8Array, s: number, e: number): boolean {
  if (e - s !== KEY_NAME.byteLength) return false;
  for (let i = 0; i < KEY_NAME.byteLength; i++) if (buf[s + i] !== KEY_NAME[i]) return false;
  return true;
}

/** A number field ingest relies on must be exact; beyond 2^53 the full decoder decides. */
function exact(n: number): number {
  if (!Number.isSafeInteger(n)) throw new MalformedMessage("integer beyond 2^53");
  return n;
}

function readTimestamp(r: WireReader, prev: { seconds: number; nanos: number }) {
  while (!r.done()) {
    const [field, wt] = r.tag();
    if (field === 1) r.expect(field, wt, WIRE_VARINT), (prev.seconds = exact(r.varint()));
    else if (field === 2) r.expect(field, wt, WIRE_VARINT), (prev.nanos = exact(r.varint()));
    else r.skip(wt);
  }
}

/**
 * A headers map entry (key 1, value 2, both strings) is only checked, not
 * kept, except the idempotency key's value. An entry with its value before
 * its key (legal, never written by protobuf encoders) goes to the full decoder.
 */
function checkHeaderEntry(r: WireReader, out: ActivationFields) {
  let isKey = false;
  let sawValue = false;
  while (!r.done()) {
    const [field, wt] = r.tag();
    if (field === 1) {
      r.expect(field, wt, WIRE_LEN);
      if (sawValue) throw new MalformedMessage("map entry value before key");
      const at = r.pos;
      const [s, e] = r.span();
      isKey = isKeyName(r.buf, s, e);
      if (!isKey) {
        r.pos = at;
        r.checkString();
      }
    } else if (field === 2) {
      r.expect(field, wt, WIRE_LEN);
      sawValue = true;
      if (isKey) out.idempotencyKey = r.string();
      else r.checkString();
    } else r.skip(wt);
  }
  // The key without a value: the map holds "" for it (proto3 default).
  if (isKey && !sawValue) out.idempotencyKey = "";
}

function readRetryState(r: WireReader, out: ActivationFields) {
  while (!r.done()) {
    const [field, wt] = r.tag();
    if (field === 3) r.expect(field, wt, WIRE_VARINT), (out.onAttemptsExceeded = exact(r.varint()));
    else if (field === 4) r.expect(field, wt, WIRE_VARINT), (out.atMostOnce = r.varint() !== 0);
    else r.skip(wt);
  }
}

/** Scans a TaskActivation; null when the full decoder should decide. */
export function scanActivation(buf: Uint8Array): ActivationFields | null {
  const out: ActivationFields = {
    id: "",
    namespace: "",
    taskname: "",
    application: "",
    receivedAtMs: null,
    processingDeadlineDuration: 0,
    expires: undefined,
    delay: undefined,
    atMostOnce: false,
    onAttemptsExceeded: 0,
    idempotencyKey: undefined,
  };
  const ts = { seconds: 0, nanos: 0 };
  const r = new WireReader(buf);
  try {
    while (!r.done()) {
      const [field, wt] = r.tag();
      // biome-ignore format: one line per field number reads as the field table
      switch (field) {
        case 1: r.expect(field, wt, WIRE_LEN); out.id = r.string(); break;
        case 2: r.expect(field, wt, WIRE_LEN); out.namespace = r.string(); break;
        case 3: r.expect(field, wt, WIRE_LEN); out.taskname = r.string(); break;
        case 4: r.expect(field, wt, WIRE_LEN); r.checkString(); break;
        case 5: r.expect(field, wt, WIRE_LEN); checkHeaderEntry(r.sub(), out); break;
        case 6: r.expect(field, wt, WIRE_LEN); readTimestamp(r.sub(), ts); break;
        case 7: r.expect(field, wt, WIRE_LEN); readRetryState(r.sub(), out); break;
        case 8: r.expect(field, wt, WIRE_VARINT); out.processingDeadlineDuration = exact(r.varint()); break;
        case 9: r.expect(field, wt, WIRE_VARINT); out.expires = exact(r.varint()); break;
        case 11: r.expect(field, wt, WIRE_VARINT); out.delay = exact(r.varint()); break;
        case 12: r.expect(field, wt, WIRE_LEN); out.application = r.string(); break;
        // 13 parameters_bytes and unknown fields: skipped.
        default: r.skip(wt);
      }
    }
  } catch (err) {
    if (err instanceof MalformedMessage) return null;
    throw err;
  }
  if (ts.seconds !== 0 || ts.nanos !== 0) out.receivedAtMs = ts.seconds * 1000 + Math.floor(ts.nanos / 1_000_000);
  return out;
}

// ---- Worker: what a run needs ----
// A fast decoder for the TaskActivation fields the worker reads, straight
// from the protobuf bytes the broker sends. The generic @bufbuild codec costs
// more per task than the rest of the worker's bookkeeping together; field
// numbers per docs/spec/wire-contract.md. Malformed bytes throw MalformedMessage.
// Checked against @bufbuild/protobuf in test/worker-unit.test.ts.

/** The activation as the worker sees it (plain data; ms and numbers instead of bigint/Timestamp). */
export interface WireActivation {
  id: string;
  namespace: string;
  taskname: string;
  parameters: string;
  headers: Record<string, string>;
  /** received_at in epoch ms, or undefined when absent. */
  receivedAtMs: number | undefined;
  attempts: number;
  maxAttempts: number;
  onAttemptsExceeded: number;
  atMostOnce: boolean;
  delayOnRetry: number | undefined;
  processingDeadlineS: number;
  expiresS: number | undefined;
  delayS: number | undefined;
  application: string | undefined;
  parametersBytes: Uint8Array;
}

/** One headers map entry: key = 1, value = 2. */
function readHeader(m: WireReader, headers: Record<string, string>): void {
  let k = "";
  let v = "";
  while (!m.done()) {
    const [f, wt] = m.tag();
    if (f === 1) m.expect(f, wt, WIRE_LEN), (k = m.string());
    else if (f === 2) m.expect(f, wt, WIRE_LEN), (v = m.string());
    else m.skip(wt);
  }
  headers[k] = v;
}

/** google.protobuf.Timestamp { seconds = 1; nanos = 2 } as epoch ms. */
function readTimestampMs(m: WireReader): number {
  let seconds = 0;
  let nanos = 0;
  while (!m.done()) {
    const [f, wt] = m.tag();
    if (f === 1) m.expect(f, wt, WIRE_VARINT), (seconds = m.varint());
    else if (f === 2) m.expect(f, wt, WIRE_VARINT), (nanos = m.varint());
    else m.skip(wt);
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

/** RetryState (docs/spec/wire-contract.md): attempts 1, max_attempts 2, on_attempts_exceeded 3, at_most_once 4, delay_on_retry 5. */
function readWorkerRetryState(m: WireReader, a: WireActivation): void {
  while (!m.done()) {
    const [f, wt] = m.tag();
    if (f >= 1 && f <= 5) m.expect(f, wt, WIRE_VARINT);
    // biome-ignore format: one line per field number reads as the field table
    switch (f) {
      case 1: a.attempts = m.varint(); break;
      case 2: a.maxAttempts = m.varint(); break;
      case 3: a.onAttemptsExceeded = m.varint(); break;
      case 4: a.atMostOnce = m.varint() !== 0; break;
      case 5: a.delayOnRetry = m.varint(); break;
      default: m.skip(wt);
    }
  }
}

/** Decodes what the worker reads; malformed bytes throw MalformedMessage. */
export function decodeWireActivation(buf: Uint8Array): WireActivation {
  const a: WireActivation = {
    id: "",
    namespace: "",
    taskname: "",
    parameters: "",
    headers: {},
    receivedAtMs: undefined,
    attempts: 0,
    maxAttempts: 0,
    onAttemptsExceeded: 0,
    atMostOnce: false,
    delayOnRetry: undefined,
    processingDeadlineS: 0,
    expiresS: undefined,
    delayS: undefined,
    application: undefined,
    parametersBytes: new Uint8Array(0),
  };
  const r = new WireReader(buf);
  while (!r.done()) {
    const [field, wt] = r.tag();
    // biome-ignore format: one line per field number reads as the field table
    switch (field) {
      case 1: r.expect(field, wt, WIRE_LEN); a.id = r.string(); break;
      case 2: r.expect(field, wt, WIRE_LEN); a.namespace = r.string(); break;
      case 3: r.expect(field, wt, WIRE_LEN); a.taskname = r.string(); break;
      case 4: r.expect(field, wt, WIRE_LEN); a.parameters = r.string(); break;
      case 5: r.expect(field, wt, WIRE_LEN); readHeader(r.sub(), a.headers); break;
      case 6: r.expect(field, wt, WIRE_LEN); a.receivedAtMs = readTimestampMs(r.sub()); break;
      case 7: r.expect(field, wt, WIRE_LEN); readWorkerRetryState(r.sub(), a); break;
      case 8: r.expect(field, wt, WIRE_VARINT); a.processingDeadlineS = r.varint(); break;
      case 9: r.expect(field, wt, WIRE_VARINT); a.expiresS = r.varint(); break;
      case 11: r.expect(field, wt, WIRE_VARINT); a.delayS = r.varint(); break;
      case 12: r.expect(field, wt, WIRE_LEN); a.application = r.string(); break;
      case 13: r.expect(field, wt, WIRE_LEN); a.parametersBytes = r.bytes(); break;
      default: r.skip(wt);
    }
  }
  return a;
}

// ---- Kafka: the namespace alone ----
// The namespace of a TaskActivation read straight from its protobuf bytes,
// without decoding the message: namespace demotion (runtime config) asks about
// every consumed activation, and a full decode per message would cost the
// ingest path more than the lookup it serves. Pure.

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
