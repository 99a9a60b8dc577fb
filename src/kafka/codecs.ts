// Kafka's record-batch compression codecs as plain functions over bytes:
// gzip and zstd from the runtime's zlib (Bun's built-in zstd), snappy from
// snappyjs, lz4 from lz4js. What Kafka puts around the codec is handled here:
// snappy from Java producers arrives in xerial's framing (librdkafka writes a
// bare snappy block; both are read), and lz4 is the LZ4 frame format (written
// as librdkafka and the Java client write it: independent 64 KiB blocks).
// Every decoder is bounded by `maxBytes`, so a small hostile batch cannot
// expand into gigabytes. No Kafka client library here (kafkajs-codecs.ts
// registers these with kafkajs); pure apart from the zlib thread pool. Runs on
// Node too (the SDK's producer shares the Kafka client): zstd needs a runtime
// whose zlib has it (Bun, Node 22.15+) and says so otherwise.
/// <reference path="./vendor.d.ts" />
import { promisify } from "node:util";
import zlib from "node:zlib";
import * as lz4 from "lz4js";
import { hash as xxHash32 } from "lz4js/xxh32.js";
import * as snappy from "snappyjs";

/** Kafka's codec names (librdkafka's compression.type values) and attribute ids. */
export const CODEC_IDS = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;
export type CompressionType = keyof typeof CODEC_IDS;
export const COMPRESSION_TYPES = Object.keys(CODEC_IDS) as CompressionType[];

/** The codec name for a record batch's attribute bits, or null for ids Kafka does not define (5-7). */
export function codecName(id: number): CompressionType | null {
  return COMPRESSION_TYPES.find((n) => CODEC_IDS[n] === id) ?? null;
}

/**
 * Most bytes one batch may decompress to. Producers cap an uncompressed batch
 * at about 1 MB (librdkafka batch.size, Java 16 KiB by default), so 64 MiB
 * only ever stops a decompression bomb.
 */
export const MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024;

export class CodecError extends Error {
  constructor(codec: string, message: string) {
    super(`${codec}: ${message}`);
    this.name = "CodecError";
  }
}

const gunzip = promisify(zlib.unzip);
const gzip = promisify(zlib.gzip);
type ZstdFn = (data: Uint8Array, opts?: { maxOutputLength?: number }) => Promise<Buffer>;
const zlibZstd = zlib as unknown as {
  zstdDecompress?: (...a: unknown[]) => void;
  zstdCompress?: (...a: unknown[]) => void;
};
const zstdDecompress: ZstdFn | null = zlibZstd.zstdDecompress ? (promisify(zlibZstd.zstdDecompress) as ZstdFn) : null;
const zstdCompress: ZstdFn | null = zlibZstd.zstdCompress ? (promisify(zlibZstd.zstdCompress) as ZstdFn) : null;
const NO_ZSTD = "this runtime's zlib has no zstd (Bun or Node 22.15+ has)";

const u8 = (b: Buffer | Uint8Array) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

// --- snappy -----------------------------------------------------------------

/** xerial snappy-java's stream header: magic, then version and compatible-version (int32 each). */
const XERIAL_MAGIC = [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00];
const XERIAL_HEADER_BYTES = 16;

function isXerial(data: Uint8Array): boolean {
  return data.byteLength >= XERIAL_HEADER_BYTES && XERIAL_MAGIC.every((b, i) => data[i] === b);
}

function snappyDecompress(data: Uint8Array, maxBytes: number): Uint8Array {
  if (!isXerial(data)) return snappy.uncompress(data, maxBytes);
  // xerial framing: after the header, chunks of [int32 big-endian length][snappy block].
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (let at = XERIAL_HEADER_BYTES; at < data.byteLength; ) {
    if (at + 4 > data.byteLength) throw new CodecError("snappy", "truncated xerial chunk length");
    const length = view.getUint32(at);
    at += 4;
    if (at + length > data.byteLength) throw new CodecError("snappy", "xerial chunk longer than the batch");
    const chunk = snappy.uncompress(data.subarray(at, at + length), maxBytes - total);
    total += chunk.byteLength;
    chunks.push(chunk);
    at += length;
  }
  return chunks.length === 1 ? chunks[0]! : u8(Buffer.concat(chunks));
}

// --- lz4 (frame format) -----------------------------------------------------

const LZ4_MAGIC = 0x184d2204;
const LZ4_FLG_VERSION = 0x40;
const LZ4_FLG_BLOCK_INDEPENDENT = 0x20;
const LZ4_FLG_BLOCK_CHECKSUM = 0x10;
const LZ4_FLG_CONTENT_SIZE = 0x08;
const LZ4_FLG_CONTENT_CHECKSUM = 0x04;
const LZ4_FLG_DICT_ID = 0x01;
const LZ4_BLOCK_UNCOMPRESSED = 0x80000000;
const LZ4_BLOCK_MAX = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 } as Record<number, number>;
/** What Kafka producers write: 64 KiB blocks (BD 0x40). */
const LZ4_WRITE_BLOCK = 64 * 1024;

function lz4Decompress(data: Uint8Array, maxBytes: number): Uint8Array {
  const fail = (why: string): never => {
    throw new CodecError("lz4", why);
  };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength < 7 || view.getUint32(0, true) !== LZ4_MAGIC) fail("not an LZ4 frame (bad magic number)");
  const flg = data[4]!;
  if ((flg & 0xc0) !== LZ4_FLG_VERSION) fail(`unsupported LZ4 frame version ${(flg & 0xc0) >> 6}`);
  if (flg & LZ4_FLG_DICT_ID) fail("LZ4 frames with a dictionary are not supported");
  const blockMax = LZ4_BLOCK_MAX[(data[5]! >> 4) & 0x7] ?? fail(`invalid LZ4 block size code ${(data[5]! >> 4) & 0x7}`);
  let at = 6;
  let declared: number | null = null;
  if (flg & LZ4_FLG_CONTENT_SIZE) {
    if (data.byteLength < at + 8) fail("truncated LZ4 frame header");
    const size = view.getBigUint64(at, true);
    if (size > BigInt(maxBytes)) fail(`frame declares ${size} bytes, more than ${maxBytes}`);
    declared = Number(size);
    at += 8;
  }
  at += 1; // header checksum (the block walk below catches a damaged header)
  // First pass: walk the blocks to size the output; nothing is trusted blindly.
  let bound = 0;
  const blocks: Array<{ at: number; size: number; raw: boolean }> = [];
  for (;;) {
    if (at + 4 > data.byteLength) fail("truncated LZ4 frame (no end mark)");
    const word = view.getUint32(at, true);
    at += 4;
    if (word === 0) break;
    const raw = (word & LZ4_BLOCK_UNCOMPRESSED) !== 0;
    const size = word & ~LZ4_BLOCK_UNCOMPRESSED;
    if (size > blockMax) fail(`LZ4 block of ${size} bytes exceeds the frame's block size ${blockMax}`);
    if (at + size > data.byteLength) fail("LZ4 block runs past the end of the batch");
    blocks.push({ at, size, raw });
    bound += raw ? size : blockMax;
    at += size + (flg & LZ4_FLG_BLOCK_CHECKSUM ? 4 : 0);
  }
  const expectChecksum = (flg & LZ4_FLG_CONTENT_CHECKSUM) !== 0;
  if (expectChecksum && at + 4 > data.byteLength) fail("truncated LZ4 content checksum");
  const capacity = Math.min(declared ?? bound, bound, maxBytes);
  const tooBig = () => fail(`decompressed size exceeds ${maxBytes} bytes`);
  const out = new Uint8Array(capacity);
  let written = 0;
  for (const b of blocks) {
    if (b.raw) {
      if (written + b.size > capacity) tooBig();
      out.set(data.subarray(b.at, b.at + b.size), written);
      written += b.size;
    } else {
      const end = lz4.decompressBlock(data, out, b.at, b.size, written);
      // lz4js writes past a typed array's end silently; a block that claims
      // more than fits is therefore caught here rather than truncated.
      if (end - written > blockMax) fail("LZ4 block decodes to more than the frame's block size (corrupt data)");
      if (end > capacity) capacity === maxBytes ? tooBig() : fail("LZ4 blocks decode past the declared size");
      written = end;
    }
  }
  if (declared !== null && written !== declared) fail(`frame declares ${declared} bytes but holds ${written}`);
  const result = out.subarray(0, written);
  if (expectChecksum && xxHash32(0, result, 0, result.byteLength) >>> 0 !== view.getUint32(at, true)) {
    fail("LZ4 content checksum mismatch");
  }
  return result;
}

function lz4Compress(data: Uint8Array): Uint8Array {
  const header = new Uint8Array(7);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, LZ4_MAGIC, true);
  header[4] = LZ4_FLG_VERSION | LZ4_FLG_BLOCK_INDEPENDENT;
  header[5] = 4 << 4; // 64 KiB blocks
  header[6] = (xxHash32(0, header, 4, 2) >>> 8) & 0xff;
  const parts: Uint8Array[] = [header];
  const table = new Uint32Array(1 << 16);
  const scratch = new Uint8Array(lz4.compressBound(LZ4_WRITE_BLOCK));
  for (let at = 0; at < data.byteLength; at += LZ4_WRITE_BLOCK) {
    const block = data.subarray(at, Math.min(at + LZ4_WRITE_BLOCK, data.byteLength));
    table.fill(0); // independent blocks: no match reaches into the previous block
    const n = lz4.compressBlock(block, scratch, 0, block.byteLength, table);
    const word = new Uint8Array(4);
    if (n > 0 && n < block.byteLength) {
      new DataView(word.buffer).setUint32(0, n, true);
      parts.push(word, scratch.slice(0, n));
    } else {
      new DataView(word.buffer).setUint32(0, (block.byteLength | LZ4_BLOCK_UNCOMPRESSED) >>> 0, true);
      parts.push(word, block);
    }
  }
  parts.push(new Uint8Array(4)); // end mark
  return u8(Buffer.concat(parts));
}

// --- the codec table --------------------------------------------------------

/** Decompresses one record batch's records; throws CodecError (or the library's error) when they do not decode. */
export async function decompress(
  codec: CompressionType,
  data: Uint8Array,
  maxBytes = MAX_DECOMPRESSED_BYTES,
): Promise<Uint8Array> {
  try {
    switch (codec) {
      case "none":
        return data;
      case "gzip":
        return u8(await gunzip(data, { maxOutputLength: maxBytes }));
      case "zstd":
        if (!zstdDecompress) throw new CodecError("zstd", NO_ZSTD);
        return u8(await zstdDecompress(data, { maxOutputLength: maxBytes }));
      case "snappy":
        return snappyDecompress(data, maxBytes);
      case "lz4":
        return lz4Decompress(data, maxBytes);
    }
  } catch (err) {
    if (err instanceof CodecError) throw err;
    throw new CodecError(codec, err instanceof Error ? err.message : String(err));
  }
}

/** Compresses one record batch's records the way Kafka producers do. */
export async function compress(codec: CompressionType, data: Uint8Array): Promise<Uint8Array> {
  switch (codec) {
    case "none":
      return data;
    case "gzip":
      return u8(await gzip(data));
    case "zstd":
      if (!zstdCompress) throw new CodecError("zstd", NO_ZSTD);
      return u8(await zstdCompress(data));
    case "snappy":
      // A bare snappy block, as librdkafka writes it; every Kafka client reads it.
      return snappy.compress(data);
    case "lz4":
      return lz4Compress(data);
  }
}
