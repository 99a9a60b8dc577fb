// grpc.health.v1.Health on the broker's port (docs/spec/wire-contract.md "Services"):
// Check for "" and the named ConsumerService, Watch streaming changes, the
// named service going NOT_SERVING when upkeep stalls, and shutdown behaviour
// (NOT_SERVING, new RPCs UNAVAILABLE, exit 0 after draining).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Serving,
} from "../src/gen/grpc/health/v1/health_pb.ts";
import { GetTaskRequestSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import {
  GET_TASK,
  HEALTH_CHECK,
  HEALTH_WATCH,
  PRODUCE,
  activation,
  connectClient,
  encode,
  frame,
  grpcJsClient,
  unary,
} from "./support/rpc-clients.ts";
import http2 from "node:http2";

const NAMED = "sentry_protos.taskbroker.v1.ConsumerService";

function produceRequest(activations: Uint8Array[]): Buffer {
  return Buffer.concat(activations.map((a) => Buffer.concat([Buffer.from([0x0a, a.byteLength]), a])));
}

async function check(client: grpc.Client, service: string) {
  const r = await unary(client, HEALTH_CHECK, encode(HealthCheckRequestSchema, { service }));
  return { code: r.code, status: r.response ? fromBinary(HealthCheckResponseSchema, r.response).status : null };
}

/** A Watch stream whose statuses can be awaited one by one. */
function watch(client: grpc.Client, service: string) {
  const seen: Serving[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const call = client.makeServerStreamRequest(
    HEALTH_WATCH,
    (b: Buffer) => b,
    (b: Buffer) => b,
    encode(HealthCheckRequestSchema, { service }),
    new grpc.Metadata(),
  );
  call.on("data", (b: Buffer) => {
    seen.push(fromBinary(HealthCheckResponseSchema, b).status);
    wake?.();
  });
  call.on("error", () => {
    ended = true;
    wake?.();
  });
  const done = new Promise<void>((resolve) => {
    call.on("end", () => {
      ended = true;
      wake?.();
      resolve();
    });
  });
  return {
    seen,
    /** Resolves when the server ends the stream. */
    done,
    /** Resolves once `status` has been streamed (fails after timeoutMs). */
    async until(status: Serving, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!seen.includes(status)) {
        if (ended) throw new Error(`watch ended before ${Serving[status]}; saw ${seen.map((s) => Serving[s])}`);
        if (Date.now() > deadline) throw new Error(`no ${Serving[status]} within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    },
    cancel: () => call.cancel(),
  };
}

describe("healthy broker", () => {
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

  test("Check: overall and named service SERVING; unknown service NOT_FOUND", async () => {
    expect(await check(client, "")).toEqual({ code: 0, status: Serving.SERVING });
    expect(await check(client, NAMED)).toEqual({ code: 0, status: Serving.SERVING });
    expect((await check(client, "no.such.Service")).code).toBe(Code.NotFound);
  });

  test("Check over Connect JSON and gRPC-Web", async () => {
    for (const flavour of ["connect-json", "grpc-web"] as const) {
      const health = connectClient(Health, broker.address, flavour, { httpVersion: "1.1" });
      expect((await health.check({ service: NAMED })).status).toBe(Serving.SERVING);
    }
  });

  test("Watch streams the current status first; unknown services are SERVICE_UNKNOWN", async () => {
    const w = watch(client, NAMED);
    await w.until(Serving.SERVING);
    w.cancel();
    const u = watch(client, "no.such.Service");
    await u.until(Serving.SERVICE_UNKNOWN);
    u.cancel();
  });
});

test("the named service turns NOT_SERVING when upkeep stalls; the overall one stays SERVING", async () => {
  // Upkeep's next pass is 10 minutes away, but it must complete every 1.5 s to count as alive.
  const broker = await spawnBroker({
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "600000",
    TASKBROKER_UPKEEP_UNHEALTHY_AFTER_MS: "1500",
  });
  const client = grpcJsClient(broker.address);
  try {
    const w = watch(client, NAMED);
    await w.until(Serving.NOT_SERVING);
    expect(w.seen[0]).toBe(Serving.SERVING); // healthy right after start-up, then the stall shows
    expect(await check(client, NAMED)).toEqual({ code: 0, status: Serving.NOT_SERVING });
    expect(await check(client, "")).toEqual({ code: 0, status: Serving.SERVING });
    w.cancel();
  } finally {
    client.close();
    await broker.stop();
  }
});
test("health_check_killswitched keeps the named service SERVING while upkeep stalls (the reference's escape hatch)", async () => {
  const broker = await spawnBroker({
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "600000",
    TASKBROKER_UPKEEP_UNHEALTHY_INTERVAL_MS: "100",
    TASKBROKER_HEALTH_CHECK_KILLSWITCHED: "true",
  });
  const client = grpcJsClient(broker.address);
  try {
    // The stall is a matter of time, not an event: wait well past the 100 ms limit.
    await new Promise((r) => setTimeout(r, 400));
    expect(await check(client, NAMED)).toEqual({ code: 0, status: Serving.SERVING });
  } finally {
    client.close();
    await broker.stop();
  }
});

test("shutdown: health goes NOT_SERVING, new RPCs get UNAVAILABLE, the broker drains and exits 0", async () => {
  const broker = await spawnBroker({ TASKBROKER_SHUTDOWN_DRAIN_MS: "2000" });
  const client = grpcJsClient(broker.address);
  try {
    // An open Watch is told NOT_SERVING and then ended by the broker, so it does not hold the drain.
    const w = watch(client, "");
    await w.until(Serving.SERVING);
    // A GetTask whose request body is only half sent when the signal arrives: it is in flight and must be answered normally.
    await unary(client, PRODUCE, produceRequest([activation("5a".repeat(16))]));
    const session = http2.connect(`http://${broker.address}`);
    await new Promise((resolve) => session.once("connect", resolve));
    const inflight = session.request({
      ":method": "POST",
      ":path": GET_TASK,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const answer = new Promise<string | undefined>((resolve) => {
      let status: string | undefined;
      inflight.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
      inflight.on("trailers", (h) => (status = h["grpc-status"] as string | undefined));
      inflight.on("close", () => resolve(status));
      inflight.on("data", () => {});
    });
    const body = frame(encode(GetTaskRequestSchema, { application: "app" }));
    inflight.write(body.subarray(0, 3));
    // A PING is answered after the frames before it were processed: the broker has the stream.
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    broker.proc.kill("SIGTERM");
    await w.until(Serving.NOT_SERVING);
    await w.done;
    const r = await unary(client, GET_TASK, encode(GetTaskRequestSchema, { application: "app" }));
    expect(r.code).toBe(Code.Unavailable);
    inflight.end(body.subarray(3));
    expect(await answer).toBe("0");
    session.close();
    expect(await broker.proc.exited).toBe(0);
    // Only the half-sent GetTask held the drain; nothing waited for the 2 s timeout.
    expect(broker.logs()).not.toContain("rpc_drain_timeout");
  } finally {
    client.close();
    await broker.stop();
  }
});
