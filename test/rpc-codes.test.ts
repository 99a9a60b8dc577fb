// The codes clients act on, the same on every transport (issue 11 items 7
// and 14): a Produce over the message limit is RESOURCE_EXHAUSTED (gRPC from
// grpc-js and Python grpcio, Connect, gRPC-Web), an undecodable activation is
// INVALID_ARGUMENT (gRPC, Connect binary over HTTP/2 and HTTP/1.1,
// gRPC-Web), and ListDeadLetters answers fit a gRPC client's default 4 MiB
// receive limit however large the dead letters are, paged by next_after_id.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import http from "node:http";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  GetTaskResponseSchema,
  SetTaskStatusRequestSchema,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { ListDeadLettersRequestSchema, ListDeadLettersResponseSchema } from "../src/gen/taskplatform/v1/admin_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import {
  GET_TASK,
  PRODUCE,
  SET_STATUS,
  activation,
  encode,
  frame,
  grpcJsClient,
  produceRequest,
  rawCall,
  unary,
} from "./support/rpc-clients.ts";

setDefaultTimeout(30_000);

const LIST = "/taskplatform.v1.AdminService/ListDeadLetters";

/** An activation field 2 (namespace) claiming 5 bytes where there are 2: undecodable. */
const UNDECODABLE = Buffer.from([0x12, 0x05, 0x61, 0x62]);

let broker: BrokerProcess;
let client: grpc.Client;
beforeAll(async () => {
  broker = await spawnBroker({ TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "50" });
  client = grpcJsClient(broker.address);
});
afterAll(async () => {
  client?.close();
  await broker?.stop();
});

/** A Connect unary call (binary) over HTTP/1.1: status and JSON error body. */
function connectHttp1(path: string, body: Uint8Array): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: broker.port, path, method: "POST", headers: { "content-type": "application/proto" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("a 17 MiB Produce", () => {
  const big = produceRequest([
    activation("big00000000000000000000000000000a", { parametersBytes: new Uint8Array(17 * 1024 * 1024) }),
  ]);

  test("gRPC (grpc-js): RESOURCE_EXHAUSTED, the broker keeps serving", async () => {
    const r = await unary(client, PRODUCE, big);
    expect(r.code).toBe(8);
    expect(r.details).toContain("larger than the limit");
    expect((await unary(client, GET_TASK, Buffer.alloc(0))).code).toBe(5);
  });

  test("gRPC (Python grpcio, C core): RESOURCE_EXHAUSTED", () => {
    const script = [
      "import grpc, sys",
      `ch = grpc.insecure_channel("${broker.address}", options=[("grpc.max_send_message_length", -1)])`,
      `call = ch.unary_unary("${PRODUCE}", request_serializer=lambda b: b, response_deserializer=lambda b: b)`,
      "body = sys.stdin.buffer.read()",
      "try:",
      "    call(body, timeout=20)",
      "    print('OK')",
      "except grpc.RpcError as e:",
      "    print(e.code().name)",
    ].join("\n");
    const r = Bun.spawnSync(["/usr/bin/python3", "-c", script], { stdin: big });
    expect(r.stderr.toString()).toBe("");
    expect(r.stdout.toString().trim()).toBe("RESOURCE_EXHAUSTED");
  });

  test("Connect and gRPC-Web: resource_exhausted (HTTP 429) and grpc-status 8", async () => {
    const connect = await rawCall(broker.address, PRODUCE, big, { "content-type": "application/proto" });
    expect(connect.httpStatus).toBe(429);
    expect(JSON.parse(connect.body.toString()).code).toBe("resource_exhausted");
    const web = await rawCall(broker.address, PRODUCE, frame(big), { "content-type": "application/grpc-web+proto" });
    expect(web.grpcStatus).toBe(8);
  });
});

describe("an undecodable activation", () => {
  test("is INVALID_ARGUMENT over gRPC, Connect (HTTP/2 and HTTP/1.1) and gRPC-Web, and nothing is stored", async () => {
    const body = produceRequest([activation("good0000000000000000000000000000a"), UNDECODABLE]);
    const grpcResult = await unary(client, PRODUCE, body);
    expect(grpcResult.code).toBe(3);
    expect(grpcResult.details).toContain("activation 1");
    const connect2 = await rawCall(broker.address, PRODUCE, body, { "content-type": "application/proto" });
    expect(connect2.httpStatus).toBe(400);
    const err = JSON.parse(connect2.body.toString()) as { code: string; message: string };
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toBe(grpcResult.details); // one mapping: the same words on every transport
    const connect1 = await connectHttp1(PRODUCE, body);
    expect(connect1.status).toBe(400);
    expect(JSON.parse(connect1.body).code).toBe("invalid_argument");
    const web = await rawCall(broker.address, PRODUCE, frame(body), { "content-type": "application/grpc-web+proto" });
    expect(web.grpcStatus).toBe(3);
    expect((await unary(client, GET_TASK, Buffer.alloc(0))).code).toBe(5); // the good one was not stored either
  });

  test("a valid binary Produce over Connect and gRPC-Web is answered by the same ingest", async () => {
    const connect = await rawCall(
      broker.address,
      PRODUCE,
      produceRequest([activation("conn0000000000000000000000000000a")]),
      {
        "content-type": "application/proto",
      },
    );
    expect(connect.httpStatus).toBe(200);
    expect([...connect.body]).toEqual([0x08, 0x01]); // ProduceResponse { accepted: 1 }
    const web = await rawCall(
      broker.address,
      PRODUCE,
      frame(produceRequest([activation("web00000000000000000000000000000a")])),
      {
        "content-type": "application/grpc-web+proto",
      },
    );
    expect(web.httpStatus).toBe(200);
    expect(web.body.subarray(0, 7)).toEqual(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]));
    expect(web.body.subarray(7).toString()).toContain("grpc-status:0");
    for (let i = 0; i < 2; i++) expect((await unary(client, GET_TASK, Buffer.alloc(0))).code).toBe(0);
  });
});

describe("ListDeadLetters with large dead letters", () => {
  test("six dead letters of 3 MiB page through a client with the default 4 MiB receive limit", async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `dl${String(i).padStart(30, "0")}`);
    for (const id of ids) {
      const a = activation(id, {
        parametersBytes: new Uint8Array(3 * 1024 * 1024).fill(1),
        retryState: { maxAttempts: 1, onAttemptsExceeded: 2 },
      });
      expect((await unary(client, PRODUCE, produceRequest([a]))).code).toBe(0);
      const got = await unary(client, GET_TASK, Buffer.alloc(0));
      const claimed = fromBinary(GetTaskResponseSchema, got.response!).task!.id;
      expect(
        (await unary(client, SET_STATUS, encode(SetTaskStatusRequestSchema, { id: claimed, status: 3 }))).code,
      ).toBe(0);
    }
    // A client left at gRPC's default receive limit (4 MiB), as Python's and grpc-js's are.
    const strict = new grpc.Client(broker.address, grpc.credentials.createInsecure());
    const list = async (after: string) => {
      const r = await unary(strict, LIST, encode(ListDeadLettersRequestSchema, { limit: 10_000, afterId: after }));
      expect(r.code).toBe(0); // before: RESOURCE_EXHAUSTED, the whole 18 MiB in one answer
      return fromBinary(ListDeadLettersResponseSchema, r.response!);
    };
    for (let i = 0; Number((await list("")).total) < 6; i++) {
      if (i > 250) throw new Error("the dead letters never all arrived");
      await Bun.sleep(20); // upkeep writes them every 50 ms here
    }
    const seen: string[] = [];
    let after = "";
    do {
      const page = await list(after);
      expect(page.deadLetters.length).toBe(1); // 3 MiB each: one per answer
      seen.push(...page.deadLetters.map((d) => d.id));
      after = page.nextAfterId;
    } while (after !== "");
    strict.close();
    expect(seen).toEqual(ids);
  });
});
