// The project's broker client (src/connect/client.ts) against a broker
// process: results, error codes as ConnectError, reconnect after the broker
// restarts, and against a plain node:http2 server that misbehaves on purpose:
// deadline, HTTP errors, statuses in trailers vs trailers-only.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { createBrokerClient, type BrokerClient } from "../src/connect/client.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { activation, frame } from "./support/rpc-clients.ts";

const id = (i: number) => i.toString(16).padStart(32, "0");

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    expect(err).toBeInstanceOf(ConnectError);
    return (err as ConnectError).code;
  }
}

describe("against a broker", () => {
  let broker: BrokerProcess;
  let client: BrokerClient;
  beforeAll(async () => {
    broker = await spawnBroker({});
    client = createBrokerClient({ address: broker.address });
  });
  afterAll(async () => {
    await client?.close();
    await broker?.stop();
  });

  test("produce, getTask, setTaskStatus with fetch_next, setBatchStatus", async () => {
    expect(await client.getTask({ application: "client" })).toBeNull();
    const acts = [1, 2, 3].map((i) => activation(id(i), { application: "client" }));
    expect(await client.produce(acts)).toEqual({ accepted: 3, duplicates: 0, expired: 0 });
    const first = await client.getTask({ application: "client" });
    expect(first?.id).toBe(id(1));
    const second = await client.getTaskBytes({ application: "client" });
    expect(second === null ? null : Buffer.from(second.buffer, second.byteOffset, second.byteLength)).toEqual(acts[1]!);
    const next = await client.setTaskStatus({ id: id(1), status: 5, fetchNext: { application: "client" } });
    expect(next?.id).toBe(id(3));
    expect(await client.setTaskStatus({ id: id(3), status: 5, fetchNext: { application: "client" } })).toBeNull();
    await client.setBatchStatus([{ id: id(2), status: 3 }]);
  });

  test("errors carry the gRPC code", async () => {
    expect(await codeOf(client.setTaskStatus({ id: id(9), status: 1 as 5 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.setBatchStatus([{ id: id(9), status: 2 as 5 }]))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.produce([Buffer.from([0xff])]))).toBe(Code.InvalidArgument);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

test("a lost connection is replaced on the next call (broker restarted on the same port)", async () => {
  const port = String(await freePort());
  const first = await spawnBroker({ TASKBROKER_GRPC_PORT: port });
  const client = createBrokerClient({ address: first.address, deadlineMs: 5000 });
  try {
    await client.produce([activation(id(100), { application: "restart" })]);
    expect(await first.stop()).toBe(0);
    expect(await codeOf(client.getTask({ application: "restart" }))).toBe(Code.Unavailable);
    const second = await spawnBroker({ TASKBROKER_GRPC_PORT: port }, { dbPath: first.dbPath });
    try {
      expect((await client.getTask({ application: "restart" }))?.id).toBe(id(100));
    } finally {
      await second.stop();
    }
  } finally {
    await client.close();
  }
});

describe("against a misbehaving HTTP/2 server", () => {
  let server: http2.Http2Server;
  let address = "";
  beforeAll(async () => {
    server = http2.createServer();
    server.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
      stream.on("error", () => {});
      stream.resume();
      stream.once("end", () => {
        const method = String(headers[":path"]).split("/").pop();
        if (method === "GetTask") return; // never answers: the client's deadline must fire
        if (method === "SetTaskStatus") {
          // Status in real trailers after a (useless) message.
          stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
          stream.once("wantTrailers", () =>
            stream.sendTrailers({
              "grpc-status": String(Code.ResourceExhausted),
              "grpc-message": "slow%20down%20%E2%98%83",
            }),
          );
          stream.end(frame(Buffer.alloc(0)));
          return;
        }
        if (method === "SetBatchActivationStatus") {
          stream.respond({ ":status": 503 }, { endStream: true }); // a proxy's answer, no grpc-status
          return;
        }
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.from([0, 0, 0, 0, 9, 1])); // frame shorter than announced
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(() => {
    server?.close();
  });

  test("deadline, trailer status with percent-encoded message, HTTP 503, truncated response", async () => {
    const client = createBrokerClient({ address, deadlineMs: 300 });
    const t0 = Date.now();
    expect(await codeOf(client.getTask({}))).toBe(Code.DeadlineExceeded);
    expect(Date.now() - t0).toBeLessThan(5000);
    const err = await client.setTaskStatus({ id: "x", status: 5 }).catch((e: unknown) => e as ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((err as ConnectError).rawMessage).toBe("slow down \u2603");
    expect(await codeOf(client.setBatchStatus([{ id: "x", status: 5 }]))).toBe(Code.Unavailable);
    expect(await codeOf(client.produce([]))).toBe(Code.Internal);
    await client.close();
  });
});
