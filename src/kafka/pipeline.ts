// The durable-then-commit pipeline for one consumed topic (broker.md "Ingest",
// "Backpressure", "Kafka"): each fetched partition batch is decoded, cut into
// chunks (kafka_batch_max_rows / _bytes), each chunk inserted durably through
// ingest, undecodable messages published to the dead-letter topic, and only
// then the chunk's offsets committed. Nothing is committed ahead of storage;
// under backpressure the consumer pauses and the chunk is retried until the
// store drains; when a rebalance rejects the commit, the rows just stored are
// taken back so the partition's next owner stores them exactly once.
import { InvalidActivation } from "../ingest/activation.ts";
import type { Logger } from "../log.ts";
import type { KafkaOrigin } from "../store/types.ts";
import { CommitRejected, type BatchContext, type ConsumedBatch, type ConsumedMessage } from "./client.ts";
import { HeaderDecodeError } from "./headers.ts";
import { kafkaBackpressurePaused, kafkaHeaderDispatchTotal, kafkaMessagesTotal } from "./metrics.ts";
import { rawActivation, type RawTopicSpec } from "./raw.ts";

/** What the pipeline needs of ingest (src/ingest/ingest.ts): validate, admit, insert durably. */
export interface IngestPort {
  produce(
    activations: Uint8Array[],
    source: "rpc" | "kafka",
    origins?: (KafkaOrigin | null)[],
  ): { accepted: number; duplicates?: number; expired?: number };
}

/** A message that cannot become an activation, with the reason logged. */
export interface Undecodable {
  message: ConsumedMessage;
  reason: string;
}

export interface PipelineOptions {
  topic: string;
  raw: RawTopicSpec | undefined;
  ingest: IngestPort;
  /** Publishes the originals to the dead-letter topic; resolves once acknowledged. */
  deadLetter(messages: Undecodable[]): Promise<void>;
  /** Deletes never-handed-out rows of these origins (store); absent: skipped. */
  discardUncommitted?: (origins: KafkaOrigin[]) => number;
  /** Pause / resume fetching for this topic (backpressure). */
  pause(): void;
  resume(): void;
  batchMaxRows: number;
  batchMaxBytes: number;
  /** How often a refused chunk is offered again while paused, ms. */
  backpressureRetryMs: number;
  log: Logger;
  now?: () => number;
}

interface Chunk {
  activations: Uint8Array[];
  origins: KafkaOrigin[];
  /** Message behind each activation, for dead-lettering one that ingest rejects. */
  sources: ConsumedMessage[];
  undecodable: Undecodable[];
  bytes: number;
  lastOffset: string | null;
}

const emptyChunk = (): Chunk => ({ activations: [], origins: [], sources: [], undecodable: [], bytes: 0, lastOffset: null });

/** Backpressure is thrown by ingest (STORE helper's class); matched by name so this file does not pin its module. */
const isBackpressure = (err: unknown) => err instanceof Error && err.name === "Backpressure";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const NON_GROUP_COMMIT_ATTEMPTS = 5;

export function createBatchHandler(opts: PipelineOptions): (batch: ConsumedBatch, ctx: BatchContext) => Promise<void> {
  const now = opts.now ?? Date.now;
  const log = opts.log.child({ topic: opts.topic });
  let paused = false;

  const setPaused = (value: boolean) => {
    if (paused === value) return;
    paused = value;
    kafkaBackpressurePaused.set({ topic: opts.topic }, value ? 1 : 0);
    if (value) {
      opts.pause();
      log.warn("kafka_consumer_paused", { reason: "backpressure" });
    } else {
      opts.resume();
      log.info("kafka_consumer_resumed");
    }
  };

  /** One message to an activation, or the reason it cannot be one. */
  const prepare = (m: ConsumedMessage, chunk: Chunk) => {
    const origin: KafkaOrigin = { topic: m.topic, partition: m.partition, offset: m.offset };
    chunk.lastOffset = m.offset;
    if (!m.value || m.value.byteLength === 0) {
      chunk.undecodable.push({ message: m, reason: "empty message" });
      return;
    }
    let bytes = m.value;
    if (opts.raw) {
      try {
        const built = rawActivation(m, opts.raw, now());
        bytes = built.bytes;
        if (built.path) kafkaHeaderDispatchTotal.inc({ topic: opts.topic, path: built.path });
      } catch (err) {
        if (!(err instanceof HeaderDecodeError)) throw err;
        kafkaHeaderDispatchTotal.inc({ topic: opts.topic, path: "failed" });
        chunk.undecodable.push({ message: m, reason: err.message });
        return;
      }
    }
    chunk.activations.push(bytes);
    chunk.origins.push(origin);
    chunk.sources.push(m);
    chunk.bytes += bytes.byteLength;
  };

  /**
   * Inserts the chunk durably, waiting out backpressure; false when the
   * consumer stopped meanwhile. A refused chunk is offered in halves first:
   * a chunk larger than the free room (say 256 rows against
   * max_pending_count 100) would otherwise never be admitted.
   */
  const insert = async (chunk: Chunk, ctx: BatchContext): Promise<boolean> => {
    let start = 0;
    let take = chunk.activations.length;
    while (start < chunk.activations.length) {
      const end = Math.min(start + take, chunk.activations.length);
      try {
        const result = opts.ingest.produce(chunk.activations.slice(start, end), "kafka", chunk.origins.slice(start, end));
        setPaused(false);
        start = end;
        take = Math.min(take * 2, chunk.activations.length);
        const duplicates = result.duplicates ?? 0;
        const expired = result.expired ?? 0;
        kafkaMessagesTotal.inc({ topic: opts.topic, result: "stored" }, result.accepted);
        if (duplicates) kafkaMessagesTotal.inc({ topic: opts.topic, result: "duplicate" }, duplicates);
        if (expired) kafkaMessagesTotal.inc({ topic: opts.topic, result: "expired" }, expired);
      } catch (err) {
        if (err instanceof InvalidActivation && err.index !== undefined && start + err.index < end) {
          // Ingest validates the whole slice first; take the offender out and offer the rest again.
          const i = start + err.index;
          chunk.undecodable.push({ message: chunk.sources[i]!, reason: err.message });
          chunk.activations.splice(i, 1);
          chunk.origins.splice(i, 1);
          chunk.sources.splice(i, 1);
          continue;
        }
        if (!isBackpressure(err)) throw err;
        if (take > 1) {
          take = Math.ceil(take / 2);
          continue;
        }
        setPaused(true);
        // Stopping: leave the rest uncommitted; it is fetched again later.
        if (!ctx.isRunning()) {
          if (start > 0 && opts.discardUncommitted) opts.discardUncommitted(chunk.origins.slice(0, start));
          return false;
        }
        // Keeps the session alive; throws CommitRejected when the group rebalances,
        // which is safe: this chunk's offsets are uncommitted and whatever part of it
        // was stored is a duplicate when fetched again here (or taken back below).
        try {
          await ctx.heartbeat();
        } catch (hbErr) {
          if (hbErr instanceof CommitRejected && start > 0 && opts.discardUncommitted) {
            opts.discardUncommitted(chunk.origins.slice(0, start));
          }
          throw hbErr;
        }
        await sleep(opts.backpressureRetryMs);
      }
    }
    return true;
  };

  const commit = async (chunk: Chunk, ctx: BatchContext) => {
    const next = (BigInt(chunk.lastOffset!) + 1n).toString();
    for (let attempt = 1; ; attempt++) {
      try {
        await ctx.commit(next);
        return;
      } catch (err) {
        if (err instanceof CommitRejected) {
          // The group moved on: these offsets stay uncommitted and another
          // member may fetch them. Take back what we stored so it is stored once.
          const taken = chunk.origins.length > 0 && opts.discardUncommitted ? opts.discardUncommitted(chunk.origins) : 0;
          kafkaMessagesTotal.inc({ topic: opts.topic, result: "revoked" }, taken);
          log.warn("kafka_commit_rejected", { partition: chunk.origins[0]?.partition, next_offset: next, reason: err.message, rows_taken_back: taken });
          throw err;
        }
        // Unknown outcome (timeout, connection): retry; if it never succeeds the batch
        // is fetched again and the stored rows are ignored as duplicates.
        if (attempt >= NON_GROUP_COMMIT_ATTEMPTS) throw err;
        await sleep(100 * attempt);
      }
    }
  };

  const flush = async (chunk: Chunk, ctx: BatchContext): Promise<boolean> => {
    if (chunk.lastOffset === null) return true;
    if (!(await insert(chunk, ctx))) return false;
    if (chunk.undecodable.length > 0) {
      for (const u of chunk.undecodable) {
        log.warn("kafka_message_undecodable", {
          partition: u.message.partition,
          offset: u.message.offset,
          bytes: u.message.value?.byteLength ?? 0,
          reason: u.reason,
        });
      }
      kafkaMessagesTotal.inc({ topic: opts.topic, result: "invalid" }, chunk.undecodable.length);
      // Before the commit: a dead letter is never lost to a crash in between.
      await opts.deadLetter(chunk.undecodable);
    }
    ctx.resolve(chunk.lastOffset);
    await commit(chunk, ctx);
    return true;
  };

  return async (batch, ctx) => {
    let chunk = emptyChunk();
    for (const m of batch.messages) {
      prepare(m, chunk);
      if (chunk.activations.length + chunk.undecodable.length >= opts.batchMaxRows || chunk.bytes >= opts.batchMaxBytes) {
        if (!(await flush(chunk, ctx))) return;
        chunk = emptyChunk();
      }
    }
    await flush(chunk, ctx);
  };
}
