// Idempotency keys (docs/spec/idempotency.md): an activation carrying the
// `taskplatform-idempotency-key` header claims the key for the window; a
// second activation with the same key is dropped at ingest and counted, even
// after the first completed and its row was deleted, from the RPC path and
// the Kafka path alike (one ingest), and across a broker restart. Retries and
// replays do not meet their own key. Real SQLite files; the end-to-end part
// runs a broker process and an independent gRPC client.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { brokerConfigSchema } from "../src/config/broker.ts";
import {
  GetTaskResponseSchema,
  SetTaskStatusRequestSchema,
  TaskActivationSchema,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { GetActivationRequestSchema } from "../src/gen/taskplatform/v1/admin_pb.ts";
import { ProduceResponseSchema } from "../src/gen/taskplatform/v1/ingest_pb.ts";
import { buildReplayActivation, buildRetryActivation } from "../src/activation/rewrite.ts";
import { createIngest } from "../src/ingest/ingest.ts";
import { silentLogger } from "../src/log.ts";
import { registry } from "../src/metrics.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { GET_TASK, PRODUCE, SET_STATUS, activation, encode, grpcJsClient, unary } from "./support/rpc-clients.ts";
import { activationBytes, tempStore, type TempStore } from "./store-fixtures.ts";

const KEY = "taskplatform-idempotency-key";
const GET_ACTIVATION = "/taskplatform.v1.AdminService/GetActivation";
let t: TempStore | null = null;
afterEach(async () => {
  await t?.cleanup();
  t = null;
});

function ingestFor(store: TempStore["store"], windowSec = 3600) {
  const config = brokerConfigSchema.parse({ idempotency_window_sec: windowSec, store: { max_pending_count: 100000 } });
  return createIngest({ store, config, log: silentLogger });
}

async function counted(result: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === "taskbroker_ingest_total");
  return m?.values.filter((v) => v.labels.result === result).reduce((a, v) => a + v.value, 0) ?? 0;
}

describe("ingest with idempotency keys (real SQLite)", () => {
  test("a second activation with a live key is dropped and counted, even after the first finished and was deleted", async () => {
    t = tempStore({ idempotencyWindowMs: 3_600_000 });
    const ingest = ingestFor(t.store);
    const before = await counted("duplicate_key");
    const first = activationBytes({ headers: { [KEY]: "order-1" } });
    expect(ingest.produce([first], "rpc")).toMatchObject({ accepted: 1, duplicates: 0, keyDuplicates: 0 });
    // A new id with the same key (a producer retrying after a lost answer), in the same batch and later.
    const again = () => activationBytes({ headers: { [KEY]: "order-1", other: "x" } });
    expect(ingest.produce([again(), again()], "rpc")).toMatchObject({ accepted: 0, duplicates: 2, keyDuplicates: 2 });

    const claimed = await t.store.claim({});
    await t.store.setStatus({ id: claimed!.id, status: "complete" });
    expect(t.store.deleteComplete()).toBe(1);
    expect(t.store.getActivation(claimed!.id)).toBeNull();
    // Row gone; the key is not. From the Kafka path too (the same ingest), and after a restart.
    expect(ingest.produce([again()], "kafka", [{ topic: "tasks", partition: 0, offset: "7" }])).toMatchObject({
      accepted: 0,
      keyDuplicates: 1,
    });
    const reopened = await t.reopen();
    expect(ingestFor(reopened).produce([again()], "rpc")).toMatchObject({ accepted: 0, keyDuplicates: 1 });
    expect(reopened.counts().pending).toBe(0);
    expect((await counted("duplicate_key")) - before).toBe(4);
  });

  test("keys are scoped by application; activations without a key are untouched", () => {
    t = tempStore();
    const ingest = ingestFor(t.store);
    const r = ingest.produce(
      [
        activationBytes({ headers: { [KEY]: "k" }, application: "a" }),
        activationBytes({ headers: { [KEY]: "k" }, application: "b" }),
        activationBytes(),
        activationBytes({ headers: { [KEY]: "" } }), // empty: no key
        activationBytes({ headers: { [KEY]: "" } }),
      ],
      "rpc",
    );
    expect(r).toMatchObject({ accepted: 5, duplicates: 0 });
  });

  test("a key may be claimed again once its window has passed; upkeep's sweep deletes expired keys", async () => {
    t = tempStore({ idempotencyWindowMs: 150 });
    const ingest = ingestFor(t.store);
    expect(ingest.produce([activationBytes({ headers: { [KEY]: "w" } })], "rpc").accepted).toBe(1);
    expect(ingest.produce([activationBytes({ headers: { [KEY]: "w" } })], "rpc").keyDuplicates).toBe(1);
    await Bun.sleep(200);
    expect(ingest.produce([activationBytes({ headers: { [KEY]: "w" } })], "rpc").accepted).toBe(1);
    expect(t.store.idempotencyKeyCount()).toBe(1);
    expect(t.store.removeExpiredKeys(Date.now() + 1000, 100)).toBe(1);
    expect(t.store.idempotencyKeyCount()).toBe(0);
  });

  test("a long key is stored hashed and still deduplicates", () => {
    t = tempStore();
    const ingest = ingestFor(t.store);
    const long = "x".repeat(5000);
    expect(ingest.produce([activationBytes({ headers: { [KEY]: long } })], "rpc").accepted).toBe(1);
    expect(ingest.produce([activationBytes({ headers: { [KEY]: long } })], "rpc").keyDuplicates).toBe(1);
    expect(ingest.produce([activationBytes({ headers: { [KEY]: `${long}y` } })], "rpc").accepted).toBe(1);
  });

  test("retries and dead-letter replays carry no key, so they never meet their own", () => {
    t = tempStore();
    const ingest = ingestFor(t.store);
    const original = activationBytes({ headers: { [KEY]: "r", keep: "1" } });
    expect(ingest.produce([original], "rpc").accepted).toBe(1);
    const retry = buildRetryActivation(original, Date.now());
    const replay = buildReplayActivation(original, Date.now());
    for (const b of [retry.bytes, replay.bytes]) {
      const headers = fromBinary(TaskActivationSchema, b).headers;
      expect(headers[KEY]).toBeUndefined();
      expect(headers.keep).toBe("1");
    }
    expect(ingest.produce([retry.bytes, replay.bytes], "kafka").accepted).toBe(2);
  });
});

describe("over the RPC port (broker process, grpc-js client)", () => {
  let broker: BrokerProcess;
  let client: grpc.Client;
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100" });
    client = grpcJsClient(broker.address);
  });
  afterAll(async () => {
    client?.close();
    await broker?.stop();
  });

  const produce = async (id: string, key: string) => {
    const a = activation(id, { headers: { [KEY]: key } });
    const r = await unary(client, PRODUCE, Buffer.concat([Buffer.from([0x0a, a.byteLength]), a]));
    expect(r.code).toBe(0);
    return fromBinary(ProduceResponseSchema, r.response!);
  };

  test("Produce retried with the same key after the first ran to completion stores nothing", async () => {
    expect((await produce("idem00000000000000000000000000a1", "job-7")).accepted).toBe(1);
    expect(await produce("idem00000000000000000000000000a2", "job-7")).toMatchObject({ accepted: 0, duplicates: 1 });
    const got = await unary(client, GET_TASK, Buffer.alloc(0));
    const id = fromBinary(GetTaskResponseSchema, got.response!).task!.id;
    expect(id).toBe("idem00000000000000000000000000a1");
    expect((await unary(client, SET_STATUS, encode(SetTaskStatusRequestSchema, { id, status: 5 }))).code).toBe(0);
    // Upkeep deletes the Complete row (every 100 ms here); the key outlives it.
    const gone = async () =>
      (await unary(client, GET_ACTIVATION, encode(GetActivationRequestSchema, { id }))).code === 5; // NOT_FOUND
    for (let i = 0; !(await gone()); i++) {
      if (i > 200) throw new Error("the completed row was never deleted");
      await Bun.sleep(20);
    }
    expect(await produce("idem00000000000000000000000000a3", "job-7")).toMatchObject({ accepted: 0, duplicates: 1 });
    expect((await unary(client, GET_TASK, Buffer.alloc(0))).code).toBe(5); // NOT_FOUND: nothing to run twice
  });
});

describe("the SDK", () => {
  test("applyAsync/buildActivation options carry the key in the header the broker reads", async () => {
    const { createApp } = await import("../src/sdk/index.ts");
    const app = createApp({ name: "idem" });
    const task = app.namespace("ns").register({ name: "idem.task", handler: () => {} });
    const built = task.buildActivation({ args: [], idempotencyKey: "order-42" });
    expect(built.activation.headers[KEY]).toBe("order-42");
    expect(fromBinary(TaskActivationSchema, built.bytes).headers[KEY]).toBe("order-42");
    expect(task.buildActivation({ args: [] }).activation.headers[KEY]).toBeUndefined();
  });
});
