// The worker's push port: WorkerService.PushTask served as plain gRPC over
// h2c (node:http2, prior knowledge, hand-written framing like the broker's
// fast path). Checks the broker's `sentry-signature` when secrets are set
// (docs/spec/wire-contract.md "Request signing"), decodes the activation and hands it
// to `accept`, whose answer becomes the gRPC status: OK, RESOURCE_EXHAUSTED
// ("worker busy") or UNAVAILABLE (stopping). Nothing else is served.
import http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import { verifySignature, SIGNATURE_HEADER } from "../connect/signing.ts";
import { OK_TRAILERS, framedEmpty, frameLength, trailersOnlyHeaders } from "../connect/frame.ts";
import { decodePushTaskRequest } from "../protocol/messages.ts";
import { PATH_PUSH_TASK } from "../connect/worker-client.ts";
import type { Logger } from "../log.ts";
import { decodeWireActivation, type WireActivation } from "../activation/wire.ts";

/** null: accepted (OK); otherwise the gRPC status to answer with. */
export type PushAnswer = null | { code: Code; message: string };

export interface PushServerOptions {
  port: number;
  host?: string;
  secrets?: string[];
  /** Largest accepted request, bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /**
   * Decides on a pushed activation synchronously (a slot free or not).
   * `callbackUrl` is the pushing broker's host:port ("" when it sent none).
   */
  accept(activation: WireActivation, callbackUrl: string): PushAnswer;
  log: Logger;
}

export interface PushServer {
  port: number;
  /** Stops accepting connections; open streams finish. */
  close(): Promise<void>;
}

export async function startPushServer(o: PushServerOptions): Promise<PushServer> {
  const maxBytes = o.maxMessageBytes ?? 16 * 1024 * 1024;
  const secrets = o.secrets ?? [];
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  const fail = (stream: http2.ServerHttp2Stream, code: Code, message: string) => {
    if (stream.destroyed || stream.headersSent) return;
    // Trailers-only response: status in the headers, no body.
    stream.respond(trailersOnlyHeaders(code, message), { endStream: true });
  };

  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("error", () => {});
    const path = String(headers[":path"] ?? "");
    if (path !== PATH_PUSH_TASK) {
      stream.resume();
      return fail(stream, Code.Unimplemented, `method ${path} is not served by this worker`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (c: Buffer) => {
      size += c.byteLength;
      if (size <= maxBytes + 5) chunks.push(c);
    });
    stream.on("end", () => {
      if (size > maxBytes + 5) return fail(stream, Code.ResourceExhausted, `request larger than ${maxBytes} bytes`);
      const body = Buffer.concat(chunks);
      const len = frameLength(body);
      if (len < 0 || 5 + len > body.byteLength) return fail(stream, Code.Internal, "malformed request: missing or truncated message frame");
      const message = body.subarray(5, 5 + len);
      if (secrets.length > 0 && !verifySignature(secrets, path, message, headers[SIGNATURE_HEADER] as string | undefined)) {
        return fail(stream, Code.Unauthenticated, "Authentication failed");
      }
      let activation: WireActivation;
      let callbackUrl: string;
      try {
        const req = decodePushTaskRequest(message);
        if (req.task === null) return fail(stream, Code.InvalidArgument, "PushTaskRequest carries no task");
        activation = decodeWireActivation(req.task);
        callbackUrl = req.callbackUrl;
      } catch (err) {
        return fail(stream, Code.InvalidArgument, `undecodable task: ${(err as Error).message}`);
      }
      const answer = o.accept(activation, callbackUrl);
      if (answer !== null) return fail(stream, answer.code, answer.message);
      if (stream.destroyed) return;
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
      stream.end(framedEmpty());
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle connections would keep close() waiting: ask every session to finish (GOAWAY; open streams complete).
        for (const s of sessions) s.close();
      }),
  };
}
