// Clients for RPC tests that are NOT the project's own client: @grpc/grpc-js
// (an unrelated gRPC implementation), raw node:http2 framing for bodies no
// library would send, and connect-node transports for Connect and gRPC-Web.
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary, toJsonString, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { signRequest } from "../../src/connect/signing.ts";

export const GET_TASK = "/sentry_protos.taskbroker.v1.ConsumerService/GetTask";
export const SET_STATUS = "/sentry_protos.taskbroker.v1.ConsumerService/SetTaskStatus";
export const SET_BATCH = "/sentry_protos.taskbroker.v1.ConsumerService/SetBatchActivationStatus";
export const PRODUCE = "/taskplatform.v1.IngestService/Produce";
export const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
export const HEALTH_WATCH = "/grpc.health.v1.Health/Watch";

export function encode<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

/** A valid activation's bytes. */
export function activation(id: string, over: Record<string, unknown> = {}): Buffer {
  const init = {
    id,
    namespace: "ns",
    taskname: "demo.task",
    application: "app",
    processingDeadlineDuration: 30n,
    ...over,
  } as MessageInitShape<typeof TaskActivationSchema>;
  return encode(TaskActivationSchema, init);
}

export interface UnaryResult {
  code: number;
  details: string;
  response: Buffer | undefined;
}

const ident = (b: Buffer) => b;

/** A grpc-js client speaking raw message bytes (no codegen: the wire contract is what is tested). */
export function grpcJsClient(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
  });
}

export function unary(
  client: grpc.Client,
  path: string,
  request: Uint8Array,
  metadata: Record<string, string> = {},
): Promise<UnaryResult> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      ident,
      ident,
      Buffer.from(request),
      md,
      { deadline: Date.now() + 20_000 },
      (err, res) => {
        if (err) resolve({ code: err.code, details: err.details, response: undefined });
        else resolve({ code: 0, details: "", response: res });
      },
    );
  });
}

/** `sentry-signature` metadata for a request. */
export function signed(secret: string, path: string, message: Uint8Array): Record<string, string> {
  return { "sentry-signature": signRequest(secret, path, message) };
}

export interface RawResult {
  httpStatus: number;
  grpcStatus: number | null;
  grpcMessage: string;
  body: Buffer;
}

/** One request over a fresh node:http2 session with an arbitrary body (garbage, short, oversized...). */
export function rawCall(
  address: string,
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const out: RawResult = { httpStatus: 0, grpcStatus: null, grpcMessage: "", body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    const status = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) {
        out.grpcStatus = Number(h["grpc-status"]);
        out.grpcMessage = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    stream.on("response", (h) => {
      out.httpStatus = Number(h[":status"]);
      status(h);
    });
    stream.on("trailers", status);
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => {});
    stream.on("close", () => {
      out.body = Buffer.concat(chunks);
      session.close();
      resolve(out);
    });
    stream.end(body);
  });
}

/**
 * ProduceRequest bytes built by hand (field 1, each activation's bytes unchanged), so a test can
 * send bytes that no encoder would: undecodable activations, batches past the limits.
 */
export function produceRequest(activations: readonly Uint8Array[]): Buffer {
  const varint = (n: number) => {
    const out: number[] = [];
    for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  return Buffer.concat(activations.map((a) => Buffer.concat([Buffer.from([0x0a, ...varint(a.byteLength)]), a])));
}

/** gRPC frame: flag 0, 4-byte big-endian length, message. */
export function frame(message: Uint8Array, flag = 0): Buffer {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = flag;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
}

/**
 * Signs Connect / gRPC-Web calls over the serialized message bytes the
 * transport sends: protobuf binary, or for Connect JSON the JSON text.
 */
function signingInterceptor(secret: string, json: boolean): Interceptor {
  return (next) => async (req) => {
    const path = new URL(req.url).pathname;
    if (req.stream) return next(req);
    const bytes = json
      ? new TextEncoder().encode(toJsonString(req.method.input, req.message))
      : toBinary(req.method.input, req.message);
    req.header.set("sentry-signature", signRequest(secret, path, bytes));
    return next(req);
  };
}

export type ConnectFlavour = "connect-json" | "connect-binary" | "grpc-web";

/** A connect-es client for a service over the Connect protocol (JSON or binary) or gRPC-Web, HTTP/1.1 or 2. */
export function connectClient<S extends DescService>(
  service: S,
  address: string,
  flavour: ConnectFlavour,
  opts: { httpVersion?: "1.1" | "2"; secret?: string } = {},
): Client<S> {
  const base = {
    baseUrl: `http://${address}`,
    httpVersion: opts.httpVersion ?? "2",
    interceptors: opts.secret !== undefined ? [signingInterceptor(opts.secret, flavour === "connect-json")] : [],
  } as const;
  const transport =
    flavour === "grpc-web"
      ? createGrpcWebTransport({ ...base, useBinaryFormat: true })
      : createConnectTransport({ ...base, useBinaryFormat: flavour === "connect-binary" });
  return createClient(service, transport);
}
