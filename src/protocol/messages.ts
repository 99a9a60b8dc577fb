// Hand-written protobuf and gRPC framing for the hot RPCs (GetTask,
// SetTaskStatus, SetBatchActivationStatus, Produce). The generic @bufbuild
// codec and connect-node's per-call machinery cost several times the whole
// request budget at 15k+ calls/s (facts.md), and these messages are tiny.
// Responses wrap the stored activation bytes unchanged: field 1, wire type 2.
// Pure functions; test/rpc-wire.test.ts checks them against @bufbuild/protobuf.

import { MalformedMessage, WireReader } from "./wire-reader.ts";

// A request that cannot be decoded is a MalformedMessage, answered INTERNAL (as other gRPC servers do).
export { MalformedMessage };

export interface TaskFilter {
  namespace?: string;
  application?: string;
}

export interface DecodedStatusUpdate {
  id: string;
  /** Raw wire enum value; validated by the caller (3, 4, 5 allowed). */
  status: number;
  fetchNext?: TaskFilter;
  maxAttempts?: number;
  delayOnRetry?: bigint;
}

function decodeFilter(r: WireReader): TaskFilter {
  const out: TaskFilter = {};
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) {
      r.expect(f, w, 2);
      out.namespace = r.string();
    } else if (f === 2) {
      r.expect(f, w, 2);
      out.application = r.string();
    } else r.skip(w);
  }
  return out;
}

/** GetTaskRequest { optional string namespace = 1; optional string application = 2; } (and FetchNextTask). */
export function decodeGetTaskRequest(buf: Uint8Array): TaskFilter {
  return decodeFilter(new WireReader(buf));
}

function decodeStatusUpdate(r: WireReader): DecodedStatusUpdate {
  const out: DecodedStatusUpdate = { id: "", status: 0 };
  while (!r.done()) {
    const [f, w] = r.tag();
    switch (f) {
      case 1:
        r.expect(f, w, 2);
        out.id = r.string();
        break;
      case 2:
        r.expect(f, w, 0);
        out.status = r.varint();
        break;
      case 3: {
        r.expect(f, w, 2);
        out.fetchNext = decodeFilter(r.sub());
        break;
      }
      case 4:
        r.expect(f, w, 0);
        out.maxAttempts = Number(BigInt.asUintN(32, r.varint64()));
        break;
      case 5:
        r.expect(f, w, 0);
        out.delayOnRetry = r.varint64();
        break;
      default:
        r.skip(w);
    }
  }
  return out;
}

/** SetTaskStatusRequest (wire-contract.md "RPC messages"). */
export function decodeSetTaskStatusRequest(buf: Uint8Array): DecodedStatusUpdate {
  return decodeStatusUpdate(new WireReader(buf));
}

/** SetBatchActivationStatusRequest { repeated SetTaskStatusRequest updates = 1; } */
export function decodeSetBatchRequest(buf: Uint8Array): DecodedStatusUpdate[] {
  const r = new WireReader(buf);
  const out: DecodedStatusUpdate[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) {
      r.expect(f, w, 2);
      out.push(decodeStatusUpdate(r.sub()));
    } else r.skip(w);
  }
  return out;
}

/**
 * ProduceRequest { repeated TaskActivation activations = 1; }: the activation
 * bytes as views into `buf` (no copy, no decode; ingest validates them).
 */
export function decodeProduceRequest(buf: Uint8Array): Uint8Array[] {
  const r = new WireReader(buf);
  const out: Uint8Array[] = [];
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) {
      r.expect(f, w, 2);
      out.push(r.bytes());
    } else r.skip(w);
  }
  return out;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[pos++] = n;
  return pos;
}

function writeFrameHeader(out: Uint8Array, len: number): void {
  out[0] = 0;
  out[1] = (len >>> 24) & 0xff;
  out[2] = (len >>> 16) & 0xff;
  out[3] = (len >>> 8) & 0xff;
  out[4] = len & 0xff;
}

/**
 * A framed GetTaskResponse / SetTaskStatusResponse: the gRPC 5-byte prefix,
 * then `0x0a varint(len) activation` (task = field 1), or an empty message
 * for "no task". One allocation.
 */
export function framedTaskResponse(activation: Uint8Array | null): Buffer {
  if (activation === null) return Buffer.from(EMPTY_FRAME);
  const msgLen = 1 + varintSize(activation.byteLength) + activation.byteLength;
  const out = Buffer.allocUnsafe(5 + msgLen);
  writeFrameHeader(out, msgLen);
  out[5] = 0x0a;
  const pos = writeVarint(out, 6, activation.byteLength);
  out.set(activation, pos);
  return out;
}

const EMPTY_FRAME = new Uint8Array(5);

/** A framed empty message (SetBatchActivationStatusResponse, "no task"). */
export function framedEmpty(): Buffer {
  return Buffer.from(EMPTY_FRAME);
}

/** Frames already-encoded message bytes with the 5-byte gRPC prefix. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.byteLength);
  writeFrameHeader(out, message.byteLength);
  out.set(message, 5);
  return out;
}

/** ProduceResponse { uint32 accepted = 1; uint32 duplicates = 2; uint32 expired = 3; } framed. */
export function framedProduceResponse(r: { accepted: number; duplicates: number; expired: number }): Buffer {
  const tmp = new Uint8Array(3 * 6);
  let pos = 0;
  const fields: [number, number][] = [
    [1, r.accepted],
    [2, r.duplicates],
    [3, r.expired],
  ];
  for (const [field, value] of fields) {
    if (value === 0) continue; // proto3: zero is not written
    tmp[pos++] = field << 3;
    pos = writeVarint(tmp, pos, value >>> 0);
  }
  return frameMessage(tmp.subarray(0, pos));
}

/** Length of the first frame when `buf` holds at least its header, else -1. */
export function frameLength(buf: Uint8Array): number {
  if (buf.byteLength < 5) return -1;
  return ((buf[1]! << 24) | (buf[2]! << 16) | (buf[3]! << 8) | buf[4]!) >>> 0;
}

/**
 * grpc-message is percent-encoded (gRPC HTTP/2 spec): bytes outside
 * printable ASCII and '%' itself become %XX of their UTF-8 bytes.
 */
export function percentEncodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = "";
  for (const b of Buffer.from(message, "utf8")) {
    out += b < 0x20 || b > 0x7e || b === 0x25 ? "%" + b.toString(16).toUpperCase().padStart(2, "0") : String.fromCharCode(b);
  }
  return out;
}

/** Inverse of percentEncodeGrpcMessage (client side); malformed escapes are kept as is. */
export function percentDecodeGrpcMessage(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

// ---- Client side: request encoders and response decoders (client.ts). ----

/** Growable protobuf writer for the few small messages the client sends. */
class Writer {
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

function encodeFilter(f: TaskFilter): Uint8Array {
  const w = new Writer();
  if (f.namespace !== undefined) w.string(1, f.namespace);
  if (f.application !== undefined) w.string(2, f.application);
  return w.finish();
}

export function encodeGetTaskRequest(f: TaskFilter): Uint8Array {
  return encodeFilter(f);
}

function writeStatusUpdate(w: Writer, u: DecodedStatusUpdate): void {
  if (u.id !== "") w.string(1, u.id);
  if (u.status !== 0) w.varint(2 << 3).varint(u.status);
  if (u.fetchNext !== undefined) w.bytes(3, encodeFilter(u.fetchNext));
  if (u.maxAttempts !== undefined) w.varint(4 << 3).varint(u.maxAttempts);
  if (u.delayOnRetry !== undefined) w.varint(5 << 3).varint64(u.delayOnRetry);
}

export function encodeSetTaskStatusRequest(u: DecodedStatusUpdate): Uint8Array {
  const w = new Writer();
  writeStatusUpdate(w, u);
  return w.finish();
}

export function encodeSetBatchRequest(updates: DecodedStatusUpdate[]): Uint8Array {
  const w = new Writer();
  for (const u of updates) {
    const inner = new Writer();
    writeStatusUpdate(inner, u);
    w.bytes(1, inner.finish());
  }
  return w.finish();
}

export function encodeProduceRequest(activations: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const a of activations) size += 1 + varintSize(a.byteLength) + a.byteLength;
  const out = new Uint8Array(size);
  let pos = 0;
  for (const a of activations) {
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, a.byteLength);
    out.set(a, pos);
    pos += a.byteLength;
  }
  return out;
}

/** GetTaskResponse / SetTaskStatusResponse: the task's bytes (field 1), or null when absent. */
export function decodeTaskResponse(buf: Uint8Array): Uint8Array | null {
  const r = new WireReader(buf);
  let task: Uint8Array | null = null;
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1 && w === 2) {
      task = r.bytes();
    } else r.skip(w);
  }
  return task;
}

export function decodeProduceResponse(buf: Uint8Array): { accepted: number; duplicates: number; expired: number } {
  const r = new WireReader(buf);
  const out = { accepted: 0, duplicates: 0, expired: 0 };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (w === 0 && f >= 1 && f <= 3) {
      const v = r.varint();
      if (f === 1) out.accepted = v;
      else if (f === 2) out.duplicates = v;
      else out.expired = v;
    } else r.skip(w);
  }
  return out;
}

// ---- WorkerService.PushTask (push delivery): PushTaskRequest { TaskActivation task = 1; string callback_url = 2; } ----

/** PushTaskRequest carrying the stored activation bytes unchanged as field 1 (no callback_url: deprecated). */
export function encodePushTaskRequest(activation: Uint8Array, callbackUrl?: string): Uint8Array {
  const w = new Writer().bytes(1, activation);
  if (callbackUrl) w.string(2, callbackUrl);
  return w.finish();
}

/**
 * PushTaskRequest { TaskActivation task = 1; string callback_url = 2; }: the
 * task's bytes (null when absent) and where the pushing broker wants the result.
 */
export function decodePushTaskRequest(buf: Uint8Array): { task: Uint8Array | null; callbackUrl: string } {
  const r = new WireReader(buf);
  let task: Uint8Array | null = null;
  let callbackUrl = "";
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) (r.expect(f, w, 2), (task = r.bytes()));
    else if (f === 2) (r.expect(f, w, 2), (callbackUrl = r.string()));
    else r.skip(w);
  }
  return { task, callbackUrl };
}
