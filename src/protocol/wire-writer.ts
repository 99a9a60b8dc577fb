// Writing the protobuf wire format by hand: the varint helpers and a small
// growable writer, the counterpart of wire-reader.ts. Used by the RPC message
// encoders (messages.ts, delivery-messages.ts) and the gRPC framing of the fast path (connect/frame.ts).

/** Bytes a varint of `n` (a non-negative safe integer) takes. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes `n` as a varint at `out[pos]`; returns the position after it. */
export function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[pos++] = n;
  return pos;
}

/** Bytes that `items` take as a repeated length-delimited field 1 (tag 0x0a, length, bytes each). */
export function repeatedField1Size(items: readonly Uint8Array[]): number {
  let size = 0;
  for (const a of items) size += 1 + varintSize(a.byteLength) + a.byteLength;
  return size;
}

/**
 * Writes `items` as a repeated length-delimited field 1 at `out[pos]` (sized by
 * repeatedField1Size); returns the position after them. The bytes are copied unchanged:
 * how stored activations go into a message without being decoded.
 */
export function writeRepeatedField1(out: Uint8Array, pos: number, items: readonly Uint8Array[]): number {
  for (const a of items) {
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, a.byteLength);
    out.set(a, pos);
    pos += a.byteLength;
  }
  return pos;
}

/** Growable protobuf writer for the few small messages the client sends. */
export class Writer {
  private buf = new Uint8Array(64);
  pos = 0;
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.byteLength) return;
    const next = new Uint8Array(Math.max(this.buf.byteLength * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }
  varint(n: number): this {
    this.ensure(10);
    this.pos = writeVarint(this.buf, this.pos, n);
    return this;
  }
  varint64(n: bigint): this {
    this.ensure(10);
    let v = BigInt.asUintN(64, n);
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.varint((field << 3) | 2).varint(b.byteLength);
    this.ensure(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, "utf8"));
  }
  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}
