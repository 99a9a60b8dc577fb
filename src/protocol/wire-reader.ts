// Reading the protobuf wire format by hand, for the hot paths where a full
// @bufbuild decode costs more than the work it serves: RPC requests
// (protocol/messages.ts) and the activation's hot paths (activation/wire.ts:
// the ingest scan, the worker's decode, the namespace lookup of demotion).
// One reader, one error type; each caller decides what a malformed message
// means for it (INTERNAL, fall back to the full decoder, null).
// Checked against @bufbuild/protobuf by those callers' tests.

/** Bytes that are not a well-formed protobuf message (truncation, bad wire type, bad UTF-8...). */
export class MalformedMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MalformedMessage";
  }
}

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

// As @bufbuild/protobuf decodes proto3 strings: invalid UTF-8 is an error and
// a leading U+FEFF is text, not a byte-order mark to drop.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A cursor over one message (or an embedded message) in `buf[pos, end)`. */
export class WireReader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    pos = 0,
    readonly end = buf.byteLength,
  ) {
    this.pos = pos;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** The next field's [number, wire type]. */
  tag(): [field: number, wireType: number] {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new MalformedMessage("field number 0");
    return [field, tag & 7];
  }

  /** Throws unless `field` arrived with the wire type its declaration implies. */
  expect(field: number, got: number, want: number): void {
    if (got !== want) throw new MalformedMessage(`field ${field} has wire type ${got}, expected ${want}`);
  }

  /**
   * A varint as a number: exact up to 2^53, approximate beyond (negative int32
   * enums are 10-byte varints). Callers that need 64 bits use varint64(), and
   * callers that need exactness check Number.isSafeInteger.
   */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new MalformedMessage("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new MalformedMessage("varint too long");
  }

  varint64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new MalformedMessage("truncated varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new MalformedMessage("varint too long");
  }

  /** [start, end) of a length-delimited field's payload, which the cursor then skips. */
  span(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (start + len > this.end) throw new MalformedMessage("truncated length-delimited field");
    this.pos = start + len;
    return [start, start + len];
  }

  /** A length-delimited payload as a view into the buffer (no copy). */
  bytes(): Uint8Array {
    const [s, e] = this.span();
    return this.buf.subarray(s, e);
  }

  string(): string {
    const [s, e] = this.span();
    try {
      return utf8.decode(this.buf.subarray(s, e));
    } catch {
      throw new MalformedMessage("invalid UTF-8 in string field");
    }
  }

  /** A string field nobody reads, only validated (ASCII needs no decoding). */
  checkString(): void {
    const [s, e] = this.span();
    for (let i = s; i < e; i++) {
      if (this.buf[i]! > 0x7f) {
        try {
          utf8.decode(this.buf.subarray(s, e));
        } catch {
          throw new MalformedMessage("invalid UTF-8 in string field");
        }
        return;
      }
    }
  }

  /** A reader over an embedded message, which this cursor then skips. */
  sub(): WireReader {
    const [s, e] = this.span();
    return new WireReader(this.buf, s, e);
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        return this.advance(8);
      case WIRE_LEN:
        this.span();
        return;
      case WIRE_FIXED32:
        return this.advance(4);
      default:
        // Groups (3, 4) appear in none of our messages; 6 and 7 do not exist.
        throw new MalformedMessage(`unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new MalformedMessage("truncated fixed-width field");
    this.pos += n;
  }
}
