// The durable-then-commit pipeline for one consumed topic (docs/spec/broker.md "Ingest",
// "Backpressure", "Kafka"): each fetched partition batch is decoded, cut into
// chunks (store.insert_batch_max_length / _bytes), each chunk inserted durably through
// ingest, undecodable messages published to the dead-letter topic, and only
// then the chunk's offsets committed. Activations of namespaces the runtime
// config demotes are forwarded to their topic instead of stored, also before
// the commit (a failed forward is retried, holding the commit back until it is
// acknowledged). Nothing is committed ahead of storage;
// under backpressure the topic is paused and the chunk is retried until the
// store drains. The pause lasts exactly as long as some batch handler holds a
// refused chunk: when the last holder stores it, or leaves (rebalance, Kafka
// outage, stop), the topic is resumed, so a pause can never outlive the
// handlers that would lift it. When a rebalance rejects the commit, the rows
// just stored are taken back so the partition's next owner stores them
// exactly once. A batch the client could not decode arrives as placeholders
// (client.ts): it is dead-lettered as its raw bytes, counted, and committed
// past, so it never stalls the partition.
import { InvalidActivation } from "../activation/decode.ts";
import type { Logger } from "../log.ts";
import { kafkaPaused } from "../metrics.ts";
import type { KafkaOrigin } from "../store/types.ts";
import {
  CommitRefused,
  CommitRejected,
  type BatchContext,
  type ConsumedBatch,
  type ConsumedMessage,
  type OutboundMessage,
} from "./client.ts";
import { HeaderDecodeError } from "./headers.ts";
import type { LagTracker } from "./lag.ts";
import {
  kafkaDemotedTotal,
  kafkaHeaderDispatchTotal,
  kafkaMessagesTotal,
  kafkaUndecodableBatchesTotal,
} from "./metrics.ts";
import { activationNamespace } from "../activation/wire.ts";
import { outboundOf, type Undecodable } from "./publisher.ts";
import { rawActivation, type RawTopicSpec } from "./raw.ts";

/** What the pipeline needs of ingest (src/ingest/ingest.ts): validate, admit, insert durably. */
export interface IngestPort {
  produce(
    activations: Uint8Array[],
    source: "rpc" | "kafka",
    origins?: (KafkaOrigin | null)[],
  ): { accepted: number; duplicates?: number; expired?: number };
}

/** Something worth showing in readiness about undecodable batches. */
export interface UndecodableBatchReport {
  topic: string;
  partition: number;
  firstOffset: string;
  lastOffset: string;
  codec: string;
  reason: string;
}

/** The runtime config's namespace demotion (src/runtime: RuntimeConfig.demotedTopic). */
export interface DemotionLookup {
  /**
   * Topic a namespace's activations are forwarded to, or null when it is not
   * demoted, or when this activation is not to be forwarded (killed, expired).
   */
  demotedTopic(namespace: string, activation?: Uint8Array): string | null;
  /** demoted_topic_cluster, or null for the producer's own cluster. */
  demotedCluster(): string | null;
}

/** An activation of a demoted namespace, to be forwarded to `topic`. */
interface Demoted {
  message: ConsumedMessage;
  /** The consumed bytes (for a raw topic: the activation built from them, which is what the topic's consumers read). */
  value: Uint8Array;
  topic: string;
}

export interface PipelineOptions {
  topic: string;
  raw: RawTopicSpec | undefined;
  ingest: IngestPort;
  /** Publishes the originals to the dead-letter topic; resolves once acknowledged. */
  deadLetter(messages: Undecodable[]): Promise<void>;
  /** Namespace demotion; absent: every activation is stored. */
  demotion?: DemotionLookup;
  /** Publishes one demoted activation; resolves once acknowledged (acks = all). Needed with `demotion`. */
  forward?(topic: string, message: OutboundMessage): Promise<void>;
  /** Consumer lag gauge; absent: not reported. */
  lag?: LagTracker;
  /** Deletes never-handed-out rows of these origins (store); absent: skipped. */
  discardUncommitted?: (origins: KafkaOrigin[]) => number;
  /** Offset bookkeeping in the store around each commit (store/kafka-offsets.ts); absent: skipped. */
  offsets?: {
    committing(topic: string, partition: number, next: string): void;
    committed(topic: string, partition: number, next: string): void;
    /** Kafka refused the commit just announced by committing(). */
    commitFailed(topic: string, partition: number): void;
  };
  /** Pause / resume fetching for this topic (backpressure). */
  pause(): void;
  resume(): void;
  /** Told about every undecodable batch after it was dead-lettered (readiness detail). */
  onUndecodableBatch?(report: UndecodableBatchReport): void;
  batchMaxRows: number;
  batchMaxBytes: number;
  /** How often a refused chunk is offered again while paused, ms. */
  backpressureRetryMs: number;
  /** How long a batch whose insert failed (not backpressure) waits before the next attempt, ms. */
  insertFailureBackoffMs: number;
  log: Logger;
  now?: () => number;
}

interface Chunk {
  activations: Uint8Array[];
  origins: KafkaOrigin[];
  /** Message behind each activation, for dead-lettering one that ingest rejects. */
  sources: ConsumedMessage[];
  undecodable: Undecodable[];
  /** Placeholders of undecodable batches (client.ts), dead-lettered as one message per batch. */
  placeholders: ConsumedMessage[];
  demoted: Demoted[];
  bytes: number;
  lastOffset: string | null;
}

const emptyChunk = (): Chunk => ({
  activations: [],
  origins: [],
  sources: [],
  undecodable: [],
  placeholders: [],
  demoted: [],
  bytes: 0,
  lastOffset: null,
});

/** Backpressure is thrown by ingest (src/ingest/ingest.ts); matched by name so this file does not pin its module. */
const isBackpressure = (err: unknown) => err instanceof Error && err.name === "Backpressure";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const NON_GROUP_COMMIT_ATTEMPTS = 5;
/** Backoff between attempts to forward demoted activations: doubling from the first, capped at the second. */
const FORWARD_RETRY_MS = [100, 2000] as const;

export function createBatchHandler(opts: PipelineOptions): (batch: ConsumedBatch, ctx: BatchContext) => Promise<void> {
  const now = opts.now ?? Date.now;
  const log = opts.log.child({ topic: opts.topic });
  /** Batch handlers of this topic currently holding a chunk the store refused. */
  let holders = 0;
  let pausedAt = 0;
  kafkaPaused.set({ topic: opts.topic }, 0);

  /** A handler starts holding a refused chunk: the first one pauses the topic. */
  const hold = () => {
    if (holders++ > 0) return;
    pausedAt = now();
    kafkaPaused.set({ topic: opts.topic }, 1);
    opts.pause();
    log.warn("kafka_consumer_paused", { reason: "backpressure" });
  };
  /** A handler stops holding (stored the chunk, or left): the last one resumes the topic. */
  const release = () => {
    if (--holders > 0) return;
    kafkaPaused.set({ topic: opts.topic }, 0);
    opts.resume();
    log.info("kafka_consumer_resumed", { paused_ms: now() - pausedAt });
  };

  /** One message to an activation, or the reason it cannot be one. */
  const prepare = (m: ConsumedMessage, chunk: Chunk) => {
    const origin: KafkaOrigin = { topic: m.topic, partition: m.partition, offset: m.offset };
    chunk.lastOffset = m.offset;
    if (m.undecodableBatch) {
      chunk.placeholders.push(m);
      return;
    }
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
    if (opts.demotion && opts.forward) {
      // A raw topic's namespace is configured; an activation carries its own
      // (null when unreadable: ingest rejects it and it is dead-lettered).
      const namespace = opts.raw ? opts.raw.namespace : activationNamespace(bytes);
      const to = namespace === null ? null : opts.demotion.demotedTopic(namespace, bytes);
      // Demoted to the topic being consumed: forwarding would loop, so store it.
      if (to !== null && to !== opts.topic) {
        chunk.demoted.push({ message: m, value: bytes, topic: to });
        chunk.bytes += bytes.byteLength;
        return;
      }
    }
    chunk.activations.push(bytes);
    chunk.origins.push(origin);
    chunk.sources.push(m);
    chunk.bytes += bytes.byteLength;
  };

  /**
   * Waits `ms` before the next attempt at an uncommitted chunk, keeping the
   * group session alive. False when the consumer is stopping; throws
   * CommitRejected when the group rebalances. Either way the rows of `stored`
   * (this chunk's, already inserted, offsets uncommitted) are taken back first,
   * so whoever fetches the offsets again stores them exactly once.
   */
  const waitHolding = async (ctx: BatchContext, stored: KafkaOrigin[], ms: number): Promise<boolean> => {
    if (!ctx.isRunning()) {
      if (stored.length > 0 && opts.discardUncommitted) opts.discardUncommitted(stored);
      return false;
    }
    try {
      await ctx.heartbeat();
    } catch (hbErr) {
      if (hbErr instanceof CommitRejected && stored.length > 0 && opts.discardUncommitted)
        opts.discardUncommitted(stored);
      throw hbErr;
    }
    await sleep(ms);
    return true;
  };

  /**
   * Inserts the chunk durably, waiting out backpressure; false when the
   * consumer stopped meanwhile. A refused chunk is offered in halves first:
   * a chunk larger than the free room (say 256 rows against
   * max_pending_count 100) would otherwise never be admitted.
   */
  const insert = async (chunk: Chunk, ctx: BatchContext): Promise<boolean> => {
    let holding = false;
    try {
      return await insertHolding(chunk, ctx, () => {
        if (!holding) {
          holding = true;
          hold();
        }
      });
    } finally {
      if (holding) release();
    }
  };

  const insertHolding = async (chunk: Chunk, ctx: BatchContext, startHolding: () => void): Promise<boolean> => {
    let start = 0;
    let take = chunk.activations.length;
    while (start < chunk.activations.length) {
      const end = Math.min(start + take, chunk.activations.length);
      try {
        const result = opts.ingest.produce(
          chunk.activations.slice(start, end),
          "kafka",
          chunk.origins.slice(start, end),
        );
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
        if (!isBackpressure(err)) {
          // The store failed the insert (disk full, I/O error): hold the batch
          // (uncommitted) and try again after store.insert_failure_backoff_ms.
          log.error("kafka_insert_failed", {
            partition: chunk.origins[start]?.partition,
            rows: end - start,
            retry_in_ms: opts.insertFailureBackoffMs,
            error: err,
          });
          if (!(await waitHolding(ctx, chunk.origins.slice(0, start), opts.insertFailureBackoffMs))) return false;
          continue;
        }
        if (take > 1) {
          take = Math.ceil(take / 2);
          continue;
        }
        startHolding();
        // Stopping: leave the rest uncommitted; it is fetched again later. A
        // rebalance throws CommitRejected, which is safe: this chunk's offsets are
        // uncommitted and the part of it already stored is taken back.
        if (!(await waitHolding(ctx, chunk.origins.slice(0, start), opts.backpressureRetryMs))) return false;
      }
    }
    return true;
  };

  /**
   * Forwards the chunk's demoted activations, retrying the ones not
   * acknowledged until all are (or the consumer stops: false, nothing
   * committed). A message acknowledged before a later failure may reach its
   * topic twice if the offsets end up fetched again; the receiving broker
   * ignores a duplicate id while it still holds the row.
   */
  const forward = async (chunk: Chunk, ctx: BatchContext): Promise<boolean> => {
    let pending = chunk.demoted;
    for (let attempt = 1; pending.length > 0; attempt++) {
      const results = await Promise.allSettled(
        pending.map((d) => opts.forward!(d.topic, outboundOf(d.message, d.value))),
      );
      const failed: Demoted[] = [];
      let error: unknown;
      results.forEach((r, i) => {
        const d = pending[i]!;
        if (r.status === "fulfilled") kafkaDemotedTotal.inc({ from: opts.topic, to: d.topic });
        else {
          failed.push(d);
          error ??= r.reason;
        }
      });
      const forwarded = pending.length - failed.length;
      if (forwarded) kafkaMessagesTotal.inc({ topic: opts.topic, result: "demoted" }, forwarded);
      pending = failed;
      if (pending.length === 0) break;
      const waitMs = Math.min(FORWARD_RETRY_MS[0] * 2 ** (attempt - 1), FORWARD_RETRY_MS[1]);
      log.warn("kafka_demoted_forward_failed", {
        partition: pending[0]!.message.partition,
        messages: pending.length,
        to: [...new Set(pending.map((d) => d.topic))].join(","),
        attempt,
        retry_in_ms: waitMs,
        error,
      });
      if (!(await waitHolding(ctx, chunk.origins, waitMs))) return false;
    }
    return true;
  };

  const commit = async (chunk: Chunk, batch: ConsumedBatch, ctx: BatchContext) => {
    const next = (BigInt(chunk.lastOffset!) + 1n).toString();
    for (let attempt = 1; ; attempt++) {
      try {
        // Written before the commit is sent: a crash in between leaves these
        // offsets "maybe committed", so they are never dropped as re-consumed.
        opts.offsets?.committing(batch.topic, batch.partition, next);
        await ctx.commit(next);
        opts.offsets?.committed(batch.topic, batch.partition, next);
        opts.lag?.committed(batch.partition, batch.highWatermark, next);
        return;
      } catch (err) {
        // Kafka answered no: nothing was committed, so these offsets are not even "maybe committed".
        if (err instanceof CommitRejected || err instanceof CommitRefused)
          opts.offsets?.commitFailed(batch.topic, batch.partition);
        if (err instanceof CommitRejected) {
          // The group moved on: these offsets stay uncommitted and another
          // member may fetch them. Take back what we stored so it is stored once.
          const taken =
            chunk.origins.length > 0 && opts.discardUncommitted ? opts.discardUncommitted(chunk.origins) : 0;
          kafkaMessagesTotal.inc({ topic: opts.topic, result: "revoked" }, taken);
          log.warn("kafka_commit_rejected", {
            partition: chunk.origins[0]?.partition,
            next_offset: next,
            reason: err.message,
            rows_taken_back: taken,
          });
          throw err;
        }
        // Unknown outcome (timeout, connection): retry; if it never succeeds the batch
        // is fetched again and the stored rows are ignored as duplicates.
        if (attempt >= NON_GROUP_COMMIT_ATTEMPTS) throw err;
        await sleep(100 * attempt);
      }
    }
  };

  /**
   * The chunk's dead letters: undecodable messages as they arrived, and one
   * message per undecodable batch holding the batch's raw bytes (its first
   * placeholder carries them; the others only count). Logged and counted here.
   */
  const deadLettersOf = (chunk: Chunk): Undecodable[] => {
    for (const u of chunk.undecodable) {
      log.warn("kafka_message_undecodable", {
        partition: u.message.partition,
        offset: u.message.offset,
        bytes: u.message.value?.byteLength ?? 0,
        reason: u.reason,
      });
    }
    const out = [...chunk.undecodable];
    for (const p of chunk.placeholders) {
      const info = p.undecodableBatch!;
      if (!info.batch || !p.value) continue; // a later record of a batch already dead-lettered
      log.error("kafka_batch_undecodable", {
        partition: p.partition,
        first_offset: info.batch.firstOffset,
        last_offset: info.batch.lastOffset,
        records: info.batch.records,
        bytes: p.value.byteLength,
        codec: info.codec,
        reason: info.reason,
      });
      kafkaUndecodableBatchesTotal.inc({ topic: opts.topic, codec: info.codec });
      const text = (v: string) => new TextEncoder().encode(v);
      out.push({
        reason: info.reason,
        message: {
          ...p,
          key: null,
          headers: {
            "taskbroker-undecodable": text("batch"),
            "taskbroker-undecodable-reason": text(info.reason),
            "taskbroker-codec": text(info.codec),
            "taskbroker-source-topic": text(p.topic),
            "taskbroker-source-partition": text(String(p.partition)),
            "taskbroker-source-offsets": text(`${info.batch.firstOffset}-${info.batch.lastOffset}`),
          },
        },
      });
      opts.onUndecodableBatch?.({
        topic: p.topic,
        partition: p.partition,
        firstOffset: info.batch.firstOffset,
        lastOffset: info.batch.lastOffset,
        codec: info.codec,
        reason: info.reason,
      });
    }
    const invalid = chunk.undecodable.length + chunk.placeholders.length;
    if (invalid) kafkaMessagesTotal.inc({ topic: opts.topic, result: "invalid" }, invalid);
    return out;
  };

  /**
   * Publishes the dead letters, retrying until acknowledged (or the consumer
   * stops: false, nothing committed), holding the chunk meanwhile: before the
   * commit, so a dead letter is never lost to a crash in between.
   */
  const deadLetter = async (dead: Undecodable[], chunk: Chunk, ctx: BatchContext): Promise<boolean> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await opts.deadLetter(dead);
        return true;
      } catch (error) {
        const waitMs = Math.min(FORWARD_RETRY_MS[0] * 2 ** (attempt - 1), FORWARD_RETRY_MS[1]);
        log.warn("kafka_deadletter_failed", { messages: dead.length, attempt, retry_in_ms: waitMs, error });
        if (!(await waitHolding(ctx, chunk.origins, waitMs))) return false;
      }
    }
  };

  const flush = async (chunk: Chunk, batch: ConsumedBatch, ctx: BatchContext): Promise<boolean> => {
    if (chunk.lastOffset === null) return true;
    if (!(await insert(chunk, ctx))) return false;
    if (chunk.demoted.length > 0 && !(await forward(chunk, ctx))) return false;
    if (chunk.undecodable.length > 0 || chunk.placeholders.length > 0) {
      const dead = deadLettersOf(chunk);
      if (dead.length > 0 && !(await deadLetter(dead, chunk, ctx))) return false;
    }
    ctx.resolve(chunk.lastOffset);
    await commit(chunk, batch, ctx);
    return true;
  };

  return async (batch, ctx) => {
    const first = batch.messages[0];
    if (first) opts.lag?.fetched(batch.partition, batch.highWatermark, first.offset);
    let chunk = emptyChunk();
    for (const m of batch.messages) {
      prepare(m, chunk);
      const rows =
        chunk.activations.length + chunk.undecodable.length + chunk.demoted.length + chunk.placeholders.length;
      if (rows >= opts.batchMaxRows || chunk.bytes >= opts.batchMaxBytes) {
        if (!(await flush(chunk, batch, ctx))) return;
        chunk = emptyChunk();
      }
    }
    await flush(chunk, batch, ctx);
  };
}
