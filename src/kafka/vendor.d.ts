// Types for the library internals src/kafka/ imports by path: kafkajs's
// record encoder/decoder (kafkajs-codecs.ts) and lz4js's xxHash32 (codecs.ts).
// Static imports, so the compiled binary bundles them.

declare module "kafkajs/src/protocol/decoder.js" {
  export default class Decoder {
    constructor(buffer: Buffer);
    readVarIntBytes(): Buffer;
  }
}

declare module "kafkajs/src/protocol/recordBatch/record/v0/decoder.js" {
  import type Decoder from "kafkajs/src/protocol/decoder.js";
  export default function decodeRecord(decoder: Decoder, context: Record<string, unknown>): unknown;
}

declare module "kafkajs/src/protocol/recordBatch/record/v0/index.js" {
  export default function encodeRecord(record: {
    offsetDelta: number;
    key: Buffer | null;
    value: Buffer | null;
    headers: Record<string, Buffer>;
  }): { buffer: Buffer };
}

declare module "lz4js/xxh32.js" {
  export function hash(seed: number, src: Uint8Array, index: number, length: number): number;
}
