// The project's broker client: ConsumerService and IngestService.Produce over
// one plain node:http2 session with hand-written gRPC framing (docs/spec/facts.md: ~5x
// the calls/s of connect-node's client). Used by the worker, the CLI and the
// benches. Errors are ConnectError with the gRPC code from the trailers (or
// from a trailers-only response); a lost session is replaced on the next call.
// Admin and Health calls are not hot: adminClient()/healthClient() give
// connect-node clients for those (same signing).
// Kept free of the server's modules (store, ingest, metrics) so the SDK's
// producer can load it in any Node process.
import * as net from "node:net";
import http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TaskActivationSchema, type TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { Health } from "../gen/grpc/health/v1/health_pb.ts";
import { AdminService } from "../gen/taskplatform/v1/admin_pb.ts";
import { isSigningExempt, signatureHeaders } from "./signing.ts";
import {
  type DecodedStatusUpdate,
  decodeProduceResponse,
  decodeTaskResponse,
  encodeGetTaskRequest,
  encodeProduceRequest,
  encodeSetBatchRequest,
  encodeSetTaskStatusRequest,
} from "../protocol/messages.ts";
import { frameLength, frameMessage, type GrpcStatus, grpcStatusOf } from "./frame.ts";

export interface BrokerClientOptions {
  /** "host:port" of the broker's RPC port. */
  address: string;
  /** Signing secrets; the first signs every call. Empty or absent: unsigned. */
  secrets?: string[];
  /** Per-call deadline, ms (sent as grpc-timeout too). Default 10000. */
  deadlineMs?: number;
}

export interface TaskFilterArgs {
  namespace?: string;
  application?: string;
}

export interface SetStatusArgs {
  id: string;
  /** FAILURE 3, RETRY 4, COMPLETE 5. */
  status: 3 | 4 | 5;
  fetchNext?: TaskFilterArgs;
  maxAttempts?: number;
  delayOnRetry?: bigint;
}

export interface BrokerClient {
  /** The next activation, or null when nothing is claimable (NOT_FOUND). */
  getTask(req: TaskFilterArgs): Promise<TaskActivation | null>;
  /** Reports an outcome; with fetchNext, the next activation or null. */
  setTaskStatus(req: SetStatusArgs): Promise<TaskActivation | null>;
  setBatchStatus(updates: SetStatusArgs[]): Promise<void>;
  produce(activations: Uint8Array[]): Promise<{ accepted: number; duplicates: number; expired: number }>;
  /** getTask returning the stored activation bytes undecoded (benches, proxies). */
  getTaskBytes(req: TaskFilterArgs): Promise<Uint8Array | null>;
  /** setTaskStatus returning the next activation's bytes undecoded. */
  setTaskStatusBytes(req: SetStatusArgs): Promise<Uint8Array | null>;
  close(): Promise<void>;
}

const CONSUMER = "/sentry_protos.taskbroker.v1.ConsumerService/";
const PATH_GET_TASK = CONSUMER + "GetTask";
const PATH_SET_STATUS = CONSUMER + "SetTaskStatus";
const PATH_SET_BATCH = CONSUMER + "SetBatchActivationStatus";
const PATH_PRODUCE = "/taskplatform.v1.IngestService/Produce";

/** gRPC's mapping for responses that carry no grpc-status (HTTP errors from proxies, etc.). */
function codeFromHttpStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.Internal;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.Unimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.Unavailable;
    default:
      return Code.Unknown;
  }
}

/** One peer's HTTP/2 session and the unary gRPC call over it; shared by the broker and worker clients. */
export interface UnaryChannel {
  /** One unary call; resolves with the response message bytes (without the frame prefix). */
  call(path: string, message: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

export function createUnaryChannel(opts: BrokerClientOptions): UnaryChannel {
  const secret = opts.secrets?.[0];
  const deadlineMs = opts.deadlineMs ?? 10_000;
  const authority = `http://${opts.address}`;
  const { hostname, port: portText } = new URL(authority);
  const host = hostname.replace(/^\[(.*)\]$/, "$1"); // [::1] -> ::1 for net.connect
  const port = Number(portText || 80);
  let session: http2.ClientHttp2Session | null = null;
  let closed = false;

  function currentSession(): http2.ClientHttp2Session {
    if (session !== null && !session.closed && !session.destroyed) return session;
    const s = http2.connect(authority, {
      // Nagle off: a call is a few small writes, which must not wait for a delayed ACK.
      createConnection: () => net.connect({ host, port, noDelay: true }),
    });
    s.on("error", () => {}); // surfaced per call via the stream
    const forget = () => {
      if (session === s) session = null;
    };
    s.once("close", forget);
    s.once("goaway", forget); // the broker is draining: new calls go on a new connection
    session = s;
    return s;
  }

  /** One unary call; resolves with the response message bytes (without the frame prefix). */
  function call(path: string, message: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      if (closed) return reject(new ConnectError("client closed", Code.Canceled));
      const headers: http2.OutgoingHttpHeaders = {
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": `${deadlineMs}m`,
      };
      if (secret !== undefined && !isSigningExempt(path))
        Object.assign(headers, signatureHeaders(secret, path, message));
      let stream: http2.ClientHttp2Stream;
      try {
        stream = currentSession().request(headers);
      } catch (err) {
        session = null;
        return reject(new ConnectError(`cannot reach peer at ${opts.address}: ${String(err)}`, Code.Unavailable));
      }
      let settled = false;
      let httpStatus = 0;
      let status: GrpcStatus | null = null;
      let streamError: unknown = null;
      const chunks: Buffer[] = [];
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const timer = setTimeout(() => {
        settle(() =>
          reject(new ConnectError(`deadline of ${deadlineMs} ms exceeded calling ${path}`, Code.DeadlineExceeded)),
        );
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }, deadlineMs);
      const readStatus = (h: http2.IncomingHttpHeaders) => {
        status = grpcStatusOf(h) ?? status;
      };
      stream.on("response", (h) => {
        httpStatus = Number(h[":status"]);
        readStatus(h); // trailers-only responses carry the status here
      });
      stream.on("trailers", readStatus);
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", (err) => {
        streamError = err;
      });
      stream.once("close", () =>
        settle(() => {
          if (status === null) {
            if (httpStatus !== 0 && httpStatus !== 200) {
              return reject(
                new ConnectError(`HTTP ${httpStatus} from ${opts.address}`, codeFromHttpStatus(httpStatus)),
              );
            }
            const reason =
              streamError instanceof Error ? streamError.message : `stream closed (code ${stream.rstCode})`;
            return reject(new ConnectError(`call to ${opts.address}${path} failed: ${reason}`, Code.Unavailable));
          }
          if (status.code !== 0) return reject(new ConnectError(status.message, status.code as Code));
          const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          const len = frameLength(body);
          if (len < 0 || 5 + len > body.byteLength) {
            return reject(new ConnectError("malformed response: missing or truncated message frame", Code.Internal));
          }
          resolve(body.subarray(5, 5 + len));
        }),
      );
      stream.end(frameMessage(message));
    });
  }

  return {
    call,
    async close() {
      closed = true;
      const s = session;
      session = null;
      if (s !== null && !s.closed) await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

export function createBrokerClient(opts: BrokerClientOptions): BrokerClient {
  const channel = createUnaryChannel(opts);
  const call = channel.call;
  const toUpdate = (u: SetStatusArgs): DecodedStatusUpdate => u;
  const decode = (bytes: Uint8Array | null) => (bytes === null ? null : fromBinary(TaskActivationSchema, bytes));

  async function getTaskBytes(req: TaskFilterArgs): Promise<Uint8Array | null> {
    try {
      return decodeTaskResponse(await call(PATH_GET_TASK, encodeGetTaskRequest(req)));
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) return null;
      throw err;
    }
  }
  async function setTaskStatusBytes(req: SetStatusArgs): Promise<Uint8Array | null> {
    return decodeTaskResponse(await call(PATH_SET_STATUS, encodeSetTaskStatusRequest(toUpdate(req))));
  }

  return {
    getTaskBytes,
    setTaskStatusBytes,
    async getTask(req) {
      return decode(await getTaskBytes(req));
    },
    async setTaskStatus(req) {
      return decode(await setTaskStatusBytes(req));
    },
    async setBatchStatus(updates) {
      await call(PATH_SET_BATCH, encodeSetBatchRequest(updates.map(toUpdate)));
    },
    async produce(activations) {
      return decodeProduceResponse(await call(PATH_PRODUCE, encodeProduceRequest(activations)));
    },
    close: () => channel.close(),
  };
}

/** Signs connect-node gRPC calls the way the broker checks them (over the protobuf bytes). */
export function signingInterceptor(secret: string): Interceptor {
  return (next) => async (req) => {
    const path = new URL(req.url).pathname;
    if (!req.stream && !isSigningExempt(path)) {
      for (const [k, v] of Object.entries(signatureHeaders(secret, path, toBinary(req.method.input, req.message))))
        req.header.set(k, v);
    }
    return next(req);
  };
}

/** Sends the admin token as gRPC metadata `authorization: Bearer <token>` (AdminService's authentication). */
function adminTokenInterceptor(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

function grpcTransport(address: string, secrets?: string[], adminToken?: string) {
  const interceptors: Interceptor[] = [];
  if (secrets?.[0] !== undefined) interceptors.push(signingInterceptor(secrets[0]));
  if (adminToken) interceptors.push(adminTokenInterceptor(adminToken));
  return createGrpcTransport({ baseUrl: `http://${address}`, interceptors });
}

/**
 * AdminService over gRPC (connect-node): depths, activations, dead letters.
 * `adminToken`: the broker's TASKBROKER_ADMIN_TOKEN, required when it has one.
 */
export function adminClient(address: string, secrets?: string[], adminToken?: string): Client<typeof AdminService> {
  return createClient(AdminService, grpcTransport(address, secrets, adminToken));
}

/** grpc.health.v1.Health over gRPC (connect-node). */
export function healthClient(address: string): Client<typeof Health> {
  return createClient(Health, grpcTransport(address));
}
