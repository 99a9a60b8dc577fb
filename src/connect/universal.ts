// Everything that is not the fast gRPC path: Connect (binary and JSON),
// gRPC-Web, gRPC for Health/Admin, over HTTP/2 streams and HTTP/1.1. Requests
// are handed to connect-es's universal handlers (the same machinery as
// connectNodeAdapter), but the body is read here first so the signature can
// be checked over the exact bytes the client sent and the size and time
// limits apply before anything is decoded; AdminService calls are admitted
// by the admin authentication (admin/auth.ts). A binary Produce is served
// here directly, like the fast gRPC path: its activations go to ingest as
// bytes, so an undecodable one is INVALID_ARGUMENT on every transport (the
// codes come from consumer.ts's produceError) rather than connect-es's
// INTERNAL "parse binary".
import { constants as http2Constants, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Code } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { ConnectError } from "@connectrpc/connect";
import { rpcRefusedTotal } from "../metrics.ts";
import { MalformedMessage } from "../protocol/wire-reader.ts";
import { decodeProduceRequest, encodeProduceResponse } from "../protocol/messages.ts";
import type { ProduceCounts } from "./consumer.ts";
import { sessionSocket } from "./limits.ts";
import { methodName, recordRpc } from "./rpc-metrics.ts";
import { type SignaturePolicy, isSigningExempt, signedMessageBytes, verifyRequestSignature } from "./signing.ts";
import { frameMessage, grpcStatusFields } from "./frame.ts";

export const PRODUCE_PATH = "/taskplatform.v1.IngestService/Produce";

export interface UniversalOptions {
  router: ConnectRouter;
  signing: SignaturePolicy;
  maxMessageBytes: number;
  /** The whole request must arrive within this long, ms (0: no limit). */
  readTimeoutMs: number;
  /** True once close() began: new RPCs are answered UNAVAILABLE. */
  isClosing: () => boolean;
  /** Ingest for binary Produce requests (consumer.ts: errors are ConnectErrors with their final code). */
  produce: (activations: Uint8Array[]) => Promise<ProduceCounts>;
  /** Admits an AdminService call: null when allowed, else why not (PERMISSION_DENIED / UNAUTHENTICATED). */
  authorizeAdmin: (
    header: (name: string) => string | undefined,
    remoteAddress: string | undefined,
  ) => ConnectError | null;
}

/** Binary encodings whose Produce is answered here (Connect unary, gRPC-Web). */
function rawProduceEncoding(contentType: string): "connect" | "grpc-web" | null {
  if (contentType === "application/proto") return "connect";
  if (contentType === "application/grpc-web" || contentType === "application/grpc-web+proto") return "grpc-web";
  return null;
}

/** A gRPC-Web trailer frame (flag 0x80) carrying grpc-status 0. */
const GRPC_WEB_OK_TRAILER = (() => {
  const text = Buffer.from("grpc-status:0\r\ngrpc-message:\r\n");
  const out = Buffer.alloc(5 + text.byteLength);
  out[0] = 0x80;
  out.writeUInt32BE(text.byteLength, 1);
  text.copy(out, 5);
  return out;
})();

/** A status answer in whatever protocol the request spoke. */
interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * gRPC and gRPC-Web carry the status in (trailers-only) headers with HTTP 200;
 * Connect maps it to an HTTP status and a JSON error body.
 */
export function errorAnswer(contentType: string, code: Code, message: string): ErrorAnswer {
  if (contentType.startsWith("application/grpc")) {
    return {
      status: 200,
      headers: {
        "content-type": contentType.startsWith("application/grpc-web") ? contentType : "application/grpc",
        ...grpcStatusFields(code, message),
      },
      body: "",
    };
  }
  return {
    status: codeToHttpStatus(code),
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code: codeToString(code), message }),
  };
}

/** An answer with its code (for metrics), body as text or bytes. */
type RawAnswer = { code: number; status: number; headers: Record<string, string>; body: string | Uint8Array };

const ADMIN_PREFIX = "/taskplatform.v1.AdminService/";

export interface UniversalDispatcher {
  serveHttp2(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void;
  serveHttp1(req: IncomingMessage, res: ServerResponse): void;
}

export function createUniversalDispatcher(opts: UniversalOptions): UniversalDispatcher {
  const byPath = new Map<string, UniversalHandler>();
  for (const h of opts.router.handlers) byPath.set(h.requestPath, h);
  const limit = opts.maxMessageBytes + 5;

  /** Validates and reads; returns the body, or an answer to send instead. */
  async function admit(
    path: string,
    contentType: string,
    header: (name: string) => string | undefined,
    remoteAddress: string | undefined,
    readBody: () => Promise<Uint8Array | "too_large" | "timeout">,
  ): Promise<{ body: Uint8Array } | { error: ErrorAnswer; code: Code }> {
    const reject = (code: Code, message: string) => ({ error: errorAnswer(contentType, code, message), code });
    if (opts.isClosing()) return reject(Code.Unavailable, "broker is shutting down");
    if (!byPath.has(path)) return reject(Code.Unimplemented, `unknown method ${path}`);
    const body = await readBody();
    if (body === "too_large") {
      return reject(
        Code.ResourceExhausted,
        `request message larger than the limit of ${opts.maxMessageBytes} bytes (TASKBROKER_GRPC_MAX_MESSAGE_BYTES)`,
      );
    }
    if (body === "timeout") {
      rpcRefusedTotal.inc({ reason: "request_read_timeout" });
      return reject(
        Code.DeadlineExceeded,
        `request not received within ${opts.readTimeoutMs} ms (TASKBROKER_GRPC_REQUEST_READ_TIMEOUT_MS)`,
      );
    }
    if (opts.signing.secrets.length > 0 && !isSigningExempt(path)) {
      const raw = contentType.startsWith("application/grpc-web-text")
        ? Buffer.from(Buffer.from(body).toString("latin1"), "base64")
        : body;
      const message = signedMessageBytes(contentType, raw);
      if (message === null || !verifyRequestSignature(opts.signing, path, message, header)) {
        return reject(Code.Unauthenticated, "Authentication failed");
      }
    }
    if (path.startsWith(ADMIN_PREFIX)) {
      const denied = opts.authorizeAdmin(header, remoteAddress);
      if (denied !== null) return reject(denied.code, denied.rawMessage);
    }
    return { body };
  }

  /** A binary Produce answered without connect-es: the same decode and ingest as the fast gRPC path. */
  async function rawProduce(
    encoding: "connect" | "grpc-web",
    contentType: string,
    body: Uint8Array,
  ): Promise<RawAnswer> {
    let message: Uint8Array | null = body;
    if (encoding === "grpc-web") {
      message = signedMessageBytes(contentType, body);
      if (message === null || body[0] !== 0) {
        return {
          code: Code.Internal,
          ...errorAnswer(
            contentType,
            Code.Internal,
            "malformed gRPC-Web request: expected one uncompressed message frame",
          ),
        };
      }
    }
    let code: Code;
    let answer: ErrorAnswer;
    try {
      const counts = await opts.produce(decodeProduceRequest(message));
      const bytes = encodeProduceResponse(counts);
      return encoding === "connect"
        ? { code: 0, status: 200, headers: { "content-type": "application/proto" }, body: bytes }
        : {
            code: 0,
            status: 200,
            headers: { "content-type": contentType },
            body: Buffer.concat([frameMessage(bytes), GRPC_WEB_OK_TRAILER]),
          };
    } catch (err) {
      // The outer request undecodable: INTERNAL, as on the fast path; everything else already has its code.
      const e =
        err instanceof MalformedMessage
          ? new ConnectError(`cannot decode request message: ${err.message}`, Code.Internal)
          : ConnectError.from(err, Code.Internal);
      code = e.code;
      answer = errorAnswer(contentType, e.code, e.rawMessage);
    }
    return { code, ...answer };
  }

  function request(
    httpVersion: string,
    method: string,
    url: string,
    headers: IncomingHttpHeaders,
    body: Uint8Array,
    signal: AbortSignal,
  ): UniversalServerRequest {
    const header = new Headers();
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith(":") || v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) header.append(k, x);
      else header.set(k, v);
    }
    return {
      httpVersion,
      method,
      url,
      header,
      body: (async function* () {
        yield body;
      })(),
      signal,
    };
  }

  return {
    serveHttp2(stream, headers) {
      const start = performance.now();
      const path = (headers[":path"] ?? "").split("?")[0]!;
      const contentType = headers["content-type"] ?? "";
      const abort = new AbortController();
      stream.once("close", () => abort.abort());
      stream.on("error", () => {});
      const label = byPath.has(path) ? methodName(path) : "unknown"; // client-chosen paths never become label values
      void (async () => {
        const admitted = await admit(
          path,
          contentType,
          (n) => headers[n] as string | undefined,
          sessionSocket(stream.session)?.remoteAddress,
          () => readLimited(stream, limit, opts.readTimeoutMs),
        );
        if ("error" in admitted) {
          writeAnswerHttp2(stream, admitted.error);
          recordRpc(label, admitted.code, start);
          // A body still trickling in is not wanted: reset the stream once the answer is out.
          if (admitted.code === Code.DeadlineExceeded && !stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
          return;
        }
        const encoding = path === PRODUCE_PATH ? rawProduceEncoding(contentType) : null;
        if (encoding !== null) {
          const a = await rawProduce(encoding, contentType, admitted.body);
          writeAnswerHttp2(stream, a);
          recordRpc(label, a.code, start);
          return;
        }
        const url = `http://${headers[":authority"] ?? "localhost"}${headers[":path"] ?? ""}`;
        const handler = byPath.get(path)!;
        try {
          const res = await handler(
            request("2.0", headers[":method"] ?? "POST", url, headers, admitted.body, abort.signal),
          );
          await writeUniversalHttp2(stream, res);
          recordRpc(label, statusOf(res), start);
        } catch (err) {
          if (!stream.headersSent) writeAnswerHttp2(stream, errorAnswer(contentType, Code.Internal, String(err)));
          else stream.close();
        }
      })();
    },

    serveHttp1(req, res) {
      const start = performance.now();
      const path = (req.url ?? "").split("?")[0]!;
      const contentType = req.headers["content-type"] ?? "";
      const abort = new AbortController();
      res.once("close", () => abort.abort());
      req.on("error", () => {});
      const label = byPath.has(path) ? methodName(path) : "unknown";
      void (async () => {
        const admitted = await admit(
          path,
          contentType,
          (n) => req.headers[n] as string | undefined,
          req.socket?.remoteAddress,
          () => readLimited(req, limit, opts.readTimeoutMs),
        );
        if ("error" in admitted) {
          res.writeHead(admitted.error.status, admitted.error.headers);
          res.end(admitted.error.body);
          recordRpc(label, admitted.code, start);
          return;
        }
        const encoding = path === PRODUCE_PATH ? rawProduceEncoding(contentType) : null;
        if (encoding !== null) {
          const a = await rawProduce(encoding, contentType, admitted.body);
          res.writeHead(a.status, a.headers);
          res.end(a.body);
          recordRpc(label, a.code, start);
          return;
        }
        const url = `http://${req.headers.host ?? "localhost"}${req.url ?? ""}`;
        const handler = byPath.get(path)!;
        try {
          const out = await handler(
            request(req.httpVersion, req.method ?? "POST", url, req.headers, admitted.body, abort.signal),
          );
          await universalResponseToNodeResponse(out, res);
          recordRpc(label, statusOf(out), start);
        } catch {
          if (!res.headersSent) res.writeHead(500).end();
          else res.destroy();
        }
      })();
    },
  };
}

/** Best-effort code for metrics: grpc-status when present, else from the HTTP status. */
function statusOf(res: UniversalServerResponse): number {
  const s = res.trailer?.get("grpc-status") ?? res.header?.get("grpc-status");
  if (s) return Number(s);
  return res.status === 200 ? 0 : Code.Unknown;
}

/**
 * Reads a whole request body, or "too_large" past `limit` bytes (the rest is
 * discarded), or "timeout" when it has not all arrived within timeoutMs.
 */
function readLimited(
  source: NodeJS.ReadableStream,
  limit: number,
  timeoutMs: number,
): Promise<Uint8Array | "too_large" | "timeout"> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            if (over) return;
            over = true;
            source.off("data", onData);
            resolve("timeout");
          }, timeoutMs)
        : null;
    const onData = (c: Buffer) => {
      if (over) return;
      size += c.byteLength;
      if (size > limit) {
        over = true;
        if (timer !== null) clearTimeout(timer);
        resolve("too_large");
        return;
      }
      chunks.push(c);
    };
    source.on("data", onData);
    source.once("end", () => {
      if (timer !== null) clearTimeout(timer);
      if (!over) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    // A reset stream never ends; answer as empty, the write will find the stream gone.
    source.once("close", () => {
      if (timer !== null) clearTimeout(timer);
      if (!over) resolve(Buffer.concat(chunks, size));
    });
  });
}

function writeAnswerHttp2(
  stream: ServerHttp2Stream,
  a: { status: number; headers: Record<string, string>; body: string | Uint8Array },
): void {
  if (stream.destroyed || stream.headersSent) return;
  const empty = typeof a.body === "string" ? a.body === "" : a.body.byteLength === 0;
  try {
    stream.respond({ ":status": a.status, ...a.headers }, { endStream: empty });
    if (!empty) stream.end(a.body);
  } catch {
    // Reset by the peer meanwhile.
  }
}

function nodeHeaders(h: Headers | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  h?.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

/** Writes a universal response on an HTTP/2 stream, with trailers when the protocol has them (gRPC). */
async function writeUniversalHttp2(stream: ServerHttp2Stream, res: UniversalServerResponse): Promise<void> {
  const it = res.body?.[Symbol.asyncIterator]();
  // Headers go out after the first body chunk so the handler can still set them (as connect-node does).
  let chunk = it ? await it.next() : { done: true as const, value: undefined };
  if (stream.destroyed) return;
  const trailer = res.trailer;
  stream.respond({ ":status": res.status, ...nodeHeaders(res.header) }, { waitForTrailers: trailer !== undefined });
  if (trailer !== undefined) stream.once("wantTrailers", () => stream.sendTrailers(nodeHeaders(trailer)));
  try {
    while (chunk.done !== true) {
      if (stream.destroyed) break;
      if (!stream.write(chunk.value))
        await new Promise<void>((r) => {
          stream.once("drain", r);
          stream.once("close", r);
        });
      chunk = await it!.next();
    }
  } finally {
    await it?.return?.();
  }
  if (!stream.destroyed) stream.end();
}
