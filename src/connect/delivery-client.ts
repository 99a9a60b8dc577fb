// The worker's end of streaming delivery (taskplatform.v1.DeliveryService
// Deliver, docs/streaming.md): opens the stream on its own HTTP/2 connection
// to one broker, signs the opening message the way the broker checks it,
// then hands each BrokerMessage to the caller and sends the caller's credits
// and results. Raw node:http2 with the shared framing (frame.ts), like the
// unary client. A broker without the service answers UNIMPLEMENTED, which
// `opened` rejects with, so the caller can fall back to the v1 calls.
import * as net from "node:net";
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type DecodedBrokerMessage,
  type DeliveryOpenFields,
  decodeBrokerMessage,
  encodeWorkerMessage,
  type WorkerMessageFields,
} from "../protocol/delivery-messages.ts";
import { FrameReader, frameMessage, type GrpcStatus, grpcStatusOf } from "./frame.ts";
import { signatureHeaders } from "./signing.ts";
import { DELIVER_PATH } from "./delivery.ts";

export interface DeliveryStreamOptions {
  /** "host:port" of the broker's RPC port. */
  address: string;
  /** Signing secrets; the first signs the opening message. */
  secrets?: string[];
  open: DeliveryOpenFields;
  /** Credits granted with the opening message. */
  credit: number;
  /** Results to send with the opening message (kept from a stream that broke). */
  results?: WorkerMessageFields["results"];
  /** Every BrokerMessage, in order. Views into the received bytes: copy what outlives the call. */
  onMessage(message: DecodedBrokerMessage): void;
  /** Once, when the stream is over: null for an OK status, else the error (UNAVAILABLE for a lost connection). */
  onEnd(error: ConnectError | null): void;
  /** Largest BrokerMessage accepted. Default 64 MiB. */
  maxMessageBytes?: number;
  /** A connection that answers no PING for this long is dropped. Default 20 s; 0 = no keepalive. */
  keepaliveMs?: number;
  /** How long the broker may take to accept the stream. Default 10 s. */
  openTimeoutMs?: number;
}

export interface DeliveryStream {
  /** Resolves when the broker accepted the stream; rejects with its status (UNIMPLEMENTED: no such service). */
  readonly opened: Promise<void>;
  /** Sends credits, results and revokes in one message. False once the stream is over (nothing sent). */
  send(message: WorkerMessageFields): boolean;
  /** Half-closes: nothing more to send; the broker ends the stream after committing the results it has. */
  finish(): void;
  /** Cuts the stream and its connection now. */
  destroy(): void;
}

const STREAM_WINDOW_BYTES = 1 << 20;

export function openDeliveryStream(o: DeliveryStreamOptions): DeliveryStream {
  const authority = `http://${o.address}`;
  const { hostname, port: portText } = new URL(authority);
  const host = hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(portText || 80);
  const session = http2.connect(authority, {
    createConnection: () => net.connect({ host, port, noDelay: true }),
    settings: { initialWindowSize: STREAM_WINDOW_BYTES },
  });
  session.on("error", () => {}); // surfaced through the stream

  const first = encodeWorkerMessage({ open: o.open, credit: o.credit, results: o.results });
  const headers: http2.OutgoingHttpHeaders = {
    ":method": "POST",
    ":path": DELIVER_PATH,
    "content-type": "application/grpc",
    te: "trailers",
  };
  const secret = o.secrets?.[0];
  if (secret !== undefined) Object.assign(headers, signatureHeaders(secret, DELIVER_PATH, first));

  let resolveOpened!: () => void;
  let rejectOpened!: (err: ConnectError) => void;
  const opened = new Promise<void>((res, rej) => {
    resolveOpened = res;
    rejectOpened = rej;
  });
  opened.catch(() => {});
  let accepted = false;
  let over = false;
  let status: GrpcStatus | null = null;
  let httpStatus = 0;
  let streamError: unknown = null;
  let keepalive: ReturnType<typeof setInterval> | null = null;

  const stream = session.request(headers, { endStream: false });
  const reader = new FrameReader(o.maxMessageBytes ?? 64 << 20);

  const openTimer = setTimeout(() => {
    streamError = new Error(`the broker did not accept the delivery stream within ${o.openTimeoutMs ?? 10_000} ms`);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    session.destroy();
  }, o.openTimeoutMs ?? 10_000);

  const readStatus = (h: http2.IncomingHttpHeaders) => {
    status = grpcStatusOf(h) ?? status;
  };
  stream.on("response", (h) => {
    httpStatus = Number(h[":status"]);
    readStatus(h);
    if (status === null && httpStatus === 200) {
      accepted = true;
      clearTimeout(openTimer);
      resolveOpened();
    }
  });
  stream.on("trailers", readStatus);
  stream.on("error", (err) => {
    streamError = err;
  });
  stream.on("data", (chunk: Buffer) => {
    for (const m of reader.push(chunk)) {
      let decoded: DecodedBrokerMessage;
      try {
        decoded = decodeBrokerMessage(m);
      } catch (err) {
        streamError = new Error(`malformed BrokerMessage: ${(err as Error).message}`);
        stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
        return;
      }
      o.onMessage(decoded);
    }
    if (reader.tooLarge || reader.compressed) {
      streamError = new Error(reader.tooLarge ? "BrokerMessage larger than the limit" : "compressed BrokerMessage");
      stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    }
  });
  stream.once("close", () => {
    over = true;
    clearTimeout(openTimer);
    if (keepalive !== null) clearInterval(keepalive);
    session.close();
    setImmediate(() => session.destroy());
    let error: ConnectError | null = null;
    if (status === null) {
      const reason =
        httpStatus !== 0 && httpStatus !== 200
          ? `HTTP ${httpStatus}`
          : streamError instanceof Error
            ? streamError.message
            : `stream closed (code ${stream.rstCode})`;
      error = new ConnectError(
        `delivery stream to ${o.address} failed: ${reason}`,
        httpStatus === 404 ? Code.Unimplemented : Code.Unavailable,
      );
    } else if (status.code !== 0) error = new ConnectError(status.message, status.code as Code);
    if (!accepted)
      rejectOpened(error ?? new ConnectError("delivery stream ended before it was accepted", Code.Unavailable));
    o.onEnd(error);
  });

  if ((o.keepaliveMs ?? 20_000) > 0) {
    const every = o.keepaliveMs ?? 20_000;
    let waiting = false;
    keepalive = setInterval(() => {
      if (waiting) {
        streamError = new Error(`no answer to an HTTP/2 PING within ${every} ms`);
        session.destroy();
        return;
      }
      waiting = true;
      try {
        session.ping(() => {
          waiting = false;
        });
      } catch {
        waiting = false;
      }
    }, every);
    keepalive.unref?.();
  }

  stream.write(frameMessage(first));

  return {
    opened,
    send(m) {
      if (over || stream.destroyed || stream.writableEnded) return false;
      stream.write(frameMessage(encodeWorkerMessage(m)));
      return true;
    },
    finish() {
      if (!over && !stream.writableEnded) stream.end();
    },
    destroy() {
      if (!over) stream.close(http2.constants.NGHTTP2_CANCEL);
      session.destroy();
    },
  };
}
