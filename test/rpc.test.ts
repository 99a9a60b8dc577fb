// The broker's RPC surface as existing clients see it: every status code of
// docs/spec/wire-contract.md "Status codes", the Produce ingest RPC, ordering and
// concurrent claims, oversize and garbage bodies, over a real broker process
// called by @grpc/grpc-js, raw HTTP/2 and connect-es (Connect, gRPC-Web).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ConsumerService,
  GetTaskRequestSchema,
  SetBatchActivationStatusRequestSchema,
  SetTaskStatusRequestSchema,
  TaskActivationSchema,
  TaskActivationStatus,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { IngestService, ProduceRequestSchema, ProduceResponseSchema } from "../src/gen/taskplatform/v1/ingest_pb.ts";
import { AdminService } from "../src/gen/taskplatform/v1/admin_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import {
  GET_TASK,
  PRODUCE,
  SET_BATCH,
  SET_STATUS,
  activation,
  connectClient,
  encode,
  frame,
  grpcJsClient,
  produceRequest,
  rawCall,
  unary,
} from "./support/rpc-clients.ts";
import type * as grpc from "@grpc/grpc-js";
import net from "node:net";

const { COMPLETE, FAILURE, RETRY, PENDING, PROCESSING, UNSPECIFIED } = TaskActivationStatus;

/** The task bytes (field 1) of a GetTaskResponse / SetTaskStatusResponse, exactly as sent. */
function taskBytes(response: Buffer | undefined): Buffer | null {
  if (!response || response.byteLength === 0) return null;
  expect(response[0]).toBe(0x0a);
  let len = 0;
  let shift = 0;
  let i = 1;
  for (;;) {
    const b = response[i++]!;
    len += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
    shift += 7;
  }
  expect(i + len).toBe(response.byteLength);
  return response.subarray(i, i + len);
}
const taskId = (r: Buffer | undefined) => {
  const b = taskBytes(r);
  return b === null ? null : fromBinary(TaskActivationSchema, b).id;
};
const hexId = (prefix: string, i: number) => (prefix + i.toString(16)).padStart(32, "0").slice(-32);

let broker: BrokerProcess;
let client: grpc.Client;

beforeAll(async () => {
  broker = await spawnBroker({ TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "200" });
  client = grpcJsClient(broker.address);
});
afterAll(async () => {
  client?.close();
  expect(await broker?.stop()).toBe(0);
});

async function produce(acts: Uint8Array[]) {
  const r = await unary(client, PRODUCE, produceRequest(acts));
  expect(r.details).toBe("");
  return fromBinary(ProduceResponseSchema, r.response!);
}
const getTask = (application?: string, namespace?: string) =>
  unary(client, GET_TASK, encode(GetTaskRequestSchema, { application, namespace }));
const setStatus = (init: Parameters<typeof encode<typeof SetTaskStatusRequestSchema>>[1]) =>
  unary(client, SET_STATUS, encode(SetTaskStatusRequestSchema, init));

describe("GetTask", () => {
  test('nothing claimable: NOT_FOUND "No pending activations"', async () => {
    const r = await getTask("empty-app");
    expect(r.code).toBe(Code.NotFound);
    expect(r.details).toBe("No pending activations");
    expect((await getTask()).code).toBe(Code.NotFound);
  });

  test("Produce then GetTask serves the stored activation bytes unchanged", async () => {
    const acts = [activation(hexId("a1", 1), { application: "roundtrip", parametersBytes: new Uint8Array([1, 2, 3]) })];
    expect(await produce(acts)).toMatchObject({ accepted: 1, duplicates: 0, expired: 0 });
    expect((await produce(acts)).duplicates).toBe(1);
    const r = await getTask("roundtrip");
    expect(r.code).toBe(0);
    expect(taskBytes(r.response)).toEqual(acts[0]!);
    expect((await getTask("roundtrip")).code).toBe(Code.NotFound); // never handed out twice
  });

  test("oldest first by arrival, with sub-second precision", async () => {
    // Five arrivals well within one second (the reference broker's whole-second
    // ordering would make their order arbitrary); ids chosen so id order differs.
    const order = [3, 0, 4, 1, 2];
    for (const i of order) await produce([activation(hexId("b2", i), { application: "ordering" })]);
    const seen: (string | null)[] = [];
    for (let i = 0; i < 5; i++) seen.push(taskId((await getTask("ordering")).response));
    expect(seen).toEqual(order.map((i) => hexId("b2", i)));
  });

  test("namespace without application claims nothing (answered as empty)", async () => {
    await produce([activation(hexId("c3", 1), { application: "nsonly", namespace: "lonely" })]);
    const r = await getTask(undefined, "lonely");
    expect(r.code).toBe(Code.NotFound);
    expect(taskId((await getTask("nsonly", "lonely")).response)).toBe(hexId("c3", 1));
  });

  test("filters by application and namespace", async () => {
    await produce([
      activation(hexId("d4", 1), { application: "filter", namespace: "one" }),
      activation(hexId("d4", 2), { application: "filter", namespace: "two" }),
    ]);
    expect(taskId((await getTask("filter", "two")).response)).toBe(hexId("d4", 2));
    expect((await getTask("filter", "two")).code).toBe(Code.NotFound);
    expect(taskId((await getTask("filter")).response)).toBe(hexId("d4", 1));
  });

  test("2000 concurrent GetTask over 1000 rows: 1000 distinct activations and 1000 NOT_FOUND", async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => hexId("e5", i));
    expect((await produce(ids.map((id) => activation(id, { application: "concurrent" })))).accepted).toBe(1000);
    const results = await Promise.all(Array.from({ length: 2000 }, () => getTask("concurrent")));
    const claimed = results.filter((r) => r.code === 0).map((r) => taskId(r.response));
    const notFound = results.filter((r) => r.code === Code.NotFound);
    expect(claimed.length).toBe(1000);
    expect(new Set(claimed).size).toBe(1000);
    expect(new Set(claimed)).toEqual(new Set(ids));
    expect(notFound.length).toBe(1000);
  }, 60_000);
});

describe("SetTaskStatus and SetBatchActivationStatus", () => {
  test("a status other than FAILURE, RETRY, COMPLETE is INVALID_ARGUMENT", async () => {
    await produce([activation(hexId("f6", 1), { application: "status" })]);
    const id = taskId((await getTask("status")).response)!;
    for (const status of [UNSPECIFIED, PENDING, PROCESSING, 9 as TaskActivationStatus]) {
      const r = await setStatus({ id, status });
      expect(r.code).toBe(Code.InvalidArgument);
    }
    expect((await setStatus({ id, status: COMPLETE })).code).toBe(0);
  });

  test("an id the broker does not hold: OK with no task", async () => {
    for (const status of [COMPLETE, FAILURE, RETRY]) {
      const r = await setStatus({ id: "00000000000000000000000000000000", status });
      expect(r.code).toBe(0);
      expect(taskBytes(r.response)).toBeNull();
    }
  });

  test("fetch_next returns the next activation, or no task, never NOT_FOUND", async () => {
    await produce([
      activation(hexId("a7", 1), { application: "fetch" }),
      activation(hexId("a7", 2), { application: "fetch" }),
    ]);
    const first = taskId((await getTask("fetch")).response)!;
    const r1 = await setStatus({ id: first, status: COMPLETE, fetchNextTask: { application: "fetch" } });
    expect(r1.code).toBe(0);
    const second = taskId(r1.response);
    expect(second).toBe(hexId("a7", 2));
    const r2 = await setStatus({ id: second!, status: COMPLETE, fetchNextTask: { application: "fetch" } });
    expect(r2.code).toBe(0);
    expect(taskBytes(r2.response)).toBeNull();
    const r3 = await setStatus({ id: "unknown", status: COMPLETE, fetchNextTask: { namespace: "only-namespace" } });
    expect(r3.code).toBe(0);
  });

  test("batch: one invalid status rejects the whole request before anything is written", async () => {
    await produce([
      activation(hexId("b8", 1), { application: "batch" }),
      activation(hexId("b8", 2), { application: "batch" }),
    ]);
    const a = taskId((await getTask("batch")).response)!;
    const b = taskId((await getTask("batch")).response)!;
    const bad = encode(SetBatchActivationStatusRequestSchema, {
      updates: [
        { id: a, status: COMPLETE },
        { id: b, status: PENDING },
      ],
    });
    const r = await unary(client, SET_BATCH, bad);
    expect(r.code).toBe(Code.InvalidArgument);
    const admin = connectClient(AdminService, broker.address, "connect-binary");
    expect((await admin.getActivation({ id: a })).state).toBe("processing");
    const good = encode(SetBatchActivationStatusRequestSchema, {
      updates: [
        { id: a, status: COMPLETE },
        { id: b, status: FAILURE },
      ],
    });
    expect((await unary(client, SET_BATCH, good)).code).toBe(0);
    const states = await Promise.all(
      [a, b].map((id) =>
        admin.getActivation({ id }).then(
          (x) => x.state,
          () => "gone",
        ),
      ),
    );
    expect(states.every((s) => s !== "processing")).toBe(true);
  });
});

describe("Produce", () => {
  test("INVALID_ARGUMENT names the first bad activation and stores none of the batch", async () => {
    const good = activation(hexId("c9", 1), { application: "invalid-batch" });
    const noNamespace = activation(hexId("c9", 2), { application: "invalid-batch", namespace: "" });
    const r = await unary(client, PRODUCE, produceRequest([good, noNamespace]));
    expect(r.code).toBe(Code.InvalidArgument);
    expect(r.details).toContain("activation 1");
    expect(r.details).toContain("namespace");
    expect((await getTask("invalid-batch")).code).toBe(Code.NotFound);

    const undecodable = await unary(client, PRODUCE, produceRequest([good, Buffer.from([0xff, 0xff, 0xff])]));
    expect(undecodable.code).toBe(Code.InvalidArgument);
    expect(undecodable.details).toContain("activation 1");
    const noApp = await unary(
      client,
      PRODUCE,
      produceRequest([activation(hexId("c9", 3), { application: undefined })]),
    );
    expect(noApp.code).toBe(Code.InvalidArgument);
    expect(noApp.details).toContain("application");
    expect((await getTask("invalid-batch")).code).toBe(Code.NotFound);
  });

  test("messages of 10 MiB pass by default, both ways", async () => {
    const big = activation(hexId("ca", 1), {
      application: "big",
      parametersBytes: new Uint8Array(10 * 1024 * 1024 + 17).fill(9),
    });
    expect((await produce([big])).accepted).toBe(1);
    const r = await getTask("big");
    expect(r.code).toBe(0);
    expect(taskBytes(r.response)!.equals(big)).toBe(true);
  }, 60_000);

  test("an empty Produce is OK", async () => {
    const r = await unary(client, PRODUCE, encode(ProduceRequestSchema, {}));
    expect(r.code).toBe(0);
  });
});

describe("malformed requests never crash the broker", () => {
  test("garbage, truncated, compressed and multi-frame bodies get clear errors", async () => {
    const garbage = Buffer.from("this is not protobuf at all \u00ff\u00fe", "latin1");
    const cases: Array<[Buffer, number]> = [
      // Undecodable messages: INTERNAL, as grpc-go, grpc-java and connect-es answer them.
      [frame(garbage), Code.Internal],
      [frame(Buffer.from([0x0a, 0x7f, 1, 2])), Code.Internal], // length past the end
      [frame(Buffer.from([0x12, 0x01, 0x61]), 1), Code.Unimplemented], // compressed flag
      [Buffer.from([0, 0, 0, 0, 50, 1, 2]), Code.Internal], // frame longer than the body
      [Buffer.from([0, 0]), Code.Internal],
      [Buffer.alloc(0), Code.Internal],
      [Buffer.concat([frame(Buffer.alloc(0)), frame(Buffer.alloc(0))]), Code.Internal],
    ];
    for (const path of [GET_TASK, SET_STATUS, SET_BATCH, PRODUCE]) {
      for (const [body, code] of cases) {
        const r = await rawCall(broker.address, path, body);
        expect({ path, code: r.grpcStatus }).toEqual({ path, code });
        expect(r.grpcMessage.length).toBeGreaterThan(0);
      }
    }
    const unknown = await rawCall(
      broker.address,
      "/sentry_protos.taskbroker.v1.ConsumerService/Nope",
      frame(Buffer.alloc(0)),
    );
    expect(unknown.grpcStatus).toBe(Code.Unimplemented);
    // Connect endpoints too.
    const res = await fetch(`http://${broker.address}/sentry_protos.taskbroker.v1.ConsumerService/GetTask`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: garbage,
    });
    expect(res.status).toBe(500);
    expect(((await res.json()) as { code: string }).code).toBe("internal");
    const json = await fetch(`http://${broker.address}/sentry_protos.taskbroker.v1.ConsumerService/GetTask`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(json.status).toBe(400);
    // Garbage at the connection level: neither HTTP/1.1 nor a valid HTTP/2 session.
    for (const bytes of [
      Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 13, 10, 13, 10]),
      Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), crypto.getRandomValues(new Uint8Array(64))]),
      Buffer.from("PO"),
    ]) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(broker.port, "127.0.0.1", () => {
          socket.end(bytes);
        });
        socket.on("error", () => {});
        socket.on("data", () => {});
        socket.on("close", () => resolve());
        socket.setTimeout(3000, () => socket.destroy());
      });
    }
    // Still serving.
    expect((await getTask("after-garbage")).code).toBe(Code.NotFound);
    expect(broker.proc.exitCode).toBeNull();
  });
});

describe("Connect (JSON and binary) and gRPC-Web serve every method", () => {
  let run = 0;
  for (const flavour of ["connect-json", "connect-binary", "grpc-web"] as const) {
    for (const httpVersion of ["1.1", "2"] as const) {
      test(`${flavour} over HTTP/${httpVersion}`, async () => {
        const prefix = `d0${++run}`;
        const app = `${flavour}-${httpVersion}`;
        const consumer = connectClient(ConsumerService, broker.address, flavour, { httpVersion });
        const ingest = connectClient(IngestService, broker.address, flavour, { httpVersion });
        const notFound = await consumer.getTask({ application: app }).catch((e: unknown) => ConnectError.from(e));
        expect(notFound).toBeInstanceOf(ConnectError);
        expect((notFound as ConnectError).code).toBe(Code.NotFound);
        expect((notFound as ConnectError).rawMessage).toBe("No pending activations");

        const acts = [1, 2].map((i) =>
          fromBinary(TaskActivationSchema, activation(hexId(prefix, i), { application: app })),
        );
        expect(await ingest.produce({ activations: acts })).toMatchObject({ accepted: 2 });
        const bad = await ingest
          .produce({ activations: [{ ...acts[0]!, id: "" }] })
          .catch((e: unknown) => ConnectError.from(e));
        expect((bad as ConnectError).code).toBe(Code.InvalidArgument);

        const got = await consumer.getTask({ application: app });
        expect(got.task?.id).toBe(acts[0]!.id);
        const next = await consumer.setTaskStatus({
          id: got.task!.id,
          status: COMPLETE,
          fetchNextTask: { application: app },
        });
        expect(next.task?.id).toBe(acts[1]!.id);
        const invalid = await consumer
          .setTaskStatus({ id: next.task!.id, status: PENDING })
          .catch((e: unknown) => ConnectError.from(e));
        expect((invalid as ConnectError).code).toBe(Code.InvalidArgument);
        expect(
          await consumer.setBatchActivationStatus({ updates: [{ id: next.task!.id, status: COMPLETE }] }),
        ).toBeDefined();
        const empty = await consumer.setTaskStatus({ id: "unknown", status: COMPLETE });
        expect(empty.task).toBeUndefined();
      });
    }
  }

  test("plain fetch with Connect JSON over HTTP/1.1", async () => {
    const res = await fetch(`http://${broker.address}/sentry_protos.taskbroker.v1.ConsumerService/GetTask`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ application: "fetch-json" }),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: "not_found", message: "No pending activations" });
  });
});

describe("AdminService", () => {
  test("depths, one activation, and NOT_FOUND for unknown ids and dead letters", async () => {
    const admin = connectClient(AdminService, broker.address, "connect-json");
    await produce([activation(hexId("ad", 1), { application: "admin", namespace: "adm" })]);
    const depths = await admin.getDepths({});
    expect(depths.totals.map((t) => t.state).sort()).toEqual([
      "claimed",
      "complete",
      "delay",
      "failure",
      "pending",
      "processing",
      "retry",
    ]);
    expect(depths.byNamespace.find((d) => d.namespace === "adm" && d.state === "pending")?.count).toBe(1n);
    const one = await admin.getActivation({ id: hexId("ad", 1) });
    expect(one.state).toBe("pending");
    expect(Buffer.from(one.activation.buffer, one.activation.byteOffset, one.activation.byteLength)).toEqual(
      activation(hexId("ad", 1), { application: "admin", namespace: "adm" }),
    );
    for (const call of [
      () => admin.getActivation({ id: "nope" }),
      () => admin.replayDeadLetter({ id: "nope" }),
      () => admin.discardDeadLetter({ id: "nope" }),
    ]) {
      const err = await call().catch((e: unknown) => ConnectError.from(e));
      expect((err as ConnectError).code).toBe(Code.NotFound);
    }
    expect((await admin.listDeadLetters({})).total).toBe(0n);
  });
});

describe("limits and modes (separate brokers)", () => {
  test("backpressure: RESOURCE_EXHAUSTED; oversize message: RESOURCE_EXHAUSTED", async () => {
    const small = await spawnBroker({
      TASKBROKER_STORE__MAX_PENDING_COUNT: "3",
      TASKBROKER_GRPC_MAX_MESSAGE_BYTES: "4096",
    });
    const c = grpcJsClient(small.address);
    try {
      const three = [1, 2, 3].map((i) => activation(hexId("e1", i)));
      expect((await unary(c, PRODUCE, produceRequest(three))).code).toBe(0);
      const more = await unary(c, PRODUCE, produceRequest([activation(hexId("e1", 4))]));
      expect(more.code).toBe(Code.ResourceExhausted);

      const big = activation(hexId("e1", 5), { parametersBytes: new Uint8Array(8000) });
      const over = await unary(c, PRODUCE, produceRequest([big]));
      expect(over.code).toBe(Code.ResourceExhausted);
      expect(over.details).toContain("4096");
      const ingest = connectClient(IngestService, small.address, "connect-binary");
      const viaConnect = await ingest
        .produce({ activations: [fromBinary(TaskActivationSchema, big)] })
        .catch((e: unknown) => ConnectError.from(e));
      expect((viaConnect as ConnectError).code).toBe(Code.ResourceExhausted);
      // Still serving afterwards.
      expect((await unary(c, GET_TASK, encode(GetTaskRequestSchema, {}))).code).toBe(0);
    } finally {
      c.close();
      await small.stop();
    }
  });

  test("push delivery mode: GetTask is PERMISSION_DENIED", async () => {
    // Push mode needs worker addresses (a config error otherwise); none listens here, nothing is produced.
    const push = await spawnBroker({
      TASKBROKER_DELIVERY_MODE: "push",
      TASKBROKER_PUSH_WORKER_ADDRESSES: "127.0.0.1:9",
    });
    const c = grpcJsClient(push.address);
    try {
      const r = await unary(c, GET_TASK, encode(GetTaskRequestSchema, { application: "app" }));
      expect(r.code).toBe(Code.PermissionDenied);
    } finally {
      c.close();
      await push.stop();
    }
  });
});
