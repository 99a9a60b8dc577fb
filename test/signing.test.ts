// Request signing (docs/spec/wire-contract.md "Request signing"): the known-answer
// vectors, then a broker process with secrets configured, called by grpc-js,
// raw HTTP/2, Connect (JSON and binary) and gRPC-Web; then our timestamped
// signature (docs/spec/signing.md): the window, and a broker that requires it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConsumerService, GetTaskRequestSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import {
  TIMESTAMP_HEADER,
  signRequest,
  signatureHeaders,
  signedMessageBytes,
  verifyRequestSignature,
  verifySignature,
} from "../src/connect/signing.ts";
import { createBrokerClient } from "../src/connect/client.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import {
  GET_TASK,
  HEALTH_CHECK,
  PRODUCE,
  activation,
  connectClient,
  encode,
  frame,
  grpcJsClient,
  rawCall,
  signed,
  unary,
} from "./support/rpc-clients.ts";
import { ProduceRequestSchema } from "../src/gen/taskplatform/v1/ingest_pb.ts";

const VECTOR_1 = {
  secret: "a long secret value",
  path: "/sentry_protos.taskbroker.v1.ConsumerService/GetTask",
  message: Buffer.from("120673656e747279", "hex"),
  signature: "556b2e74f2d5a1d0134b1f803c9bfaa8467bbd8e4cb510a9856c5e2ef2b66a21",
};
const VECTOR_2 = {
  secret: "super secret",
  path: "/sentry_protos.taskbroker.v1.WorkerService/PushTask",
  message: Buffer.from("hello"),
  signature: "cfdf2c4d2efd3a2d28bd10de6471ef352d03f49d2d3bd880ee7051ea39fbe239",
};

describe("signing functions", () => {
  test("known-answer vectors of the wire contract", () => {
    for (const v of [VECTOR_1, VECTOR_2]) {
      expect(signRequest(v.secret, v.path, v.message)).toBe(v.signature);
      expect(verifySignature([v.secret], v.path, v.message, v.signature)).toBe(true);
      expect(verifySignature([v.secret], v.path, v.message, v.signature.toUpperCase())).toBe(true);
    }
    // The vector's message is GetTaskRequest{application:"sentry"}.
    expect(encode(GetTaskRequestSchema, { application: "sentry" })).toEqual(VECTOR_1.message);
  });

  test("any configured secret verifies; malformed headers are rejections, not exceptions", () => {
    const v = VECTOR_1;
    expect(verifySignature(["other", v.secret], v.path, v.message, v.signature)).toBe(true);
    expect(verifySignature(["other"], v.path, v.message, v.signature)).toBe(false);
    for (const bad of [undefined, null, "", "zz".repeat(32), v.signature.slice(2), v.signature + "00", ["a"]]) {
      expect(verifySignature([v.secret], v.path, v.message, bad as string)).toBe(false);
    }
    expect(verifySignature([v.secret], v.path + "x", v.message, v.signature)).toBe(false);
  });

  test("signed bytes per content type: envelope stripped for gRPC, whole body for Connect unary", () => {
    const msg = Buffer.from([1, 2, 3]);
    expect(signedMessageBytes("application/grpc", frame(msg))).toEqual(msg);
    expect(signedMessageBytes("application/grpc-web+proto", frame(msg))).toEqual(msg);
    expect(signedMessageBytes("application/proto", msg)).toEqual(msg);
    expect(signedMessageBytes("application/grpc", Buffer.from([0, 0, 0]))).toBeNull();
    expect(signedMessageBytes("application/grpc", frame(msg).subarray(0, 6))).toBeNull();
  });
});

describe("broker with TASKBROKER_GRPC_SHARED_SECRET", () => {
  let broker: BrokerProcess;
  const secrets = ["rotated new secret", VECTOR_1.secret];
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(secrets) });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("grpc-js: the known-answer request is accepted (second secret: rotation)", async () => {
    const c = grpcJsClient(broker.address);
    const r = await unary(c, GET_TASK, VECTOR_1.message, { "sentry-signature": VECTOR_1.signature });
    expect(r.code).toBe(Code.NotFound); // authenticated; nothing stored
    expect(r.details).toBe("No pending activations");
    const first = await unary(c, GET_TASK, VECTOR_1.message, signed(secrets[0]!, GET_TASK, VECTOR_1.message));
    expect(first.code).toBe(Code.NotFound);
    c.close();
  });

  test("grpc-js: wrong key, missing header, non-hex header, signature of another path -> UNAUTHENTICATED", async () => {
    const c = grpcJsClient(broker.address);
    const m = VECTOR_1.message;
    const cases: Record<string, string>[] = [
      signed("wrong key", GET_TASK, m),
      {},
      { "sentry-signature": "not hex at all" },
      { "sentry-signature": "ab" },
      signed(VECTOR_1.secret, "/sentry_protos.taskbroker.v1.ConsumerService/SetTaskStatus", m),
    ];
    for (const md of cases) {
      const r = await unary(c, GET_TASK, m, md);
      expect(r.code).toBe(Code.Unauthenticated);
      expect(r.details).toBe("Authentication failed");
    }
    c.close();
  });

  test("a 3-byte body (shorter than a frame header) is rejected and the broker keeps serving", async () => {
    for (const body of [Buffer.from([0, 0, 0]), Buffer.alloc(0), Buffer.from([0, 0, 0, 0, 9, 1])]) {
      const r = await rawCall(broker.address, GET_TASK, body, { "sentry-signature": VECTOR_1.signature });
      expect(r.grpcStatus).toBe(Code.Unauthenticated);
      expect(r.grpcMessage).toBe("Authentication failed");
    }
    const ok = await rawCall(broker.address, GET_TASK, frame(VECTOR_1.message), {
      "sentry-signature": VECTOR_1.signature,
    });
    expect(ok.grpcStatus).toBe(Code.NotFound);
    expect(broker.proc.exitCode).toBeNull();
  });

  test("health is exempt from signing", async () => {
    const r = await rawCall(broker.address, HEALTH_CHECK, frame(Buffer.alloc(0)));
    expect(r.grpcStatus).toBe(0);
    expect(r.body).toEqual(frame(Buffer.from([0x08, 0x01]))); // status: SERVING
  });

  test("Produce is signed like every other method", async () => {
    const req = encode(ProduceRequestSchema, {});
    const c = grpcJsClient(broker.address);
    expect((await unary(c, PRODUCE, req, {})).code).toBe(Code.Unauthenticated);
    expect((await unary(c, PRODUCE, req, signed(secrets[1]!, PRODUCE, req))).code).toBe(0);
    c.close();
  });

  test("the project client signs with its first secret", async () => {
    const good = createBrokerClient({ address: broker.address, secrets: [VECTOR_1.secret] });
    expect(await good.getTask({ application: "sentry" })).toBeNull();
    const bad = createBrokerClient({ address: broker.address, secrets: ["nope", VECTOR_1.secret] });
    const err = await bad.getTask({ application: "sentry" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    await good.close();
    await bad.close();
  });

  for (const flavour of ["connect-json", "connect-binary", "grpc-web"] as const) {
    for (const httpVersion of ["1.1", "2"] as const) {
      test(`${flavour} over HTTP/${httpVersion}: signed accepted, unsigned UNAUTHENTICATED`, async () => {
        const good = connectClient(ConsumerService, broker.address, flavour, { httpVersion, secret: VECTOR_1.secret });
        const e1 = await good.getTask({ application: "app" }).catch((e: unknown) => ConnectError.from(e));
        expect((e1 as ConnectError).code).toBe(Code.NotFound);
        const bad = connectClient(ConsumerService, broker.address, flavour, { httpVersion, secret: "wrong" });
        const e2 = await bad.getTask({ application: "app" }).catch((e: unknown) => ConnectError.from(e));
        expect((e2 as ConnectError).code).toBe(Code.Unauthenticated);
        const none = connectClient(ConsumerService, broker.address, flavour, { httpVersion });
        const e3 = await none.getTask({ application: "app" }).catch((e: unknown) => ConnectError.from(e));
        expect((e3 as ConnectError).code).toBe(Code.Unauthenticated);
        expect((e3 as ConnectError).rawMessage).toBe("Authentication failed");
      });
    }
  }

  test("an activation produced with a signature can be claimed with one", async () => {
    const client = createBrokerClient({ address: broker.address, secrets: [VECTOR_1.secret] });
    await client.produce([activation("0f1e2d3c4b5a69788796a5b4c3d2e1f0", { application: "sentry" })]);
    const got = await client.getTask({ application: "sentry" });
    expect(got?.id).toBe("0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    await client.close();
  });
});

describe("timestamped signatures (our extension)", () => {
  const policy = { secrets: ["k1", "k0"], maxAgeSec: 60, requireTimestamp: false };
  const msg = Buffer.from("120673656e747279", "hex");
  const headersOf = (h: Record<string, string>) => (n: string) => h[n];

  test("inside the window accepted, outside or tampered refused; Sentry's header alone still accepted unless required", () => {
    const now = 1_700_000_000_000;
    const h = signatureHeaders("k1", GET_TASK, msg, now);
    expect(h[TIMESTAMP_HEADER]).toBe("1700000000");
    expect(h["sentry-signature"]).toBe(signRequest("k1", GET_TASK, msg));
    expect(verifyRequestSignature(policy, GET_TASK, msg, headersOf(h), now + 59_000)).toBe(true);
    expect(verifyRequestSignature(policy, GET_TASK, msg, headersOf(h), now + 61_000)).toBe(false);
    expect(verifyRequestSignature(policy, GET_TASK, msg, headersOf(h), now - 61_000)).toBe(false);
    // A new timestamp on a captured signature does not verify: the timestamp is signed.
    expect(
      verifyRequestSignature(
        policy,
        GET_TASK,
        msg,
        headersOf({ ...h, [TIMESTAMP_HEADER]: "1700000050" }),
        now + 61_000,
      ),
    ).toBe(false);
    expect(verifyRequestSignature(policy, GET_TASK, Buffer.from("other"), headersOf(h), now)).toBe(false);
    expect(verifyRequestSignature(policy, GET_TASK, msg, headersOf({ ...h, [TIMESTAMP_HEADER]: "soon" }), now)).toBe(
      false,
    );
    const sentryOnly = { "sentry-signature": h["sentry-signature"]! };
    expect(verifyRequestSignature(policy, GET_TASK, msg, headersOf(sentryOnly), now + 999_000)).toBe(true);
    expect(
      verifyRequestSignature({ ...policy, requireTimestamp: true }, GET_TASK, msg, headersOf(sentryOnly), now),
    ).toBe(false);
    expect(verifyRequestSignature({ ...policy, requireTimestamp: true }, GET_TASK, msg, headersOf(h), now)).toBe(true);
    // Rotation: the second secret verifies too.
    expect(
      verifyRequestSignature(policy, GET_TASK, msg, headersOf(signatureHeaders("k0", GET_TASK, msg, now)), now),
    ).toBe(true);
  });
});

describe("broker requiring timestamped signatures, window 2 s", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({
      TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(["ts-secret"]),
      TASKBROKER_GRPC_SIGNATURE_REQUIRE_TIMESTAMP: "true",
      TASKBROKER_GRPC_SIGNATURE_MAX_AGE_SEC: "2",
    });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("our client works; a Sentry-style signature alone is refused; a captured request replayed after the window is refused", async () => {
    const ours = createBrokerClient({ address: broker.address, secrets: ["ts-secret"] });
    expect(await ours.getTask({})).toBeNull(); // NOT_FOUND means authenticated and empty
    await ours.close();
    const client = grpcJsClient(broker.address);
    const body = encode(GetTaskRequestSchema, { application: "app" });
    expect((await unary(client, GET_TASK, body, signed("ts-secret", GET_TASK, body))).code).toBe(Code.Unauthenticated);
    const captured = signatureHeaders("ts-secret", GET_TASK, body);
    expect((await unary(client, GET_TASK, body, captured)).code).toBe(Code.NotFound);
    // Replayed later, word for word: the window has passed.
    const stale = signatureHeaders("ts-secret", GET_TASK, body, Date.now() - 3000);
    expect((await unary(client, GET_TASK, body, stale)).code).toBe(Code.Unauthenticated);
    client.close();
  });
});
