// Everything that is not the fast gRPC path: Connect (binary and JSON),
// gRPC-Web, gRPC for Health/Admin, over HTTP/2 streams and HTTP/1.1. Requests
// are handed to connect-es's universal handlers (the same machinery as
// connectNodeAdapter), but the body is read here first so the signature can
// be checked over the exact bytes the client sent and the size limit applies
// before anything is decoded.
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Code } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { methodName, recordRpc } from "./rpc-metrics.ts";
import { SIGNATURE_HEADER, isSigningExempt, signedMessageBytes, verifySignature } from "./signing.ts";
import { grpcStatusFields } from "./frame.ts";

export interface UniversalOptions {
  router: ConnectRouter;
  secrets: readonly string[];
  maxMessageBytes: number;
  /** True once close() began: new RPCs are answered UNAVAILABLE. */
  isClosing: () => boolean;
}

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
    readBody: () => Promise<Uint8Array | "too_large">,
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
    if (opts.secrets.length > 0 && !isSigningExempt(path)) {
      const raw = contentType.startsWith("application/grpc-web-text")
        ? Buffer.from(Buffer.from(body).toString("latin1"), "base64")
        : body;
      const message = signedMessageBytes(contentType, raw);
      if (message === null || !verifySignature(opts.secrets, path, message, header(SIGNATURE_HEADER))) {
        return reject(Code.Unauthenticated, "Authentication failed");
      }
    }
    return { body };
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
      void (async () => {
        const admitted = await admit(path, contentType, (n) => headers[n] as string | undefined, () =>
          readLimited(stream, limit),
        );
        if ("error" in admitted) {
          writeAnswerHttp2(stream, admitted.error);
          recordRpc(methodName(path), admitted.code, start);
          return;
        }
        const url = `http://${headers[":authority"] ?? "localhost"}${headers[":path"] ?? ""}`;
        const handler = byPath.get(path)!;
        try {
          const res = await handler(request("2.0", headers[":method"] ?? "POST", url, headers, admitted.body, abort.signal));
          await writeUniversalHttp2(stream, res);
          recordRpc(methodName(path), statusOf(res), start);
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
      void (async () => {
        const admitted = await admit(path, contentType, (n) => req.headers[n] as string | undefined, () =>
          readLimited(req, limit),
        );
        if ("error" in admitted) {
          res.writeHead(admitted.error.status, admitted.error.headers);
          res.end(admitted.error.body);
          recordRpc(methodName(path), admitted.code, start);
          return;
        }
        const url = `http://${req.headers.host ?? "localhost"}${req.url ?? ""}`;
        const handler = byPath.get(path)!;
        try {
          const out = await handler(request(req.httpVersion, req.method ?? "POST", url, req.headers, admitted.body, abort.signal));
          await universalResponseToNodeResponse(out, res);
          recordRpc(methodName(path), statusOf(out), start);
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

/** Reads a whole request body, or "too_large" past `limit` bytes (the rest is discarded). */
function readLimited(source: NodeJS.ReadableStream, limit: number): Promise<Uint8Array | "too_large"> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const onData = (c: Buffer) => {
      if (over) return;
      size += c.byteLength;
      if (size > limit) {
        over = true;
        resolve("too_large");
        return;
      }
      chunks.push(c);
    };
    source.on("data", onData);
    source.once("end", () => {
      if (!over) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    // A reset stream never ends; answer as empty, the write will find the stream gone.
    source.once("close", () => {
      if (!over) resolve(Buffer.concat(chunks, size));
    });
  });
}

function writeAnswerHttp2(stream: ServerHttp2Stream, a: ErrorAnswer): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond({ ":status": a.status, ...a.headers }, { endStream: a.body === "" });
    if (a.body !== "") stream.end(a.body);
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
      if (!stream.write(chunk.value)) await new Promise<void>((r) => {
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
