// grpc.health.v1.Health/Watch over gRPC, served on the raw HTTP/2 stream:
// a watcher is the stream and one subscription to the shared health ticker
// (health.ts), a few hundred bytes, instead of a connect-es handler with its
// own timer per stream (20 connections x 990 watchers took the broker from
// 66 MB to 1.06 GB, never given back). Writes a HealthCheckResponse frame
// whenever the watched service's status changes; after NOT_SERVING at
// shutdown it ends the stream with OK trailers (as the Connect path does).
// How many watchers may exist is decided by the server (server.ts).
import type { ServerHttp2Stream } from "node:http2";
import { Code } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus as Serving } from "../gen/grpc/health/v1/health_pb.ts";
import { MalformedMessage, WIRE_LEN, WireReader } from "../protocol/wire-reader.ts";
import { OK_TRAILERS, frameLength, trailersOnlyHeaders } from "./frame.ts";
import { type HealthSource, type HealthTicker, servingStatus } from "./health.ts";

export const HEALTH_WATCH_PATH = "/grpc.health.v1.Health/Watch";

/** A HealthCheckRequest is one short string; anything longer is not one. */
const MAX_REQUEST_BYTES = 1024;

/** HealthCheckRequest { string service = 1; } */
function decodeService(message: Uint8Array): string {
  const r = new WireReader(message);
  let service = "";
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) r.expect(f, w, WIRE_LEN), (service = r.string());
    else r.skip(w);
  }
  return service;
}

/** A framed HealthCheckResponse { ServingStatus status = 1; } (status is never 0 here). */
function framedStatus(status: Serving): Buffer {
  return Buffer.from([0, 0, 0, 0, 2, 0x08, status]);
}

/** Serves one Watch stream until the client leaves or the broker shuts down. Never throws. */
export function serveHealthWatch(stream: ServerHttp2Stream, src: HealthSource, ticker: HealthTicker): void {
  stream.on("error", () => {});
  const chunks: Buffer[] = [];
  let size = 0;
  const refuse = (code: Code, message: string) => {
    if (stream.destroyed || stream.headersSent) return;
    try {
      stream.respond(trailersOnlyHeaders(code, message), { endStream: true });
    } catch {
      // Reset meanwhile.
    }
  };
  stream.on("data", (c: Buffer) => {
    size += c.byteLength;
    if (size <= MAX_REQUEST_BYTES + 5) chunks.push(c);
  });
  stream.once("end", () => {
    if (size > MAX_REQUEST_BYTES + 5) return refuse(Code.ResourceExhausted, "HealthCheckRequest too large");
    const body = Buffer.concat(chunks);
    const len = frameLength(body);
    if (len < 0 || 5 + len !== body.byteLength)
      return refuse(Code.Internal, "malformed gRPC request: expected one message frame");
    if (body[0] !== 0)
      return refuse(Code.Unimplemented, "compressed request messages are not supported by this broker");
    let service: string;
    try {
      service = decodeService(body.subarray(5));
    } catch (err) {
      if (err instanceof MalformedMessage)
        return refuse(Code.Internal, `cannot decode request message: ${err.message}`);
      throw err;
    }
    if (stream.destroyed) return;
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
    let last: Serving | -1 = -1;
    const update = () => {
      if (stream.destroyed) return;
      const status = servingStatus(service, src) ?? Serving.SERVICE_UNKNOWN;
      if (status !== last) {
        last = status;
        stream.write(framedStatus(status));
      }
      if (src.isClosing()) {
        unsubscribe();
        stream.end();
      }
    };
    const unsubscribe = ticker.subscribe(update);
    stream.once("close", unsubscribe);
    update();
  });
}
