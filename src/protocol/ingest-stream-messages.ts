// Hand-written codecs for the messages of IngestService.ProduceStream
// (proto/taskplatform/v1/ingest.proto): ProduceStreamRequest wraps one
// serialized ProduceRequest with its per-message signature, and
// ProduceStreamResponse answers it with the produced counts or a refusal. The
// ProduceRequest inside is the unary codec's (messages.ts), so the activation
// bytes go through unchanged. The gRPC framing is connect/frame.ts.
// Pure functions; test/produce-stream.test.ts checks them against @bufbuild/protobuf.
import { decodeProduceResponse, encodeProduceResponse } from "./messages.ts";
import { WireReader } from "./wire-reader.ts";
import { Writer } from "./wire-writer.ts";

export const PRODUCE_STREAM_PATH = "/taskplatform.v1.IngestService/ProduceStream";

export interface ProduceCounts {
  accepted: number;
  duplicates: number;
  expired: number;
}

export interface DecodedProduceStreamRequest {
  /** The serialized ProduceRequest (a view into the message). */
  request: Uint8Array;
  /** Unix seconds as sent (0: none). */
  timestamp: number;
  /** Empty when none was sent. */
  signature: string;
}

/** ProduceStreamRequest { bytes request = 1; uint64 timestamp = 2; string signature = 3; } */
export function encodeProduceStreamRequest(m: {
  request: Uint8Array;
  timestamp?: number;
  signature?: string;
}): Uint8Array {
  const w = new Writer();
  w.bytes(1, m.request);
  if (m.timestamp) w.varint(2 << 3).varint(m.timestamp);
  if (m.signature) w.string(3, m.signature);
  return w.finish();
}

export function decodeProduceStreamRequest(buf: Uint8Array): DecodedProduceStreamRequest {
  const r = new WireReader(buf);
  const out: DecodedProduceStreamRequest = { request: EMPTY, timestamp: 0, signature: "" };
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) r.expect(f, w, 2), (out.request = r.bytes());
    else if (f === 2) r.expect(f, w, 0), (out.timestamp = r.varint());
    else if (f === 3) r.expect(f, w, 2), (out.signature = r.string());
    else r.skip(w);
  }
  return out;
}

const EMPTY = new Uint8Array(0);

/** The outcome of one batch: its counts, or the gRPC status it was refused with. */
export type ProduceStreamOutcome = { ok: true; counts: ProduceCounts } | { ok: false; code: number; message: string };

/** ProduceStreamResponse { ProduceResponse produced = 1; uint32 code = 2; string message = 3; } */
export function encodeProduceStreamResponse(o: ProduceStreamOutcome): Uint8Array {
  const w = new Writer();
  if (o.ok) w.bytes(1, encodeProduceResponse(o.counts));
  else {
    w.varint(2 << 3).varint(o.code >>> 0);
    if (o.message !== "") w.string(3, o.message);
  }
  return w.finish();
}

export function decodeProduceStreamResponse(buf: Uint8Array): ProduceStreamOutcome {
  const r = new WireReader(buf);
  let counts: ProduceCounts = { accepted: 0, duplicates: 0, expired: 0 };
  let code = 0;
  let message = "";
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) r.expect(f, w, 2), (counts = decodeProduceResponse(r.bytes()));
    else if (f === 2) r.expect(f, w, 0), (code = r.varint());
    else if (f === 3) r.expect(f, w, 2), (message = r.string());
    else r.skip(w);
  }
  return code === 0 ? { ok: true, counts } : { ok: false, code, message };
}
