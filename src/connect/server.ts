// The broker's RPC port: one TCP listener serving gRPC (h2c, prior
// knowledge), Connect and gRPC-Web over HTTP/2 and HTTP/1.1 for
// ConsumerService, IngestService, AdminService and grpc.health.v1.Health,
// plus the streaming DeliveryService (gRPC only, delivery.ts).
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
import { healthServiceImpl } from "./health.ts";
import { consumerServiceImpl, ingestServiceImpl } from "./services.ts";
import { createUniversalDispatcher } from "./universal.ts";
import { Code } from "@connectrpc/connect";

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
  config: Pick<BrokerConfig, "grpc_addr" | "grpc_port" | "grpc_max_message_bytes" | "grpc_shared_secret" | "delivery_mode">;
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
const SNIFF_TIMEOUT_MS = 10_000;

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
  router.service(Health, healthServiceImpl({ isHealthy, isClosing, isStoreWritable, watchIntervalMs: HEALTH_WATCH_INTERVAL_MS }));
  const universal = createUniversalDispatcher({ router, secrets, maxMessageBytes, isClosing });
  const fast = { core, secrets, maxMessageBytes };
  const delivery = createDeliveryServer({ core, store, secrets, maxMessageBytes, isClosing, log });

  // In-flight RPCs, counted so close() can wait for them.
  let inflight = 0;
  let drained: (() => void) | null = null;
  const done = () => {
    inflight--;
    if (inflight === 0 && drained) drained();
  };

  const h2 = http2.createServer({
    settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: 1000 },
    maxSessionMemory: 64,
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", () => {}); // a broken connection must never take the process down
    // Not session.setLocalWindowSize(): under Bun 1.4.5 it stalls every body larger than the
    // stream window (test/rpc.test.ts "messages of 10 MiB").
  });
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    inflight++;
    stream.once("close", done);
    const path = headers[":path"];
    const contentType = headers["content-type"];
    if (path === DELIVER_PATH && (contentType === "application/grpc" || contentType === "application/grpc+proto")) {
      delivery.serve(stream, headers);
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
    inflight++;
    res.once("close", done);
    universal.serveHttp1(req, res);
  });
  h1.on("clientError", (_err, socket) => socket.destroy());

  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    // Small writes (headers, message, trailers) must not wait for the peer's
    // delayed ACK: with Nagle on, ~1% of calls stalled 10-40 ms at 500 calls/s.
    socket.setNoDelay(true);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let head: Buffer = Buffer.alloc(0);
    // A connection that never says which protocol it speaks is not kept forever.
    socket.setTimeout(SNIFF_TIMEOUT_MS, () => socket.destroy());
    const sniff = (chunk: Buffer) => {
      head = head.byteLength === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head.byteLength < 3) return;
      socket.setTimeout(0);
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
  log.info("rpc_listening", { host: config.grpc_addr, port, signing: secrets.length > 0 });

  let closed: Promise<void> | null = null;
  return {
    port,
    close(drainMs) {
      closed ??= (async () => {
        closing = true;
        // Delivery streams live as long as their workers: they stop sending now and end once what they sent is reported.
        delivery.drain();
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
