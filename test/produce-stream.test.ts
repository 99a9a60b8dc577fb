// IngestService.ProduceStream against real broker processes over real HTTP/2
// sockets: batches answered in order with the unary call's counts, a refused
// batch (invalid activation, backpressure) answered without ending the
// stream, per-message signing (any configured secret, a wrong, missing or
// stale signature ends the stream and stores nothing), the status codes that
// end a stream, graceful shutdown, the SDK producer on the stream, and its
// fallback to unary Produce against a server without the method. The codecs
// are checked against @bufbuild/protobuf.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import {
  ProduceRequestSchema,
  ProduceResponseSchema,
  ProduceStreamRequestSchema,
  ProduceStreamResponseSchema,
} from "../src/gen/taskplatform/v1/ingest_pb.ts";
import { adminClient, createBrokerClient } from "../src/connect/client.ts";
import { openProduceStream } from "../src/connect/produce-stream-client.ts";
import { signTimestamped } from "../src/connect/signing.ts";
import {
  PRODUCE_STREAM_PATH,
  decodeProduceStreamRequest,
  decodeProduceStreamResponse,
  encodeProduceStreamRequest,
  encodeProduceStreamResponse,
} from "../src/protocol/ingest-stream-messages.ts";
import { encodeProduceRequest } from "../src/protocol/messages.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import { activation } from "./support/activations.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { join } from "node:path";
import { frame, rawCall } from "./support/rpc-clients.ts";

function bytesOf(n: number, application = "produce-stream"): Uint8Array[] {
  return Array.from({ length: n }, () => toBinary(TaskActivationSchema, activation({ application })));
}

/** Rows the broker holds, in any state. */
async function held(b: BrokerProcess, secrets?: string[]): Promise<number> {
  const d = await adminClient(b.address, secrets).getDepths({});
  return d.totals.reduce((n, t) => n + Number(t.count), 0);
}

describe("ProduceStream codecs", () => {
  test("request and response match @bufbuild/protobuf both ways", () => {
    const request = encodeProduceRequest(bytesOf(2));
    const ours = encodeProduceStreamRequest({ request, timestamp: 1_700_000_000, signature: "ab".repeat(32) });
    const theirs = fromBinary(ProduceStreamRequestSchema, ours);
    expect(theirs.timestamp).toBe(1_700_000_000n);
    expect(theirs.signature).toBe("ab".repeat(32));
    expect(fromBinary(ProduceRequestSchema, theirs.request).activations).toHaveLength(2);
    const back = decodeProduceStreamRequest(toBinary(ProduceStreamRequestSchema, theirs));
    expect(Buffer.from(back.request).equals(Buffer.from(request))).toBe(true);
    expect(back.timestamp).toBe(1_700_000_000);

    const ok = fromBinary(
      ProduceStreamResponseSchema,
      encodeProduceStreamResponse({ ok: true, counts: { accepted: 3, duplicates: 1, expired: 0 } }),
    );
    expect(ok.code).toBe(0);
    expect(ok.produced?.accepted).toBe(3);
    expect(ok.produced?.duplicates).toBe(1);
    const refused = toBinary(
      ProduceStreamResponseSchema,
      create(ProduceStreamResponseSchema, { code: Code.ResourceExhausted, message: "later" }),
    );
    expect(decodeProduceStreamResponse(refused)).toEqual({ ok: false, code: Code.ResourceExhausted, message: "later" });
    // Counts of zero are still a success (an empty ProduceResponse is present on the wire).
    const empty = toBinary(
      ProduceStreamResponseSchema,
      create(ProduceStreamResponseSchema, { produced: create(ProduceResponseSchema, {}) }),
    );
    expect(decodeProduceStreamResponse(empty)).toEqual({
      ok: true,
      counts: { accepted: 0, duplicates: 0, expired: 0 },
    });
  });
});

describe("ProduceStream", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_STORE__MAX_PENDING_COUNT: "300" });
  });
  afterAll(async () => {
    await broker.stop();
  });

  test("batches are stored and answered in order with Produce's counts; a repeated batch counts as duplicates", async () => {
    const s = openProduceStream({ address: broker.address, keepaliveMs: 0 });
    const batches = [bytesOf(3), bytesOf(1), bytesOf(5)];
    const answers = await Promise.all([...batches.map((b) => s.produce(b)), s.produce(batches[0]!)]);
    expect(answers.map((a) => a.accepted)).toEqual([3, 1, 5, 0]);
    expect(answers[3]!.duplicates).toBe(3);
    expect(s.accepted).toBe(true);
    // Each stored activation is claimable, exactly as if produced by the unary call.
    const c = createBrokerClient({ address: broker.address });
    const ids = new Set(batches.flat().map((b) => fromBinary(TaskActivationSchema, b).id));
    for (let i = 0; i < 9; i++) {
      const a = await c.getTask({ application: "produce-stream" });
      expect(a).not.toBeNull();
      expect(ids.delete(a!.id)).toBe(true);
      await c.setTaskStatus({ id: a!.id, status: 5 });
    }
    expect(ids.size).toBe(0);
    await c.close();
    await s.close();
    expect(s.over).toBe(true);
  });

  test("a refused batch is answered and the stream goes on: invalid activation, then backpressure", async () => {
    const s = openProduceStream({ address: broker.address, keepaliveMs: 0 });
    const bad = toBinary(TaskActivationSchema, activation({ namespace: "" }));
    const refusal = await s.produce([bytesOf(1)[0]!, bad]).catch((e: ConnectError) => e);
    expect(refusal).toBeInstanceOf(ConnectError);
    expect((refusal as ConnectError).code).toBe(Code.InvalidArgument);
    expect((refusal as ConnectError).rawMessage).toContain("activation 1");
    expect(s.over).toBe(false);
    // max_pending_count is 300: a batch of 400 cannot fit.
    const full = await s.produce(bytesOf(400)).catch((e: ConnectError) => e);
    expect((full as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((await s.produce(bytesOf(2))).accepted).toBe(2);
    await s.close();
  });

  test("status codes that end a stream; the broker keeps serving", async () => {
    // Not a ProduceStreamRequest.
    let r = await rawCall(broker.address, PRODUCE_STREAM_PATH, frame(Buffer.from([0x0a, 0x05, 0x01])));
    expect(r.grpcStatus).toBe(Code.Internal);
    // A ProduceRequest inside that does not decode: that batch is refused (answered), then the stream ends OK.
    r = await rawCall(
      broker.address,
      PRODUCE_STREAM_PATH,
      frame(encodeProduceStreamRequest({ request: Buffer.from([0x0a, 0x09]) })),
    );
    expect(r.grpcStatus).toBe(0);
    expect(decodeProduceStreamResponse(r.body.subarray(5)).ok).toBe(false);
    // Larger than grpc_max_message_bytes (default 16 MiB).
    const big = Buffer.alloc(17 * 1024 * 1024);
    r = await rawCall(broker.address, PRODUCE_STREAM_PATH, frame(encodeProduceStreamRequest({ request: big })));
    expect(r.grpcStatus).toBe(Code.ResourceExhausted);
    // Connect cannot carry it: the router answers the call with UNIMPLEMENTED in its end-of-stream message.
    r = await rawCall(broker.address, PRODUCE_STREAM_PATH, frame(Buffer.alloc(0)), {
      "content-type": "application/connect+proto",
    });
    expect(r.body.toString()).toContain('"code":"unimplemented"');
    const s = openProduceStream({ address: broker.address, keepaliveMs: 0 });
    expect((await s.produce(bytesOf(1))).accepted).toBe(1);
    await s.close();
  });

  test("the SDK producer produces over the stream", async () => {
    const p = createRpcProducer({ address: broker.address, transport: "stream" });
    const before = await held(broker);
    const bytes = bytesOf(50);
    await Promise.all(bytes.map((b) => p.send("t", fromBinary(TaskActivationSchema, b), b)));
    expect((await held(broker)) - before).toBe(50);
    await p.close();
  });
});

describe("ProduceStream with request signing", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(["new key", "old key"]) });
  });
  afterAll(async () => {
    await broker.stop();
  });

  const outcome = (secrets?: string[]) => {
    const s = openProduceStream({ address: broker.address, secrets, keepaliveMs: 0 });
    return s.produce(bytesOf(1, "signed")).then(
      (c) => (s.destroy(), `stored ${c.accepted}`),
      (e: ConnectError) => (s.destroy(), Code[e.code]),
    );
  };

  test("every message is signed; any configured secret is accepted", async () => {
    expect(await outcome()).toBe("Unauthenticated");
    expect(await outcome(["wrong"])).toBe("Unauthenticated");
    expect(await outcome(["new key"])).toBe("stored 1");
    expect(await outcome(["old key"])).toBe("stored 1");
  });

  test("a signature of another batch, or one outside the window, ends the stream and stores nothing", async () => {
    const before = await held(broker, ["old key"]);
    const good = encodeProduceRequest(bytesOf(1, "signed"));
    const forged = encodeProduceRequest(bytesOf(2, "signed"));
    const now = Math.floor(Date.now() / 1000);
    const send = (request: Uint8Array, signedOver: Uint8Array, timestamp: number) =>
      rawCall(
        broker.address,
        PRODUCE_STREAM_PATH,
        frame(
          encodeProduceStreamRequest({
            request,
            timestamp,
            signature: signTimestamped("new key", String(timestamp), PRODUCE_STREAM_PATH, signedOver),
          }),
        ),
      );
    expect((await send(forged, good, now)).grpcStatus).toBe(Code.Unauthenticated);
    expect((await send(good, good, now - 3600)).grpcStatus).toBe(Code.Unauthenticated);
    expect(await held(broker, ["old key"])).toBe(before);
    const ok = await send(good, good, now);
    expect(ok.grpcStatus).toBe(0);
    expect(decodeProduceStreamResponse(ok.body.subarray(5))).toEqual({
      ok: true,
      counts: { accepted: 1, duplicates: 0, expired: 0 },
    });
  });

  test("the SDK producer signs its stream with its first secret", async () => {
    const p = createRpcProducer({ address: broker.address, secrets: ["old key"], transport: "stream" });
    const b = bytesOf(1, "signed")[0]!;
    await p.send("t", fromBinary(TaskActivationSchema, b), b);
    await p.close();
  });
});

describe("ProduceStream: shutdown, and brokers without it", () => {
  test("on SIGTERM the broker answers what it received and ends the stream UNAVAILABLE", async () => {
    const broker = await spawnBroker({});
    const s = openProduceStream({ address: broker.address, keepaliveMs: 0 });
    expect((await s.produce(bytesOf(1))).accepted).toBe(1);
    const stopped = broker.stop();
    const end = await s.ended;
    expect(end?.code).toBe(Code.Unavailable);
    expect(end?.rawMessage).toContain("shutting down");
    expect(s.over).toBe(true);
    const after = await s.produce(bytesOf(1)).catch((e: ConnectError) => e);
    expect((after as ConnectError).code).toBe(Code.Unavailable);
    expect(await stopped).toBe(0);
  });

  test("against a server without the method the SDK producer falls back to unary Produce", async () => {
    // A gRPC server that has IngestService.Produce but not ProduceStream (an older broker).
    const server = new grpc.Server();
    let unaryCalls = 0;
    const stored: Uint8Array[] = [];
    server.addService(
      {
        produce: {
          path: "/taskplatform.v1.IngestService/Produce",
          requestStream: false,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      {
        produce: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          unaryCalls++;
          const req = fromBinary(ProduceRequestSchema, call.request);
          for (const a of req.activations) stored.push(toBinary(TaskActivationSchema, a));
          cb(
            null,
            Buffer.from(
              toBinary(ProduceResponseSchema, create(ProduceResponseSchema, { accepted: req.activations.length })),
            ),
          );
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    try {
      const p = createRpcProducer({ address: `127.0.0.1:${port}` });
      const bytes = bytesOf(5);
      for (const b of bytes) await p.send("t", fromBinary(TaskActivationSchema, b), b);
      await p.close();
      expect(stored).toHaveLength(5);
      expect(unaryCalls).toBeGreaterThan(0);
      // transport "stream" insists, and says why.
      const strict = createRpcProducer({ address: `127.0.0.1:${port}`, transport: "stream", retryForMs: 0 });
      const err = await strict.send("t", fromBinary(TaskActivationSchema, bytes[0]!), bytes[0]!).catch((e) => e);
      expect(ConnectError.from(err).code).toBe(Code.Unimplemented);
      await strict.close();
    } finally {
      server.forceShutdown();
    }
  });
});

describe("ProduceStream: broker killed mid-stream, restarted", () => {
  test("the SDK producer sends the unanswered batches again: every activation stored once, none lost", async () => {
    const dbPath = join(tempDir("tp-produce-kill-"), "inflight.sqlite");
    const env = { TASKBROKER_STORE__MAX_PENDING_COUNT: "100000" };
    let broker = await spawnBroker(env, { dbPath });
    const port = String(broker.port);
    const p = createRpcProducer({ address: broker.address, retryForMs: 30_000 });
    const bytes = bytesOf(3000, "kill");
    const send = (b: Uint8Array) => p.send("t", fromBinary(TaskActivationSchema, b), b);
    await Promise.all(bytes.slice(0, 500).map(send));
    // The rest goes out (or queues) on the open stream, and the broker dies before it can answer any of it.
    const rest = Promise.all(bytes.slice(500).map(send));
    broker.kill9();
    await broker.proc.exited;
    broker = await spawnBroker({ ...env, TASKBROKER_GRPC_PORT: port }, { dbPath });
    await rest;
    await p.close();
    try {
      // Exactly the 3000: what was acknowledged before the kill survived it, and resent batches were duplicates.
      expect(await held(broker)).toBe(3000);
    } finally {
      await broker.stop();
    }
  });
});
