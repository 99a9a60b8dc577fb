// The hot path: gRPC (application/grpc[+proto]) calls of ConsumerService and
// IngestService.Produce, handled directly on the node:http2 stream with
// hand-written framing (frame.ts) and codecs (protocol/messages.ts). Everything else goes through connect-node
// (universal.ts). Measured under Bun 1.4.5 with h2load c=8 m=16 (see
// server.ts for the numbers): this path runs within a few percent of a bare
// constant-response stream handler; connect-node's adapter is ~6x slower.
import http2, { type ServerHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { rpcRefusedTotal } from "../metrics.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConsumerCore } from "./consumer.ts";
import { NO_PENDING } from "./consumer.ts";
import { recordRpc } from "./rpc-metrics.ts";
import { type SignaturePolicy, verifyRequestSignature } from "./signing.ts";
import {
  MalformedMessage,
  decodeGetTaskRequest,
  decodeProduceRequest,
  decodeSetBatchRequest,
  decodeSetTaskStatusRequest,
} from "../protocol/messages.ts";
import {
  OK_TRAILERS,
  frameLength,
  framedEmpty,
  framedProduceResponse,
  framedTaskResponse,
  trailersOnlyHeaders,
} from "./frame.ts";

/**
 * One hot method: `call` starts it (it may throw synchronously for a bad
 * request), `encode` frames its result, null meaning NOT_FOUND.
 */
interface FastMethod<T> {
  method: string;
  call(core: ConsumerCore, message: Uint8Array): Promise<T>;
  encode(result: T): Buffer | null;
}

function fastMethod<T>(m: FastMethod<T>): FastMethod<unknown> {
  return m as FastMethod<unknown>;
}

const handlers: Record<string, FastMethod<unknown>> = {
  "/sentry_protos.taskbroker.v1.ConsumerService/GetTask": fastMethod({
    method: "GetTask",
    call: (core, msg) => core.getTask(decodeGetTaskRequest(msg)),
    encode: (claimed) => (claimed === null ? null : framedTaskResponse(claimed.activation)),
  }),
  "/sentry_protos.taskbroker.v1.ConsumerService/SetTaskStatus": fastMethod({
    method: "SetTaskStatus",
    call: (core, msg) => core.setTaskStatus(decodeSetTaskStatusRequest(msg)),
    encode: (next) => framedTaskResponse(next === null ? null : next.activation),
  }),
  "/sentry_protos.taskbroker.v1.ConsumerService/SetBatchActivationStatus": fastMethod({
    method: "SetBatchActivationStatus",
    call: (core, msg) => core.setBatchStatus(decodeSetBatchRequest(msg)),
    encode: () => framedEmpty(),
  }),
  "/taskplatform.v1.IngestService/Produce": fastMethod({
    method: "Produce",
    call: (core, msg) => core.produce(decodeProduceRequest(msg)),
    encode: (counts) => framedProduceResponse(counts),
  }),
};

/** True when this request is served by the fast path (gRPC content type, hot method). */
export function isFastGrpc(path: string | undefined, contentType: string | undefined): boolean {
  return (
    (contentType === "application/grpc" || contentType === "application/grpc+proto") &&
    path !== undefined &&
    handlers[path] !== undefined
  );
}

export interface FastGrpcOptions {
  core: ConsumerCore;
  /** How signatures are checked (no secrets: off). */
  signing: SignaturePolicy;
  maxMessageBytes: number;
  /** The whole request must arrive within this long of its headers, ms (0: no limit). */
  readTimeoutMs: number;
}

const OK_HEADERS = { ":status": 200, "content-type": "application/grpc" };

/** Answers with a trailers-only response carrying the status (no message). */
export function respondGrpcError(stream: ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(trailersOnlyHeaders(code, message), { endStream: true });
  } catch {
    // The peer reset the stream between the check and respond: nothing to tell it.
  }
}

function respondOk(stream: ServerHttp2Stream, body: Buffer): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(OK_HEADERS, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
    stream.end(body);
  } catch {
    // Reset by the peer meanwhile.
  }
}

/** Serves one fast-path stream (isFastGrpc was true). Never throws. */
export function serveFastGrpc(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, opts: FastGrpcOptions): void {
  const start = performance.now();
  const path = headers[":path"]!;
  const h = handlers[path]!;
  const fail = (code: number, message: string) => {
    respondGrpcError(stream, code, message);
    recordRpc(h.method, code, start);
  };

  let first: Buffer | null = null;
  let chunks: Buffer[] | null = null;
  let received = 0;
  let rejected = false;
  let declared = -1;
  const limit = opts.maxMessageBytes + 5;
  const onData = (chunk: Buffer) => {
    if (rejected) return;
    received += chunk.byteLength;
    if (first === null) first = chunk;
    else (chunks ??= [first]).push(chunk);
    // Refuse an oversized message as soon as its prefix announces it, without buffering it.
    if (declared < 0 && received >= 5) declared = frameLength(chunks === null ? first : Buffer.concat(chunks));
    if (declared > opts.maxMessageBytes || received > limit) {
      rejected = true;
      stream.off("data", onData);
      stream.resume(); // drain and discard the rest
      fail(
        Code.ResourceExhausted,
        `request message larger than the limit of ${opts.maxMessageBytes} bytes (TASKBROKER_GRPC_MAX_MESSAGE_BYTES)`,
      );
    }
  };
  stream.on("data", onData);
  stream.on("error", () => {}); // resets by the peer surface here; the stream is gone, nothing to answer
  // A body that trickles in holds a stream and its buffers: it has readTimeoutMs to arrive.
  const readTimer =
    opts.readTimeoutMs > 0
      ? setTimeout(() => {
          if (rejected) return;
          rejected = true;
          stream.off("data", onData);
          rpcRefusedTotal.inc({ reason: "request_read_timeout" });
          fail(
            Code.DeadlineExceeded,
            `request not received within ${opts.readTimeoutMs} ms (TASKBROKER_GRPC_REQUEST_READ_TIMEOUT_MS)`,
          );
          stream.close(http2.constants.NGHTTP2_CANCEL);
        }, opts.readTimeoutMs)
      : null;
  stream.once("close", () => readTimer !== null && clearTimeout(readTimer));
  stream.once("end", () => {
    if (readTimer !== null) clearTimeout(readTimer);
    if (rejected) return;
    const body: Buffer = chunks !== null ? Buffer.concat(chunks, received) : (first ?? Buffer.alloc(0));
    run(body);
  });

  function run(body: Buffer): void {
    const len = frameLength(body);
    if (opts.signing.secrets.length > 0) {
      const message = len >= 0 && 5 + len <= body.byteLength ? body.subarray(5, 5 + len) : null;
      if (message === null || !verifyRequestSignature(opts.signing, path, message, (n) => headers[n])) {
        return fail(Code.Unauthenticated, "Authentication failed");
      }
    }
    if (len < 0)
      return fail(Code.Internal, `malformed gRPC request: body of ${body.byteLength} bytes holds no message frame`);
    if (5 + len !== body.byteLength) {
      return fail(
        Code.Internal,
        5 + len > body.byteLength
          ? `malformed gRPC request: frame announces ${len} bytes but the body ends after ${body.byteLength - 5}`
          : "malformed gRPC request: more than one message for a unary method",
      );
    }
    if (body[0] !== 0) {
      return fail(
        Code.Unimplemented,
        "compressed request messages are not supported by this broker; send uncompressed messages (grpc-encoding: identity)",
      );
    }
    const onError = (err: unknown) => {
      if (err instanceof MalformedMessage) {
        // INTERNAL, as grpc-go, grpc-java and connect-es answer an undecodable request message.
        fail(Code.Internal, `cannot decode request message: ${err.message}`);
      } else if (err instanceof ConnectError) fail(err.code, err.rawMessage);
      else fail(Code.Internal, `${h.method} failed: ${err instanceof Error ? err.message : String(err)}`);
    };
    let pending: Promise<unknown>;
    try {
      pending = h.call(opts.core, body.subarray(5));
    } catch (err) {
      return onError(err);
    }
    pending.then((result) => {
      const response = h.encode(result);
      if (response === null) return fail(Code.NotFound, NO_PENDING);
      respondOk(stream, response);
      recordRpc(h.method, 0, start);
    }, onError);
  }
}
