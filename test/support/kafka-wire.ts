// Test fixture: a hostile Kafka producer. Writes one hand-built RecordBatch
// (magic 2) with a Produce request over a plain TCP socket, so a test can put
// into a topic what no well-behaved client library would: a batch whose
// compression codec id is undefined, whose compressed payload is garbage, or
// whose decompressed records do not parse. Only what those tests need of the
// protocol (Produce v3 to the partition's leader, acks = all).
import { connect } from "node:net";

/** CRC-32C (Castagnoli), which RecordBatch v2 carries over its attributes..records. */
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface RawBatch {
  /** The codec id in the attributes' low 3 bits (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; 5-7 undefined). */
  codecId: number;
  /** How many records the batch header declares. */
  recordCount: number;
  /** The bytes after the record count, as they go on the wire (compressed records, or anything). */
  records: Uint8Array;
}

/** A RecordBatch v2 as a producer sends it (base offset 0; the broker assigns the real one). */
export function encodeRecordBatch(batch: RawBatch): Uint8Array {
  const now = BigInt(Date.now());
  const body = Buffer.alloc(2 + 4 + 8 + 8 + 8 + 2 + 4 + 4 + batch.records.byteLength);
  let at = 0;
  at = body.writeInt16BE(batch.codecId, at);
  at = body.writeInt32BE(batch.recordCount - 1, at); // lastOffsetDelta
  at = body.writeBigInt64BE(now, at);
  at = body.writeBigInt64BE(now, at);
  at = body.writeBigInt64BE(-1n, at); // producer id: not idempotent
  at = body.writeInt16BE(-1, at);
  at = body.writeInt32BE(-1, at);
  at = body.writeInt32BE(batch.recordCount, at);
  body.set(batch.records, at);
  const head = Buffer.alloc(8 + 4 + 4 + 1 + 4);
  head.writeBigInt64BE(0n, 0);
  head.writeInt32BE(4 + 1 + 4 + body.byteLength, 8); // batch length: from the leader epoch on
  head.writeInt32BE(-1, 12);
  head.writeInt8(2, 16);
  head.writeUInt32BE(crc32c(body), 17);
  return Buffer.concat([head, body]);
}

const str = (s: string) => {
  const b = Buffer.from(s);
  const len = Buffer.alloc(2);
  len.writeInt16BE(b.byteLength);
  return Buffer.concat([len, b]);
};
const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/**
 * Sends one size-prefixed request `body` to `broker` ("host:port") on a new
 * connection and resolves with the response after its size prefix.
 */
function roundTrip(broker: string, body: Buffer, what: string): Promise<Buffer> {
  const [host, port] = [broker.slice(0, broker.lastIndexOf(":")), Number(broker.slice(broker.lastIndexOf(":") + 1))];
  return new Promise<Buffer>((resolve, reject) => {
    const socket = connect({ host, port }, () => socket.write(Buffer.concat([i32(body.byteLength), body])));
    let got = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.byteLength >= 4 && got.byteLength >= 4 + got.readInt32BE(0)) {
        socket.end();
        resolve(got.subarray(4, 4 + got.readInt32BE(0)));
      }
    });
    socket.on("error", reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`${what} timed out`)));
  });
}

/**
 * Sends one Produce request (v3, acks = all) holding `batch` for one
 * partition to `broker` ("host:port", the partition's leader) and resolves
 * once the broker accepted it; rejects with the error code otherwise.
 */
export async function produceRawBatch(
  broker: string,
  topic: string,
  partition: number,
  batch: RawBatch,
): Promise<void> {
  const records = encodeRecordBatch(batch);
  const body = Buffer.concat([
    i16(0), // api key Produce
    i16(3),
    i32(1), // correlation id
    str("hostile-producer"),
    i16(-1), // transactional id: null
    i16(-1), // acks = all
    i32(10_000),
    i32(1),
    str(topic),
    i32(1),
    i32(partition),
    i32(records.byteLength),
    records,
  ]);
  const response = await roundTrip(broker, body, "produce");
  // Response v3: correlation id, [topic, [partition, error code, base offset, log append time]], throttle.
  let at = 4 + 4; // correlation id, topic count
  at += 2 + response.readInt16BE(at); // topic name
  at += 4 + 4; // partition count, partition
  const errorCode = response.readInt16BE(at);
  if (errorCode !== 0)
    throw new Error(`Produce of a raw batch to ${topic}[${partition}] failed with Kafka error ${errorCode}`);
}

/**
 * Fetches `topic`[`partition`] from offset 0 (Fetch v4, one request) from
 * `broker` and returns the codec id of every record batch in the answer: what
 * a producer actually put on the wire.
 */
export async function batchCodecs(broker: string, topic: string, partition: number): Promise<number[]> {
  const i64 = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    return b;
  };
  const body = Buffer.concat([
    i16(1), // api key Fetch
    i16(4),
    i32(2),
    str("codec-inspector"),
    i32(-1), // replica id
    i32(500), // max wait
    i32(1), // min bytes
    i32(8 * 1024 * 1024),
    Buffer.from([0]), // isolation: read uncommitted
    i32(1),
    str(topic),
    i32(1),
    i32(partition),
    i64(0n),
    i32(8 * 1024 * 1024),
  ]);
  const response = await roundTrip(broker, body, "fetch");
  // Response v4: correlation id, throttle, [topic, [partition, error, hw, lso, [aborted], records]].
  let at = 4 + 4 + 4;
  at += 2 + response.readInt16BE(at);
  at += 4 + 4; // partition count, partition
  const errorCode = response.readInt16BE(at);
  if (errorCode !== 0) throw new Error(`Fetch of ${topic}[${partition}] failed with Kafka error ${errorCode}`);
  at += 2 + 8 + 8;
  const aborted = response.readInt32BE(at);
  at += 4 + Math.max(0, aborted) * 16;
  const size = response.readInt32BE(at);
  at += 4;
  const end = at + size;
  const codecs: number[] = [];
  while (at + 61 <= end) {
    const length = response.readInt32BE(at + 8);
    if (at + 12 + length > end) break; // a partial batch at the end of the answer
    codecs.push(response.readInt16BE(at + 21) & 0x07);
    at += 12 + length;
  }
  return codecs;
}
