// Hand-written codecs for the streaming delivery messages of
// proto/taskplatform/v1/delivery.proto (WorkerMessage, BrokerMessage): like
// the unary hot messages (messages.ts), they carry the stored activation bytes
// unchanged and reuse the v1 SetTaskStatusRequest codec for results, so a
// batch costs one pass over its bytes. The gRPC framing is connect/frame.ts.
// Pure functions; test/delivery-wire.test.ts checks them against @bufbuild/protobuf.
import {
  type DecodedStatusUpdate,
  decodeSetTaskStatusRequest,
  encodeSetTaskStatusRequest,
  type TaskFilter,
} from "./messages.ts";
import { WireReader } from "./wire-reader.ts";
import { repeatedField1Size, Writer, varintSize, writeRepeatedField1, writeVarint } from "./wire-writer.ts";

export interface DeliveryOpenFields extends TaskFilter {
  /** Free-form worker name for the broker's logs. */
  worker?: string;
}

export interface DecodedWorkerMessage {
  open?: DeliveryOpenFields;
  credit: number;
  results: DecodedStatusUpdate[];
  revoke: number;
}

export interface DecodedBrokerMessage {
  /** Activation bytes, views into the message. */
  activations: Uint8Array[];
  resultsCommitted: number;
  revoked: number;
}

const NO_RESULTS: DecodedStatusUpdate[] = [];

function decodeOpen(r: WireReader): DeliveryOpenFields {
  const out: DeliveryOpenFields = {};
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) r.expect(f, w, 2), (out.namespace = r.string());
    else if (f === 2) r.expect(f, w, 2), (out.application = r.string());
    else if (f === 3) r.expect(f, w, 2), (out.worker = r.string());
    else r.skip(w);
  }
  return out;
}

/** A uint32 field: larger varints are clamped (a credit beyond 2^32 is not meaningful). */
function uint32(r: WireReader): number {
  const v = r.varint();
  return Math.min(v, 0xffffffff);
}

/** WorkerMessage { DeliveryOpen open = 1; uint32 credit = 2; repeated SetTaskStatusRequest results = 3; uint32 revoke = 4; } */
export function decodeWorkerMessage(buf: Uint8Array): DecodedWorkerMessage {
  const r = new WireReader(buf);
  const out: DecodedWorkerMessage = { credit: 0, results: NO_RESULTS, revoke: 0 };
  while (!r.done()) {
    const [f, w] = r.tag();
    switch (f) {
      case 1:
        r.expect(f, w, 2);
        out.open = decodeOpen(r.sub());
        break;
      case 2:
        r.expect(f, w, 0);
        out.credit = uint32(r);
        break;
      case 3:
        r.expect(f, w, 2);
        if (out.results === NO_RESULTS) out.results = [];
        out.results.push(decodeSetTaskStatusRequest(r.bytes()));
        break;
      case 4:
        r.expect(f, w, 0);
        out.revoke = uint32(r);
        break;
      default:
        r.skip(w);
    }
  }
  return out;
}

/** BrokerMessage { repeated TaskActivation activations = 1; uint32 results_committed = 2; uint32 revoked = 3; } */
export function encodeBrokerMessage(
  activations: readonly Uint8Array[],
  resultsCommitted: number,
  revoked: number,
): Uint8Array {
  let size = repeatedField1Size(activations);
  if (resultsCommitted > 0) size += 1 + varintSize(resultsCommitted);
  if (revoked > 0) size += 1 + varintSize(revoked);
  const out = new Uint8Array(size);
  let pos = writeRepeatedField1(out, 0, activations);
  if (resultsCommitted > 0) {
    out[pos++] = 0x10;
    pos = writeVarint(out, pos, resultsCommitted);
  }
  if (revoked > 0) {
    out[pos++] = 0x18;
    pos = writeVarint(out, pos, revoked);
  }
  return out;
}

export function decodeBrokerMessage(buf: Uint8Array): DecodedBrokerMessage {
  const r = new WireReader(buf);
  const out: DecodedBrokerMessage = { activations: [], resultsCommitted: 0, revoked: 0 };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) r.expect(f, w, 2), out.activations.push(r.bytes());
    else if (f === 2) r.expect(f, w, 0), (out.resultsCommitted = uint32(r));
    else if (f === 3) r.expect(f, w, 0), (out.revoked = uint32(r));
    else r.skip(w);
  }
  return out;
}

export interface WorkerMessageFields {
  open?: DeliveryOpenFields;
  credit?: number;
  results?: readonly DecodedStatusUpdate[];
  revoke?: number;
}

export function encodeWorkerMessage(m: WorkerMessageFields): Uint8Array {
  const w = new Writer();
  if (m.open !== undefined) {
    const o = new Writer();
    if (m.open.namespace !== undefined) o.string(1, m.open.namespace);
    if (m.open.application !== undefined) o.string(2, m.open.application);
    if (m.open.worker) o.string(3, m.open.worker);
    w.bytes(1, o.finish());
  }
  if (m.credit) w.varint(2 << 3).varint(m.credit);
  if (m.results !== undefined) for (const u of m.results) w.bytes(3, encodeSetTaskStatusRequest(u));
  if (m.revoke) w.varint(4 << 3).varint(m.revoke);
  return w.finish();
}
