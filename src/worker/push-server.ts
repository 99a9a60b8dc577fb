// The worker's push port: WorkerService.PushTask served as plain gRPC over
// h2c (node:http2, prior knowledge, hand-written framing like the broker's
// fast path). Checks the broker's signature (docs/spec/wire-contract.md
// "Request signing", and our timestamp window when the broker sends one);
// without secrets it serves only when explicitly allowed to run unsigned.
// Decodes the activation and hands it to `accept` with whether the push was
// signed; the answer becomes the gRPC status: OK, RESOURCE_EXHAUSTED
// ("worker busy") or UNAVAILABLE (warming up, stopping). It also serves
// grpc.health.v1.Health (Check and Watch, unsigned, as Sentry's worker does
// for readiness probes) for "" and the WorkerService name, from `health`.
// Nothing else is served.
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as Serving,
  HealthCheckResponseSchema,
} from "../gen/grpc/health/v1/health_pb.ts";
import { type SignaturePolicy, verifyRequestSignature } from "../connect/signing.ts";
import { OK_TRAILERS, framedEmpty, frameLength, frameMessage, trailersOnlyHeaders } from "../connect/frame.ts";
import { decodePushTaskRequest } from "../protocol/messages.ts";
import { PATH_PUSH_TASK } from "../connect/worker-client.ts";
import type { Logger } from "../log.ts";
import { decodeWireActivation, type WireActivation } from "../activation/wire.ts";

/** null: accepted (OK); otherwise the gRPC status to answer with. */
export type PushAnswer = null | { code: Code; message: string };

export const WORKER_SERVICE_NAME = "sentry_protos.taskbroker.v1.WorkerService";
const PATH_HEALTH_CHECK = "/grpc.health.v1.Health/Check";
const PATH_HEALTH_WATCH = "/grpc.health.v1.Health/Watch";

/** What the health service reports: one status for "" and the WorkerService alike. */
export interface PushHealth {
  serving(): boolean;
  /** Calls `fn` on every change; returns the unsubscribe function. */
  onChange(fn: () => void): () => void;
}

/** A settable PushHealth, NOT_SERVING until set(true). */
export function createPushHealth(): PushHealth & { set(serving: boolean): void } {
  let serving = false;
  const listeners = new Set<() => void>();
  return {
    serving: () => serving,
    set(v) {
      if (v === serving) return;
      serving = v;
      for (const fn of [...listeners]) fn();
    },
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/** grpc-timeout header ("8000m", "5S", ...) in ms, or undefined. */
export function grpcTimeoutMs(value: string | undefined): number | undefined {
  const m = value ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!m) return undefined;
  const per = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }[m[2] as "H"]!;
  return Number(m[1]) * per;
}

export interface PushServerOptions {
  port: number;
  host?: string;
  /** How pushes are authenticated; no secrets means unsigned, refused unless allowUnsigned. */
  signing: SignaturePolicy;
  /** Serve unsigned pushes when no secret is configured (anyone who reaches the port may push). */
  allowUnsigned?: boolean;
  /** Largest accepted request, bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /**
   * Decides on a pushed activation: at once, or after waiting for a free slot
   * (never longer than `waitBudgetMs`, the part of the caller's deadline left to use).
   * `callbackUrl` is the pushing broker's host:port ("" when it sent none);
   * `signed` whether the push carried a valid signature.
   */
  accept(
    activation: WireActivation,
    callbackUrl: string,
    waitBudgetMs: number | undefined,
    signed: boolean,
  ): PushAnswer | Promise<PushAnswer>;
  health: PushHealth;
  log: Logger;
}

export interface PushServer {
  port: number;
  /** Stops accepting connections; open streams finish. */
  close(): Promise<void>;
}

export async function startPushServer(o: PushServerOptions): Promise<PushServer> {
  const maxBytes = o.maxMessageBytes ?? 16 * 1024 * 1024;
  const signed = o.signing.secrets.length > 0;
  if (!signed && !o.allowUnsigned) {
    throw new Error(
      "the push port serves signed pushes only: set TASKWORKER_GRPC_SHARED_SECRET (the brokers' secret), or --push-allow-unsigned",
    );
  }
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
    if (path === PATH_HEALTH_CHECK || path === PATH_HEALTH_WATCH) return serveHealth(stream, path);
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
      if (len < 0 || 5 + len > body.byteLength)
        return fail(stream, Code.Internal, "malformed request: missing or truncated message frame");
      const message = body.subarray(5, 5 + len);
      if (signed && !verifyRequestSignature(o.signing, path, message, (n) => headers[n] as string | undefined)) {
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
      // Answer before the caller's deadline: a push it gave up on must not run here as well.
      const timeout = grpcTimeoutMs(headers["grpc-timeout"] as string | undefined);
      const respond = (answer: PushAnswer) => {
        if (answer !== null) return fail(stream, answer.code, answer.message);
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
        stream.end(framedEmpty());
      };
      const answer = o.accept(activation, callbackUrl, timeout === undefined ? undefined : timeout * 0.8, signed);
      if (answer instanceof Promise)
        void answer.then(respond, (err: unknown) => fail(stream, Code.Internal, String(err)));
      else respond(answer);
    });
  });

  const status = (service: string): Serving | null =>
    service !== "" && service !== WORKER_SERVICE_NAME
      ? null
      : o.health.serving()
        ? Serving.SERVING
        : Serving.NOT_SERVING;
  const framedStatus = (s: Serving) =>
    frameMessage(toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status: s })));

  /** Check answers the current status (NOT_FOUND for other services); Watch streams it and every change. */
  function serveHealth(stream: http2.ServerHttp2Stream, path: string) {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => {
      if (chunks.length < 64) chunks.push(c);
    });
    stream.on("end", () => {
      const body = Buffer.concat(chunks);
      const len = frameLength(body);
      let service = "";
      try {
        if (len > 0) service = fromBinary(HealthCheckRequestSchema, body.subarray(5, 5 + len)).service;
      } catch {
        return fail(stream, Code.InvalidArgument, "malformed HealthCheckRequest");
      }
      if (stream.destroyed) return;
      if (path === PATH_HEALTH_CHECK) {
        const s = status(service);
        if (s === null) return fail(stream, Code.NotFound, `unknown service ${JSON.stringify(service)}`);
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
        stream.end(framedStatus(s));
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
      let last: Serving | -1 = -1;
      const send = () => {
        const s = status(service) ?? Serving.SERVICE_UNKNOWN;
        if (s !== last && !stream.destroyed) stream.write(framedStatus((last = s)));
      };
      send();
      const off = o.health.onChange(send);
      watches.add(stream);
      stream.once("close", () => {
        off();
        watches.delete(stream);
      });
    });
  }
  const watches = new Set<http2.ServerHttp2Stream>();

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;
  if (!signed) {
    o.log.warn("push_unsigned", {
      port,
      detail:
        "no TASKWORKER_GRPC_SHARED_SECRET and --push-allow-unsigned: anyone who can reach this port can run tasks here",
    });
  }
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Watch streams never end on their own: finish them (they saw NOT_SERVING first).
        for (const w of watches) if (!w.destroyed) w.end();
        // Idle connections would keep close() waiting: ask every session to finish (GOAWAY; open streams complete).
        for (const s of sessions) s.close();
      }),
  };
}
