// A minimal protobuf wire-format reader for the ingest hot path: it pulls the
// handful of TaskActivation fields the store indexes (ids, names, timestamps,
// retry policy) straight from the bytes, ~10x cheaper than a full decode that
// also builds headers maps and parameter buffers. Anything unusual (groups,
// unexpected wire types, 64-bit values past 2^53, truncation) returns null
// and the caller falls back to the full @bufbuild decode, which has the last
// word on what is valid. Field numbers: wire-contract.md.

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
}

// As @bufbuild/protobuf decodes proto3 strings: invalid UTF-8 is an error and
// a leading U+FEFF is text, not a BOM.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true, fatal: true });

/** Thrown internally when the reader sees something it leaves to the full decoder. */
const BAIL = Symbol("bail");

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw BAIL;
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw BAIL; // > 56 bits: let the full decoder handle (and bigint) it
  }
  /** [start, end) of a length-delimited field's payload. */
  span(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (start + len > this.end) throw BAIL;
    this.pos = start + len;
    return [start, start + len];
  }
  string(): string {
    const [s, e] = this.span();
    try {
      return utf8.decode(this.buf.subarray(s, e));
    } catch {
      throw BAIL;
    }
  }
  /** A string field we do not need: only checked to be valid UTF-8 (ASCII needs no decoding). */
  checkString(): void {
    const [s, e] = this.span();
    for (let i = s; i < e; i++) {
      if (this.buf[i]! > 0x7f) {
        try {
          utf8.decode(this.buf.subarray(s, e));
        } catch {
          throw BAIL;
        }
        return;
      }
    }
  }
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 2) this.span();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 5) this.pos += 4;
    else throw BAIL;
    if (this.pos > this.end) throw BAIL;
  }
}

function expect(wireType: number, want: number): void {
  if (wireType !== want) throw BAIL;
}

function readTimestamp(buf: Uint8Array, [start, end]: [number, number], prev: { seconds: number; nanos: number }) {
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 1) (expect(wt, 0), (prev.seconds = r.varint()));
    else if (field === 2) (expect(wt, 0), (prev.nanos = r.varint()));
    else r.skip(wt);
  }
}

/** A headers map entry (key 1, value 2, both strings) is only checked, not kept. */
function checkHeaderEntry(buf: Uint8Array, [start, end]: [number, number]) {
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw BAIL;
    if (field === 1 || field === 2) (expect(tag & 7, 2), r.checkString());
    else r.skip(tag & 7);
  }
}

function readRetryState(buf: Uint8Array, [start, end]: [number, number], out: ActivationFields) {
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 3) (expect(wt, 0), (out.onAttemptsExceeded = r.varint()));
    else if (field === 4) (expect(wt, 0), (out.atMostOnce = r.varint() !== 0));
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
  };
  const ts = { seconds: 0, nanos: 0 };
  const r = new Reader(buf, 0, buf.byteLength);
  try {
    while (r.pos < r.end) {
      const tag = r.varint();
      const field = Math.floor(tag / 8);
      const wt = tag & 7;
      switch (field) {
        case 1: expect(wt, 2); out.id = r.string(); break;
        case 2: expect(wt, 2); out.namespace = r.string(); break;
        case 3: expect(wt, 2); out.taskname = r.string(); break;
        case 6: expect(wt, 2); readTimestamp(buf, r.span(), ts); break;
        case 7: expect(wt, 2); readRetryState(buf, r.span(), out); break;
        case 8: expect(wt, 0); out.processingDeadlineDuration = r.varint(); break;
        case 9: expect(wt, 0); out.expires = r.varint(); break;
        case 11: expect(wt, 0); out.delay = r.varint(); break;
        case 12: expect(wt, 2); out.application = r.string(); break;
        case 4: expect(wt, 2); r.checkString(); break;
        case 5: expect(wt, 2); checkHeaderEntry(buf, r.span()); break;
        // 13 parameters_bytes and unknown fields: skipped.
        default: if (field === 0) return null; r.skip(wt);
      }
    }
  } catch (err) {
    if (err === BAIL) return null;
    throw err;
  }
  if (ts.seconds !== 0 || ts.nanos !== 0) out.receivedAtMs = ts.seconds * 1000 + Math.floor(ts.nanos / 1_000_000);
  return out;
}

/**
 * The raw bytes of each activation in a taskplatform.v1.ProduceRequest
 * (field 1, repeated TaskActivation), without decoding them: ingest then
 * stores exactly the bytes the producer sent. Null when malformed.
 */
export function splitProduceRequest(buf: Uint8Array): Uint8Array[] | null {
  const out: Uint8Array[] = [];
  const r = new Reader(buf, 0, buf.byteLength);
  try {
    while (r.pos < r.end) {
      const tag = r.varint();
      const field = Math.floor(tag / 8);
      const wt = tag & 7;
      if (field === 0) return null;
      if (field === 1) {
        expect(wt, 2);
        const [s, e] = r.span();
        out.push(buf.subarray(s, e));
      } else r.skip(wt);
    }
  } catch (err) {
    if (err === BAIL) return null;
    throw err;
  }
  return out;
}
