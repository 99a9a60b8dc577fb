// The broker's RPC port: one TCP listener serving gRPC (h2c, prior
// knowledge), Connect and gRPC-Web over HTTP/2 and HTTP/1.1 for
// ConsumerService, IngestService, AdminService and grpc.health.v1.Health,
// plus the streaming DeliveryService and IngestService.ProduceStream (gRPC
// only, delivery.ts and produce-stream.ts).
// The broker's composition root (broker.ts) starts it; the rest of this folder
// serves it, except the clients (client.ts, worker-client.ts) and the pieces
// they share with it (frame.ts, signing.ts).
//
// Layout, chosen by measurement (Bun 1.4.5, 2 cores, h2load -c 8 -m 16,
// 100k GetTask calls with a constant 300-byte answer, same run):
//   bare node:http2 'stream' handler ............. ~38-44k req/s
//   compat 'request' handler, same framing ....... ~28-43k req/s
//   'stream' handler + connect fallback .......... ~44-49k req/s (fast path)
//   connectNodeAdapter alone ..................... ~6.5k req/s
// so hot gRPC calls are answered on the raw stream (fast-grpc.ts) and the
// rest is handed to connect-es's universal handlers (universal.ts).
// Bun's node:http2 does not implement `allowHTTP1` (an HTTP/1.1 request gets
// HTTP/2 frames back), so the listener is a plain net.Server that sniffs the
// HTTP/2 connection preface and hands the socket to an http2 or an http
// server; sniffing costs nothing measurable (~44k req/s bare through it).
// Every connection and RPC passes the port's limits first (limits.ts:
// connections in total and per client, handshake and idle timeouts, RPCs in
// flight; Health/Watch streams in total and per connection), whatever the
// service, so a service added to this port is covered without doing anything.
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { createConnectRouter } from "@connectrpc/connect";
import { ConsumerService } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { Health } from "../gen/grpc/health/v1/health_pb.ts";
import { AdminService } from "../gen/taskplatform/v1/admin_pb.ts";
import { IngestService } from "../gen/taskplatform/v1/ingest_pb.ts";
import type { BrokerConfig } from "../config/broker.ts";
import type { Logger } from "../log.ts";
import type { InflightStore } from "../store/types.ts";
import { type AdminStore, adminServiceImpl } from "./admin.ts";
import { type DispatchStore, type ProduceTarget, createConsumerCore } from "./consumer.ts";
import { DELIVER_PATH, type DeliveryStore, createDeliveryServer } from "./delivery.ts";
import { isFastGrpc, respondGrpcError, serveFastGrpc } from "./fast-grpc.ts";
import { PRODUCE_STREAM_PATH, createProduceStreamServer } from "./produce-stream.ts";
import { createHealthTicker, healthServiceImpl } from "./health.ts";
import { HEALTH_WATCH_PATH, serveHealthWatch } from "./health-watch.ts";
import { createConnectionGuard, sessionSocket } from "./limits.ts";
import { rpcRefusedTotal } from "../metrics.ts";
import { consumerServiceImpl, ingestServiceImpl } from "./services.ts";
import { createUniversalDispatcher } from "./universal.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { adminRpcRefusal } from "../admin/auth.ts";

export interface RpcServer {
  /** The port actually bound (config.grpc_port 0 = ephemeral). */
  port: number;
  /**
   * Stops accepting connections, answers new RPCs UNAVAILABLE, waits up to
   * drainMs for in-flight RPCs, then closes every connection.
   */
  close(drainMs: number): Promise<void>;
}

export interface RpcServerOptions {
  config: Pick<
    BrokerConfig,
    | "grpc_addr"
    | "grpc_port"
    | "grpc_max_message_bytes"
    | "grpc_shared_secret"
    | "delivery_mode"
    | "grpc_signature_max_age_sec"
    | "grpc_signature_require_timestamp"
    | "grpc_request_read_timeout_ms"
    | "grpc_max_connections"
    | "grpc_max_connections_per_client"
    | "grpc_handshake_timeout_ms"
    | "grpc_idle_timeout_ms"
    | "grpc_max_inflight_rpcs"
    | "grpc_max_concurrent_streams"
    | "grpc_max_health_watchers"
    | "admin_token"
  >;
  /** Everything the port's services ask of the store. */
  store: DispatchStore & AdminStore & DeliveryStore & Pick<InflightStore, "writeHealth">;
  ingest: ProduceTarget;
  /** False while upkeep is stalled: the named health service reports NOT_SERVING. */
  isHealthy: () => boolean;
  log: Logger;
}

/** "PRI * HTTP/2.0": every prior-knowledge h2c connection starts with it; no HTTP/1 method starts "PRI". */
function isHttp2Preface(head: Buffer): boolean {
  return head[0] === 0x50 && head[1] === 0x52 && head[2] === 0x49;
}

/** A stream window large enough that a 1000-activation Produce is not throttled by WINDOW_UPDATEs. */
const STREAM_WINDOW_BYTES = 1 << 20;
const HEALTH_WATCH_INTERVAL_MS = 250;
/** Health/Watch streams one connection may hold (a client watches a service or two). */
const WATCHERS_PER_CONNECTION = 8;

const isGrpc = (contentType: string | undefined) =>
  contentType === "application/grpc" || contentType === "application/grpc+proto";

export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  const { config, store, ingest, isHealthy, log } = opts;
  const secrets = config.grpc_shared_secret;
  const maxMessageBytes = config.grpc_max_message_bytes;
  let closing = false;
  const isClosing = () => closing;

  const core = createConsumerCore({ config, store, ingest, log });
  const router = createConnectRouter({ readMaxBytes: maxMessageBytes, writeMaxBytes: maxMessageBytes + 1024 });
  router.service(ConsumerService, consumerServiceImpl(core));
  router.service(IngestService, ingestServiceImpl(core));
  router.service(AdminService, adminServiceImpl(store));
  const isStoreWritable = () => store.writeHealth().ok;
  const healthSource = { isHealthy, isClosing, isStoreWritable, watchIntervalMs: HEALTH_WATCH_INTERVAL_MS };
  const healthTicker = createHealthTicker(healthSource);
  router.service(Health, healthServiceImpl(healthSource, healthTicker));
  const signing = {
    secrets,
    maxAgeSec: config.grpc_signature_max_age_sec,
    requireTimestamp: config.grpc_signature_require_timestamp,
  };
  const readTimeoutMs = config.grpc_request_read_timeout_ms;
  const universal = createUniversalDispatcher({
    router,
    signing,
    maxMessageBytes,
    readTimeoutMs,
    isClosing,
    produce: (activations) => core.produce(activations),
    authorizeAdmin: (header, remoteAddress) => {
      const refusal = adminRpcRefusal(config.admin_token, header("authorization"), remoteAddress);
      if (refusal === null) return null;
      return new ConnectError(
        refusal.message,
        refusal.code === "unauthenticated" ? Code.Unauthenticated : Code.PermissionDenied,
      );
    },
  });
  const fast = { core, signing, maxMessageBytes, readTimeoutMs };
  const delivery = createDeliveryServer({ core, store, signing, maxMessageBytes, isClosing, log });
  const produceStreams = createProduceStreamServer({ core, signing, maxMessageBytes, isClosing, log });

  // In-flight RPCs, counted so close() can wait for them.
  let inflight = 0;
  let drained: (() => void) | null = null;
  const done = () => {
    inflight--;
    if (inflight === 0 && drained) drained();
  };

  const guard = createConnectionGuard(
    {
      maxConnections: config.grpc_max_connections,
      maxConnectionsPerClient: config.grpc_max_connections_per_client,
      handshakeTimeoutMs: config.grpc_handshake_timeout_ms,
      idleTimeoutMs: config.grpc_idle_timeout_ms,
      maxInflightRpcs: config.grpc_max_inflight_rpcs,
    },
    log,
  );
  // Health/Watch streams: in total and per connection (each is long-lived).
  let watchers = 0;
  const watchersBySession = new WeakMap<object, number>();

  const h2 = http2.createServer({
    settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: config.grpc_max_concurrent_streams },
    maxSessionMemory: 64,
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", () => {}); // a broken connection must never take the process down
    // The client preface ends with its SETTINGS: the connection speaks HTTP/2.
    const socket = session.socket as net.Socket;
    session.once("remoteSettings", () => guard.established(socket, () => session.close()));
    // Not session.setLocalWindowSize(): under Bun 1.4.5 it stalls every body larger than the
    // stream window (test/rpc.test.ts "messages of 10 MiB").
  });
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const session = stream.session;
    const ticket = guard.rpcStarted(sessionSocket(session), () => session?.close());
    if (ticket === null) {
      stream.on("error", () => {});
      stream.resume();
      respondGrpcError(stream, Code.ResourceExhausted, "too many RPCs in flight on this broker; retry later");
      return;
    }
    inflight++;
    stream.once("close", () => {
      guard.rpcEnded(ticket);
      done();
    });
    const path = headers[":path"];
    const contentType = headers["content-type"];
    if (path === HEALTH_WATCH_PATH && session) {
      const mine = watchersBySession.get(session) ?? 0;
      if (watchers >= config.grpc_max_health_watchers || mine >= WATCHERS_PER_CONNECTION) {
        rpcRefusedTotal.inc({ reason: "health_watchers" });
        stream.on("error", () => {});
        stream.resume();
        const why =
          mine >= WATCHERS_PER_CONNECTION
            ? `${WATCHERS_PER_CONNECTION} on this connection`
            : `${watchers} on this broker`;
        respondGrpcError(
          stream,
          Code.ResourceExhausted,
          `too many Health/Watch streams (${why}); use Check or fewer watchers`,
        );
        return;
      }
      watchers++;
      watchersBySession.set(session, mine + 1);
      stream.once("close", () => {
        watchers--;
        watchersBySession.set(session, (watchersBySession.get(session) ?? 1) - 1);
      });
      if (isGrpc(contentType) && !closing) return serveHealthWatch(stream, healthSource, healthTicker);
      return universal.serveHttp2(stream, headers);
    }
    if (path === DELIVER_PATH && isGrpc(contentType)) {
      delivery.serve(stream, headers);
    } else if (path === PRODUCE_STREAM_PATH && isGrpc(contentType)) {
      produceStreams.serve(stream, headers);
    } else if (isFastGrpc(path, contentType)) {
      if (closing) {
        stream.on("error", () => {});
        respondGrpcError(stream, Code.Unavailable, "broker is shutting down");
        return;
      }
      serveFastGrpc(stream, headers, fast);
    } else {
      universal.serveHttp2(stream, headers);
    }
  });

  const h1 = http.createServer((req, res) => {
    const socket = req.socket as net.Socket;
    // A complete request head: the connection speaks HTTP/1.1. Idle keep-alive connections are closed.
    guard.established(socket, () => socket.destroy());
    const ticket = guard.rpcStarted(socket, () => socket.destroy());
    if (ticket === null) {
      res.writeHead(429, { "content-type": "application/json", "retry-after": "1" });
      res.end(
        JSON.stringify({ code: "resource_exhausted", message: "too many RPCs in flight on this broker; retry later" }),
      );
      return;
    }
    inflight++;
    res.once("close", () => {
      guard.rpcEnded(ticket);
      done();
    });
    universal.serveHttp1(req, res);
  });
  h1.on("clientError", (_err, socket) => socket.destroy());

  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    socket.on("error", () => {});
    if (closing || !guard.admit(socket)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    // Small writes (headers, message, trailers) must not wait for the peer's
    // delayed ACK: with Nagle on, ~1% of calls stalled 10-40 ms at 500 calls/s.
    socket.setNoDelay(true);
    socket.once("close", () => sockets.delete(socket));
    let head: Buffer = Buffer.alloc(0);
    // A connection that never says which protocol it speaks is cut by the guard's handshake timeout.
    const sniff = (chunk: Buffer) => {
      head = head.byteLength === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head.byteLength < 3) return;
      socket.off("data", sniff);
      socket.pause();
      socket.unshift(head);
      (isHttp2Preface(head) ? h2 : h1).emit("connection", socket);
      socket.resume();
    };
    socket.on("data", sniff);
  });

  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(config.grpc_port, config.grpc_addr, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const address = listener.address();
  const port = typeof address === "object" && address !== null ? address.port : config.grpc_port;
  log.info("rpc_listening", {
    host: config.grpc_addr,
    port,
    signing: secrets.length > 0,
    max_connections: guard.limits.maxConnections,
    max_connections_per_client: guard.limits.maxConnectionsPerClient,
  });
  if (secrets.length === 0) {
    // Upstream's default, kept for drop-in (workers in other containers connect here), but said out loud.
    log.warn("rpc_unsigned", {
      host: config.grpc_addr,
      port,
      detail:
        "TASKBROKER_GRPC_SHARED_SECRET is not set: anyone who can reach this port can produce, claim and complete activations and read their parameters",
    });
  }

  let closed: Promise<void> | null = null;
  return {
    port,
    close(drainMs) {
      closed ??= (async () => {
        closing = true;
        // Delivery streams live as long as their workers: they stop sending now and end once what they sent is reported.
        delivery.drain();
        // Produce streams answer what they received, refuse the rest with UNAVAILABLE, and end.
        produceStreams.drain();
        const stopped = new Promise<void>((r) => listener.close(() => r()));
        if (inflight > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, drainMs);
            drained = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        if (inflight > 0) log.warn("rpc_drain_timeout", { inflight, drain_ms: drainMs });
        guard.stop();
        for (const s of sessions) s.close();
        // Give GOAWAY a moment to reach clients, then cut whatever is left.
        await new Promise((r) => setTimeout(r, 50));
        for (const s of sessions) s.destroy();
        for (const s of sockets) s.destroy();
        await stopped;
        log.info("rpc_closed", { port });
      })();
      return closed;
    },
  };
}
