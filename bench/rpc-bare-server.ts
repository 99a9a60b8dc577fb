// The yardstick for bench/rpc.ts: a bare node:http2 'stream' handler with the
// same gRPC framing and trailers as the broker's fast path, answering every
// call with one constant GetTaskResponse (no store, no decoding). What the
// broker achieves relative to this is the cost of everything else.
// Usage: bun bench/rpc-bare-server.ts <activation-bytes-hex>; prints "port=<n>".
import http2 from "node:http2";
import { framedTaskResponse } from "../src/connect/frame.ts";

const activation = Buffer.from(process.argv[2] ?? "", "hex");
const response = framedTaskResponse(activation);
const headers = { ":status": 200, "content-type": "application/grpc" };
const trailers = { "grpc-status": "0" };

const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on("stream", (stream: http2.ServerHttp2Stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.once("end", () => {
    stream.respond(headers, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers(trailers));
    stream.end(response);
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`port=${typeof address === "object" && address ? address.port : 0}`);
});
process.on("SIGTERM", () => process.exit(0));
