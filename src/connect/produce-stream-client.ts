// The producer's end of IngestService.ProduceStream (proto/taskplatform/v1/
// ingest.proto, docs/streaming.md "Producing over a stream"): one long-lived
// stream on its own HTTP/2 connection to one broker; each produce() sends a
// batch as one message, signed on its own, and resolves with the broker's
// answer, which comes in order. Several batches may be in flight. A broker
// without the method answers UNIMPLEMENTED (the caller falls back to the
// unary Produce); a stream that breaks rejects every unanswered batch with
// UNAVAILABLE, and the caller sends them again (activation ids make a batch
// the broker did store count as duplicates). Raw node:http2 with the shared
// framing (frame.ts), like the other clients; free of the server's modules.
import * as net from "node:net";
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeProduceRequest } from "../protocol/messages.ts";
import {
  PRODUCE_STREAM_PATH,
  type ProduceCounts,
  decodeProduceStreamResponse,
  encodeProduceStreamRequest,
} from "../protocol/ingest-stream-messages.ts";
import { FrameReader, frameMessage, type GrpcStatus, grpcStatusOf } from "./frame.ts";
import { signTimestamped } from "./signing.ts";

export interface ProduceStreamOptions {
  /** "host:port" of the broker's RPC port. */
  address: string;
  /** Signing secrets; the first signs every message. */
  secrets?: string[];
  /** A batch unanswered this long breaks the stream (its batches fail with DEADLINE_EXCEEDED). Default 10 s. */
  deadlineMs?: number;
  /** A connection that answers no PING for this long is dropped. Default 20 s; 0 = no keepalive. */
  keepaliveMs?: number;
}

export interface ProduceStream {
  /** Sends one batch; resolves once the broker stored it, rejects with its refusal or the stream's end. */
  produce(activations: Uint8Array[]): Promise<ProduceCounts>;
  /** True once the broker answered the stream's headers (it has the method). */
  readonly accepted: boolean;
  /** True once the stream is over: produce() rejects at once. */
  readonly over: boolean;
  /** Resolves when the stream is over: null when the broker ended it OK, else why it ended. */
  readonly ended: Promise<ConnectError | null>;
  /** Half-closes and resolves once every batch sent was answered (or the stream ended). */
  close(): Promise<unknown>;
  /** Cuts the stream and its connection now; unanswered batches reject. */
  destroy(): void;
}

interface Waiting {
  resolve(counts: ProduceCounts): void;
  reject(err: ConnectError): void;
  sentAt: number;
}

export function openProduceStream(o: ProduceStreamOptions): ProduceStream {
  const authority = `http://${o.address}`;
  const { hostname, port: portText } = new URL(authority);
  const host = hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(portText || 80);
  const deadlineMs = o.deadlineMs ?? 10_000;
  const secret = o.secrets?.[0];
  const session = http2.connect(authority, {
    createConnection: () => net.connect({ host, port, noDelay: true }),
  });
  session.on("error", () => {}); // surfaced through the stream

  const waiting: Waiting[] = [];
  let head = 0; // waiting[head] is the oldest unanswered batch (a cursor, not shift(), on the hot path)
  let accepted = false;
  let over = false;
  let status: GrpcStatus | null = null;
  let httpStatus = 0;
  let streamError: unknown = null;
  let ended!: (why: ConnectError | null) => void;
  const endedPromise = new Promise<ConnectError | null>((r) => (ended = r));

  const stream = session.request(
    { ":method": "POST", ":path": PRODUCE_STREAM_PATH, "content-type": "application/grpc", te: "trailers" },
    { endStream: false },
  );
  const reader = new FrameReader(1 << 20);
  const readStatus = (h: http2.IncomingHttpHeaders) => {
    status = grpcStatusOf(h) ?? status;
  };
  stream.on("response", (h) => {
    httpStatus = Number(h[":status"]);
    readStatus(h);
    if (status === null && httpStatus === 200) accepted = true;
  });
  stream.on("trailers", readStatus);
  stream.on("error", (err) => {
    streamError = err;
  });
  stream.on("data", (chunk: Buffer) => {
    for (const m of reader.push(chunk)) {
      const w = waiting[head];
      if (w === undefined) {
        streamError = new Error("the broker answered a batch that was not sent");
        stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
        return;
      }
      let answer: ReturnType<typeof decodeProduceStreamResponse>;
      try {
        answer = decodeProduceStreamResponse(m);
      } catch (err) {
        streamError = new Error(`malformed ProduceStreamResponse: ${(err as Error).message}`);
        stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
        return;
      }
      waiting[head++] = undefined as unknown as Waiting;
      if (head === waiting.length) {
        waiting.length = 0;
        head = 0;
      }
      if (answer.ok) w.resolve(answer.counts);
      else w.reject(new ConnectError(answer.message, answer.code as Code));
    }
    if (reader.tooLarge || reader.compressed) {
      streamError = new Error("unexpected ProduceStreamResponse framing");
      stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    }
  });

  // One timer per stream, not per batch: the oldest unanswered batch decides.
  const watchdog = setInterval(
    () => {
      const w = waiting[head];
      if (w !== undefined && performance.now() - w.sentAt > deadlineMs) {
        streamError = new ConnectError(
          `no answer to a batch within ${deadlineMs} ms on the produce stream to ${o.address}`,
          Code.DeadlineExceeded,
        );
        stream.close(http2.constants.NGHTTP2_CANCEL);
        session.destroy();
      }
    },
    Math.min(1000, deadlineMs),
  );
  watchdog.unref?.();

  let keepalive: ReturnType<typeof setInterval> | null = null;
  if ((o.keepaliveMs ?? 20_000) > 0) {
    const every = o.keepaliveMs ?? 20_000;
    let pinged = false;
    keepalive = setInterval(() => {
      if (pinged) {
        streamError = new Error(`no answer to an HTTP/2 PING within ${every} ms`);
        session.destroy();
        return;
      }
      pinged = true;
      try {
        session.ping(() => {
          pinged = false;
        });
      } catch {
        pinged = false;
      }
    }, every);
    keepalive.unref?.();
  }

  stream.once("close", () => {
    over = true;
    clearInterval(watchdog);
    if (keepalive !== null) clearInterval(keepalive);
    session.close();
    setImmediate(() => session.destroy());
    let error: ConnectError;
    if (streamError instanceof ConnectError) error = streamError;
    else if (status !== null && status.code !== 0) error = new ConnectError(status.message, status.code as Code);
    else {
      const reason =
        status !== null
          ? "the broker ended the stream"
          : httpStatus !== 0 && httpStatus !== 200
            ? `HTTP ${httpStatus}`
            : streamError instanceof Error
              ? streamError.message
              : `stream closed (code ${stream.rstCode})`;
      error = new ConnectError(
        `produce stream to ${o.address} ended before answering this batch: ${reason}`,
        httpStatus === 404 ? Code.Unimplemented : Code.Unavailable,
      );
    }
    for (let i = head; i < waiting.length; i++) waiting[i]!.reject(error);
    waiting.length = 0;
    head = 0;
    ended(status !== null && status.code === 0 && !(streamError instanceof ConnectError) ? null : error);
  });

  return {
    produce(activations) {
      if (over || stream.destroyed || stream.writableEnded) {
        return Promise.reject(new ConnectError(`produce stream to ${o.address} is closed`, Code.Unavailable));
      }
      const request = encodeProduceRequest(activations);
      let message: Uint8Array;
      if (secret !== undefined) {
        const timestamp = Math.floor(Date.now() / 1000);
        const signature = signTimestamped(secret, String(timestamp), PRODUCE_STREAM_PATH, request);
        message = encodeProduceStreamRequest({ request, timestamp, signature });
      } else message = encodeProduceStreamRequest({ request });
      return new Promise<ProduceCounts>((resolve, reject) => {
        waiting.push({ resolve, reject, sentAt: performance.now() });
        stream.write(frameMessage(message));
      });
    },
    get accepted() {
      return accepted;
    },
    get over() {
      return over;
    },
    ended: endedPromise,
    close() {
      if (!over && !stream.writableEnded) {
        stream.end();
        // Everything was answered before close(); a broker that does not end the stream soon is cut off.
        const cut = setTimeout(() => session.destroy(), 5000);
        cut.unref?.();
        void endedPromise.then(() => clearTimeout(cut));
      }
      return endedPromise;
    },
    destroy() {
      if (!over) stream.close(http2.constants.NGHTTP2_CANCEL);
      session.destroy();
    },
  };
}
