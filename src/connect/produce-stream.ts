// The broker's side of IngestService.ProduceStream (proto/taskplatform/v1/
// ingest.proto, docs/streaming.md "Producing over a stream"): one long-lived
// gRPC stream per producer connection, each message one batch of
// activations, answered in order once it is durable or refused. It exists
// because a unary Produce costs a new HTTP/2 stream per call: at 500 calls/s
// that was ~30 KB of garbage and ~0.5 ms of CPU per call in the broker (Bun
// 1.4.5, bench/e2e.ts), and the eden collections it caused (2-4 ms each,
// every ~0.7 s) were most of the broker's p99 latency. On the stream a batch
// costs a frame and the ingest itself.
// Every message is signed on its own (the unary call's timestamped
// signature, carried in the message), so nothing but a holder of a secret
// can add activations to a stream. Status codes as for Produce, from the
// same ConsumerCore; a refused batch is answered, it does not end the stream.
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import { MalformedMessage, decodeProduceRequest } from "../protocol/messages.ts";
import {
  PRODUCE_STREAM_PATH,
  type DecodedProduceStreamRequest,
  type ProduceStreamOutcome,
  decodeProduceStreamRequest,
  encodeProduceStreamResponse,
} from "../protocol/ingest-stream-messages.ts";
import type { ConsumerCore } from "./consumer.ts";
import { FrameReader, frameMessage, grpcStatusFields, trailersOnlyHeaders } from "./frame.ts";
import { recordRpc } from "./rpc-metrics.ts";
import {
  type SignaturePolicy,
  TIMESTAMP_HEADER,
  TIMESTAMPED_SIGNATURE_HEADER,
  verifyRequestSignature,
} from "./signing.ts";

export { PRODUCE_STREAM_PATH };

/** Batches being stored at once per stream; past it the stream is not read until half of them are answered. */
const MAX_INFLIGHT = 32;
const METHOD = "ProduceStream";

export interface ProduceStreamOptions {
  core: Pick<ConsumerCore, "produce">;
  /** How each message's signature is checked (signing.ts; no secrets: off). */
  signing: SignaturePolicy;
  maxMessageBytes: number;
  /** True once the RPC server began closing: new streams are refused with UNAVAILABLE. */
  isClosing: () => boolean;
  log: Logger;
}

export interface ProduceStreamServer {
  /** Serves one ProduceStream (gRPC content type). Never throws. */
  serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void;
  /** Shutdown: batches received from now on are refused with UNAVAILABLE; each stream ends once it answered the rest. */
  drain(): void;
  /** Streams open now. */
  open(): number;
}

/** One answer owed, in arrival order: null until its batch is stored or refused. */
interface Slot {
  frame: Buffer | null;
}

class ProduceSession {
  private readonly owed: Slot[] = [];
  private inflight = 0;
  private paused = false;
  private ended = false;
  /** The producer half-closed, or the broker drains: end once every answer is out. */
  private finishing = false;
  private draining = false;
  private trailers: Record<string, string> = { "grpc-status": "0" };

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly opts: ProduceStreamOptions,
    private readonly sessions: Set<ProduceSession>,
  ) {}

  start(): void {
    const { stream, opts } = this;
    stream.on("error", () => {}); // resets by the peer surface here; 'close' cleans up
    stream.once("close", () => this.closed());
    try {
      // Accepted at once: a producer learns the broker has the stream before its first batch is stored.
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => {
        stream.sendTrailers(this.trailers);
        if (!stream.readableEnded) setImmediate(() => stream.close());
      });
    } catch {
      return this.closed();
    }
    this.sessions.add(this);
    const reader = new FrameReader(opts.maxMessageBytes);
    stream.on("data", (chunk: Buffer) => {
      if (this.ended) return;
      for (const m of reader.push(chunk)) {
        if (this.ended) return;
        this.onMessage(m);
      }
      if (reader.tooLarge) {
        this.end(
          Code.ResourceExhausted,
          `request message larger than the limit of ${opts.maxMessageBytes} bytes (TASKBROKER_GRPC_MAX_MESSAGE_BYTES)`,
        );
      } else if (reader.compressed) {
        this.end(
          Code.Unimplemented,
          "compressed request messages are not supported by this broker; send uncompressed messages (grpc-encoding: identity)",
        );
      }
    });
    stream.once("end", () => {
      this.finishing = true;
      this.maybeFinish();
    });
  }

  private onMessage(bytes: Buffer): void {
    const start = performance.now();
    let msg: DecodedProduceStreamRequest;
    try {
      msg = decodeProduceStreamRequest(bytes);
    } catch (err) {
      if (!(err instanceof MalformedMessage)) throw err;
      recordRpc(METHOD, Code.Internal, start);
      return this.end(Code.Internal, `cannot decode request message: ${err.message}`);
    }
    const { signing } = this.opts;
    if (signing.secrets.length > 0) {
      const header = (name: string) =>
        name === TIMESTAMP_HEADER && msg.timestamp > 0
          ? String(msg.timestamp)
          : name === TIMESTAMPED_SIGNATURE_HEADER && msg.signature !== ""
            ? msg.signature
            : undefined;
      if (!verifyRequestSignature(signing, PRODUCE_STREAM_PATH, msg.request, header)) {
        recordRpc(METHOD, Code.Unauthenticated, start);
        return this.end(Code.Unauthenticated, "Authentication failed");
      }
    }
    const slot: Slot = { frame: null };
    this.owed.push(slot);
    const settle = (outcome: ProduceStreamOutcome) => {
      slot.frame = frameMessage(encodeProduceStreamResponse(outcome));
      recordRpc(METHOD, outcome.ok ? 0 : outcome.code, start);
      this.flush();
    };
    if (this.draining) return settle({ ok: false, code: Code.Unavailable, message: "broker is shutting down" });
    let activations: Uint8Array[];
    try {
      activations = decodeProduceRequest(msg.request);
    } catch (err) {
      if (!(err instanceof MalformedMessage)) throw err;
      return settle({ ok: false, code: Code.Internal, message: `cannot decode ProduceRequest: ${err.message}` });
    }
    this.inflight++;
    if (this.inflight >= MAX_INFLIGHT && !this.paused) {
      this.paused = true;
      this.stream.pause();
    }
    this.opts.core.produce(activations).then(
      (counts) => {
        this.stored();
        settle({ ok: true, counts });
      },
      (err: unknown) => {
        this.stored();
        const e = ConnectError.from(err);
        settle({ ok: false, code: e.code, message: e.rawMessage });
      },
    );
  }

  private stored(): void {
    this.inflight--;
    if (this.paused && this.inflight <= MAX_INFLIGHT / 2 && !this.ended) {
      this.paused = false;
      this.stream.resume();
    }
  }

  /** Writes the answers that are ready, in order. */
  private flush(): void {
    if (this.ended) return;
    let n = 0;
    while (n < this.owed.length && this.owed[n]!.frame !== null) n++;
    if (n === 0) return;
    const ready = this.owed.splice(0, n);
    try {
      this.stream.write(n === 1 ? ready[0]!.frame! : Buffer.concat(ready.map((s) => s.frame!)));
    } catch {
      return this.closed(); // gone between the check and the write
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.ended || !this.finishing || this.owed.length > 0) return;
    if (this.draining) this.end(Code.Unavailable, "broker is shutting down");
    else this.end(0, "");
  }

  drain(): void {
    this.draining = true;
    this.finishing = true;
    this.maybeFinish();
  }

  private end(code: number, message: string): void {
    if (this.ended) return;
    this.ended = true;
    this.sessions.delete(this);
    if (code !== 0) {
      this.trailers = grpcStatusFields(code, message);
      this.opts.log.debug("produce_stream_failed", { code, error: message, unanswered: this.owed.length });
    }
    try {
      if (!this.stream.headersSent) {
        if (!this.stream.destroyed) this.stream.respond(trailersOnlyHeaders(code, message), { endStream: true });
        if (!this.stream.readableEnded) setImmediate(() => this.stream.close());
      } else this.stream.end(); // then 'wantTrailers' sends the status and cuts off a producer still sending
    } catch {
      // Reset by the peer meanwhile: nothing to tell it.
    }
  }

  /** The stream is gone (reset, connection lost, or ended by us); batches being stored finish unanswered. */
  private closed(): void {
    this.ended = true;
    this.sessions.delete(this);
  }
}

export function createProduceStreamServer(opts: ProduceStreamOptions): ProduceStreamServer {
  const sessions = new Set<ProduceSession>();
  let draining = false;
  return {
    serve(stream) {
      if (draining || opts.isClosing()) {
        stream.on("error", () => {});
        try {
          stream.respond(trailersOnlyHeaders(Code.Unavailable, "broker is shutting down"), { endStream: true });
        } catch {
          // Reset by the peer meanwhile.
        }
        return;
      }
      new ProduceSession(stream, opts, sessions).start();
    },
    drain() {
      draining = true;
      for (const s of [...sessions]) s.drain();
    },
    open: () => sessions.size,
  };
}
