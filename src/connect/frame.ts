// gRPC framing over HTTP/2, written by hand for the hot paths (the broker's
// fast gRPC path, the broker client, the worker's push port): the 5-byte
// length prefix (compressed flag + big-endian length), the status trailers
// (written, and read back by the clients) and the percent-encoding of grpc-message. The message codecs are in protocol/messages.ts.
// Pure functions; test/rpc-wire.test.ts checks them against @bufbuild/protobuf.
import { encodeProduceResponse } from "../protocol/messages.ts";
import { varintSize, writeVarint } from "../protocol/wire-writer.ts";

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

/** ProduceResponse framed (protocol/messages.ts encodeProduceResponse). */
export function framedProduceResponse(r: { accepted: number; duplicates: number; expired: number }): Buffer {
  return frameMessage(encodeProduceResponse(r));
}

/** Length of the first frame when `buf` holds at least its header, else -1. */
export function frameLength(buf: Uint8Array): number {
  if (buf.byteLength < 5) return -1;
  return ((buf[1]! << 24) | (buf[2]! << 16) | (buf[3]! << 8) | buf[4]!) >>> 0;
}

/** Trailers of a call that succeeded. */
export const OK_TRAILERS = { "grpc-status": "0" };

/** grpc-status and grpc-message of a failed call, for trailers or a trailers-only answer. */
export function grpcStatusFields(code: number, message: string): { "grpc-status": string; "grpc-message": string } {
  return { "grpc-status": String(code), "grpc-message": percentEncodeGrpcMessage(message) };
}

/** Headers of a trailers-only gRPC answer: HTTP 200, the status in the headers, no body. */
export function trailersOnlyHeaders(code: number, message: string) {
  return { ":status": 200, "content-type": "application/grpc", ...grpcStatusFields(code, message) };
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
    out +=
      b < 0x20 || b > 0x7e || b === 0x25 ? "%" + b.toString(16).toUpperCase().padStart(2, "0") : String.fromCharCode(b);
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

/** A call's gRPC status as the client reads it: the code and the decoded message. */
export interface GrpcStatus {
  code: number;
  message: string;
}

/**
 * The status that response headers (a trailers-only answer) or trailers
 * carry, or null when they carry none (client side).
 */
export function grpcStatusOf(headers: Readonly<Record<string, unknown>>): GrpcStatus | null {
  const code = headers["grpc-status"];
  if (code === undefined) return null;
  return { code: Number(code), message: percentDecodeGrpcMessage(String(headers["grpc-message"] ?? "")) };
}

/**
 * Splits a stream of HTTP/2 DATA chunks into gRPC messages, for streaming
 * calls (the delivery stream, both ends). push() returns the complete
 * messages so far (views into the chunks, no copy when a message sits in one
 * chunk); a message announced larger than `maxBytes` is reported by
 * `tooLarge` instead of being buffered, and one with the compressed flag set
 * by `compressed`.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the message being assembled needs in all (prefix included); 0 until its prefix is known. */
  private need = 0;
  tooLarge = false;
  compressed = false;
  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (this.tooLarge || this.compressed) return out;
    let buf: Buffer;
    if (this.pendingBytes === 0) buf = chunk;
    else {
      this.pending.push(chunk);
      this.pendingBytes += chunk.byteLength;
      // Concatenate only once the message is complete (or its prefix is), not per chunk.
      if (this.pendingBytes < (this.need || 5)) return out;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.need = 0;
    let pos = 0;
    while (buf.byteLength - pos >= 5) {
      const len = ((buf[pos + 1]! << 24) | (buf[pos + 2]! << 16) | (buf[pos + 3]! << 8) | buf[pos + 4]!) >>> 0;
      if (len > this.maxBytes) {
        this.tooLarge = true;
        return out;
      }
      if (buf[pos] !== 0) {
        this.compressed = true;
        return out;
      }
      if (buf.byteLength - pos - 5 < len) {
        this.need = 5 + len;
        break;
      }
      out.push(buf.subarray(pos + 5, pos + 5 + len));
      pos += 5 + len;
    }
    if (pos < buf.byteLength) {
      const rest = buf.subarray(pos);
      this.pending.push(rest);
      this.pendingBytes = rest.byteLength;
    }
    return out;
  }

  /** Bytes of an incomplete message held (0 at a message boundary). */
  buffered(): number {
    return this.pendingBytes;
  }
}
