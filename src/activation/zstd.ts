// zstd for task parameters on both runtimes the SDK supports: Bun's built-in
// codec when running on Bun (the worker, the broker), a WebAssembly build of
// the reference library (@bokuweb/zstd-wasm) on Node, loaded once when this
// module is first imported there (a few ms). Both write single frames with
// the content size in the header, which Sentry's Python worker needs: it
// decompresses with the one-shot API that reads the size from the frame.

export interface ZstdCodec {
  compress(raw: Uint8Array, level: number): Uint8Array;
  decompress(frame: Uint8Array): Uint8Array;
}

declare const Bun:
  | { zstdCompressSync(b: Uint8Array, o: { level: number }): Uint8Array; zstdDecompressSync(b: Uint8Array): Uint8Array }
  | undefined;

async function load(): Promise<ZstdCodec> {
  if (typeof Bun !== "undefined") {
    const bun = Bun;
    return {
      compress: (raw, level) => new Uint8Array(bun.zstdCompressSync(raw, { level })),
      decompress: (frame) => new Uint8Array(bun.zstdDecompressSync(frame)),
    };
  }
  // A variable specifier keeps Bun's bundler (the compiled binary) from pulling the Node-only codec in.
  const specifier = "@bokuweb/zstd-wasm";
  const wasm = (await import(specifier)) as {
    init(): Promise<void>;
    compress(b: Uint8Array, level: number): Uint8Array;
    decompress(b: Uint8Array): Uint8Array;
  };
  await wasm.init();
  return {
    compress: (raw, level) => wasm.compress(raw, level),
    decompress: (frame) => wasm.decompress(frame),
  };
}

export const zstd: ZstdCodec = await load();
