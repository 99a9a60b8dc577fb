// Hand-written protobuf codecs for the hot RPC messages (GetTask,
// SetTaskStatus, SetBatchActivationStatus, Produce, PushTask). The generic
// @bufbuild codec and connect-node's per-call machinery cost several times the
// whole request budget at 15k+ calls/s (docs/spec/facts.md), and these messages are tiny.
// Responses wrap the stored activation bytes unchanged: field 1, wire type 2.
// The gRPC framing around them is connect/frame.ts.
// Pure functions; test/rpc-wire.test.ts checks them against @bufbuild/protobuf.

import { MalformedMessage, WireReader } from "./wire-reader.ts";
import { repeatedField1Size, Writer, writeRepeatedField1, writeVarint } from "./wire-writer.ts";

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

/** SetTaskStatusRequest (docs/spec/wire-contract.md "RPC messages"). */
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

/** ProduceResponse { uint32 accepted = 1; uint32 duplicates = 2; uint32 expired = 3; } (connect/frame.ts frames it). */
export function encodeProduceResponse(r: { accepted: number; duplicates: number; expired: number }): Uint8Array {
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
  return tmp.subarray(0, pos);
}

// ---- Client side: request encoders and response decoders (connect/client.ts). ----

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

/** ProduceRequest { repeated TaskActivation activations = 1; } around the activation bytes, unchanged. */
export function encodeProduceRequest(activations: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(repeatedField1Size(activations));
  writeRepeatedField1(out, 0, activations);
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
    if (f === 1) r.expect(f, w, 2), (task = r.bytes());
    else if (f === 2) r.expect(f, w, 2), (callbackUrl = r.string());
    else r.skip(w);
  }
  return { task, callbackUrl };
}
