// Teaches kafkajs every Kafka compression codec (codecs.ts) and makes a batch
// that cannot be decoded harmless. kafkajs decompresses while it parses a
// whole fetch response, so one throwing codec fails the fetch of every
// partition on that broker, forever (the same batch comes back). Instead, a
// batch whose codec is unknown, whose payload does not decompress, or whose
// records do not parse is replaced by placeholder records, one per record the
// batch declares, at the batch's offsets: the pipeline dead-letters the batch
// (the first placeholder carries its raw bytes), counts it, and commits past
// it. Placeholders are recognised by a header holding a random per-process
// token, so a producer cannot forge one.
//
// With client.ts the only files that reach into kafkajs; this one uses its
// internal record encoder/decoder (kafkajs 2.2.4, no release since 2023).
/// <reference path="./vendor.d.ts" />
import { randomBytes } from "node:crypto";
import kafkajs from "kafkajs";
import Decoder from "kafkajs/src/protocol/decoder.js";
import decodeRecord from "kafkajs/src/protocol/recordBatch/record/v0/decoder.js";
import encodeRecord from "kafkajs/src/protocol/recordBatch/record/v0/index.js";
import { CODEC_IDS, codecName, compress, decompress, type CompressionType } from "./codecs.ts";

/** Header naming a placeholder record; its value is "<token> <codec> <reason>". */
export const UNDECODABLE_HEADER = "taskbroker-undecodable-batch";
const TOKEN = randomBytes(12).toString("hex");

/** What a placeholder record says about the batch it stands for. */
export interface UndecodableBatchInfo {
  codec: string;
  reason: string;
  /** On the first placeholder of a batch (whose value is the raw batch): the batch's extent. */
  batch?: { firstOffset: string; lastOffset: string; records: number };
}

/**
 * The batch a placeholder stands for, or null when the header is absent or
 * not ours. `value` is the placeholder's value (the raw batch on the first).
 */
export function undecodableBatchOf(
  header: Uint8Array | null | undefined,
  value: Uint8Array | null,
): UndecodableBatchInfo | null {
  if (!header) return null;
  const text = Buffer.from(header.buffer, header.byteOffset, header.byteLength).toString("utf8");
  const [token, codec, ...reason] = text.split(" ");
  if (token !== TOKEN || !codec) return null;
  const info: UndecodableBatchInfo = { codec, reason: reason.join(" ") };
  if (value && value.byteLength >= BATCH_HEADER_BYTES) {
    const raw = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const first = raw.readBigInt64BE(0);
    info.batch = {
      firstOffset: first.toString(),
      lastOffset: (first + BigInt(raw.readInt32BE(LAST_OFFSET_DELTA_AT))).toString(),
      records: raw.readInt32BE(RECORD_COUNT_AT),
    };
  }
  return info;
}

/** RecordBatch v2: the 61 bytes before the records (baseOffset .. recordCount). */
const BATCH_HEADER_BYTES = 61;
const MAGIC_AT = 16;
const ATTRIBUTES_AT = 21;
const LAST_OFFSET_DELTA_AT = 23;
const RECORD_COUNT_AT = 57;
/** More placeholders than this for one batch means the header itself is garbage; kafkajs then fails as before. */
const MAX_PLACEHOLDERS = 1_000_000;

interface BatchHeader {
  recordCount: number;
  lastOffsetDelta: number;
  /** The whole record batch as it sat in the fetch response (header and records). */
  raw: Buffer;
}

/**
 * kafkajs hands a codec only the records' bytes, sliced from the fetch
 * response without copying; the batch header sits right before them. Read it
 * when (and only when) it is where RecordBatch v2 puts it, so a change in
 * kafkajs makes this fall back to kafkajs's own behaviour instead of misreading.
 */
function batchHeaderOf(records: Buffer, codecId: number): BatchHeader | null {
  if (records.byteOffset < BATCH_HEADER_BYTES) return null;
  const header = Buffer.from(records.buffer, records.byteOffset - BATCH_HEADER_BYTES, BATCH_HEADER_BYTES);
  if (header.readInt8(MAGIC_AT) !== 2 || (header.readInt16BE(ATTRIBUTES_AT) & 0x07) !== codecId) return null;
  const recordCount = header.readInt32BE(RECORD_COUNT_AT);
  const lastOffsetDelta = header.readInt32BE(LAST_OFFSET_DELTA_AT);
  if (recordCount <= 0 || recordCount > MAX_PLACEHOLDERS || lastOffsetDelta < recordCount - 1) return null;
  const raw = Buffer.from(
    records.buffer,
    records.byteOffset - BATCH_HEADER_BYTES,
    BATCH_HEADER_BYTES + records.byteLength,
  );
  return { recordCount, lastOffsetDelta, raw };
}

/** Parses `count` records the way kafkajs will; throws on the first that does not. */
function checkRecords(decompressed: Buffer, count: number): void {
  const decoder = new Decoder(decompressed);
  const context = { firstOffset: "0", firstTimestamp: "0", magicByte: 2 };
  for (let i = 0; i < count; i++) decodeRecord(new Decoder(decoder.readVarIntBytes()), context);
}

/** Uncompressed records standing in for an undecodable batch, at the batch's offsets. */
function placeholders(batch: BatchHeader, codec: string, reason: string): Buffer {
  const marker = Buffer.from(`${TOKEN} ${codec} ${reason.replace(/\s+/g, " ")}`);
  const parts: Buffer[] = [];
  for (let i = 0; i < batch.recordCount; i++) {
    const last = i === batch.recordCount - 1;
    parts.push(
      encodeRecord({
        // The last placeholder sits at the batch's last offset, so the consumer moves past all of it.
        offsetDelta: last ? batch.lastOffsetDelta : i,
        key: null,
        value: i === 0 ? batch.raw : null,
        headers: { [UNDECODABLE_HEADER]: marker },
      }).buffer,
    );
  }
  return Buffer.concat(parts);
}

const asBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

function codecFor(id: number) {
  const name = codecName(id);
  return {
    async compress(encoder: { buffer: Buffer }): Promise<Buffer> {
      if (name === null || name === "none") throw new Error(`cannot compress with codec id ${id}`);
      return asBuffer(await compress(name, encoder.buffer));
    },
    async decompress(records: Buffer): Promise<Buffer> {
      const batch = batchHeaderOf(records, id);
      if (name === null) {
        const reason = `unknown compression codec id ${id}`;
        if (!batch) throw new Error(reason);
        return placeholders(batch, `codec-${id}`, reason);
      }
      let out: Buffer;
      try {
        out = asBuffer(await decompress(name as CompressionType, records));
      } catch (err) {
        if (!batch) throw err;
        return placeholders(batch, name, err instanceof Error ? err.message : String(err));
      }
      if (batch) {
        try {
          checkRecords(out, batch.recordCount);
        } catch (err) {
          return placeholders(
            batch,
            name,
            `records do not parse after decompression (${err instanceof Error ? err.message : String(err)})`,
          );
        }
      }
      return out;
    },
  };
}

let registered = false;

/** Registers gzip, snappy, lz4, zstd and the undefined ids 5-7 with kafkajs (idempotent). */
export function registerCodecs(): void {
  if (registered) return;
  registered = true;
  // Through the default export: Node cannot see this CommonJS export by name.
  const table = kafkajs.CompressionCodecs as unknown as Record<number, () => ReturnType<typeof codecFor>>;
  for (const id of [CODEC_IDS.gzip, CODEC_IDS.snappy, CODEC_IDS.lz4, CODEC_IDS.zstd, 5, 6, 7]) {
    const codec = codecFor(id);
    table[id] = () => codec;
  }
}
