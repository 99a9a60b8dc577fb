// Fault suite: floods against a broker process, on loopback, each bounded in
// time. Health/Watch streams (20 connections x 990, from a raw HTTP/2 client
// that ignores SETTINGS), slowloris (2,000 trickling connections from eight
// addresses against a broker limited to 1,024 open files), connections from
// eight addresses that hold the port established (a trickled request body,
// a held Watch) and 5,000 distinct
// namespaces. What must hold: the broker's memory stays bounded, well-behaved
// clients keep 100% success meanwhile, and label cardinality is capped.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../src/gen/grpc/health/v1/health_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { parsePrometheusText } from "./support/prom-text.ts";
import { GET_TASK, HEALTH_CHECK, PRODUCE, activation, encode, grpcJsClient, unary } from "./support/rpc-clients.ts";

setDefaultTimeout(60_000);

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

// ---- A raw HTTP/2 client: the frames an attacker writes, no flow control or SETTINGS obeyed ----
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
function h2frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}
function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}
const watchHeaders = Buffer.concat([
  Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table)
  literal(":path", "/grpc.health.v1.Health/Watch"),
  literal(":authority", "flood"),
  literal("content-type", "application/grpc"),
  literal("te", "trailers"),
]);

interface FloodConnection {
  socket: net.Socket;
  /** Streams answered with HEADERS (a watcher's first response, or a trailers-only refusal). */
  headers: number;
  /** Streams reset by the server (RST_STREAM), e.g. REFUSED_STREAM past SETTINGS_MAX_CONCURRENT_STREAMS. */
  resets: number;
  data: number;
}

function floodWatch(port: number, streams: number): FloodConnection {
  const socket = net.connect(port, "127.0.0.1");
  const c: FloodConnection = { socket, headers: 0, resets: 0, data: 0 };
  let buf = Buffer.alloc(0);
  socket.on("error", () => {});
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      const type = buf[3];
      if (type === 1) c.headers++;
      else if (type === 3) c.resets++;
      else if (type === 0) c.data++;
      buf = buf.subarray(9 + len);
    }
  });
  const frames: Buffer[] = [PREFACE, h2frame(4, 0, 0, Buffer.alloc(0))];
  for (let i = 0; i < streams; i++) {
    const id = 1 + 2 * i;
    frames.push(h2frame(1, 4, id, watchHeaders), h2frame(0, 1, id, Buffer.from([0, 0, 0, 0, 0])));
  }
  socket.write(Buffer.concat(frames));
  return c;
}

/**
 * GetTask over an HTTP/2 connection of its own (grpc-js clients share one per
 * target): its grpc-status, -1 when the connection was refused or cut, -2
 * when no answer came within 5 s.
 */
function freshGetTask(port: number): Promise<number> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    let status: number | null = null;
    const done = (code: number) => {
      clearTimeout(timer);
      session.destroy();
      resolve(code);
    };
    const timer = setTimeout(() => done(-2), 5000);
    session.on("error", () => done(-1));
    session.on("close", () => done(status ?? -1));
    const read = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) status = Number(h["grpc-status"]);
    };
    const stream = session.request({
      ":method": "POST",
      ":path": GET_TASK,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("response", read);
    stream.on("trailers", read);
    stream.on("error", () => {});
    stream.on("close", () => done(status ?? -1));
    stream.end(Buffer.alloc(5));
  });
}

async function healthCheck(client: grpc.Client): Promise<number> {
  const r = await unary(client, HEALTH_CHECK, encode(HealthCheckRequestSchema, { service: "" }));
  return r.code === 0 ? fromBinary(HealthCheckResponseSchema, r.response!).status : -r.code;
}

describe("Health/Watch flood: 20 connections x 990 streams", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_GRPC_MAX_HEALTH_WATCHERS: "100" });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("watchers are capped per connection and in total, memory stays bounded and comes back, Check keeps working", async () => {
    const pid = broker.proc.pid;
    const client = grpcJsClient(broker.address);
    expect(await healthCheck(client)).toBe(1);
    const before = rssMiB(pid);
    const conns = Array.from({ length: 20 }, () => floodWatch(broker.port, 990));
    // Every stream gets an answer: a watcher's first status, or RESOURCE_EXHAUSTED (HEADERS), or a reset.
    const t0 = Date.now();
    while (conns.some((c) => c.headers + c.resets < 990) && Date.now() - t0 < 15_000) await Bun.sleep(50);
    if (broker.proc.exitCode !== null || broker.proc.signalCode !== null)
      throw new Error(`broker died: ${broker.logs().slice(-3000)}`);
    const during = rssMiB(pid);
    // A well-behaved client meanwhile: 20 Checks, all SERVING.
    for (let i = 0; i < 20; i++) expect(await healthCheck(client)).toBe(1);
    const answered = conns.reduce((n, c) => n + c.headers, 0);
    const reset = conns.reduce((n, c) => n + c.resets, 0);
    // A watcher's status arrives as DATA; refusals are trailers-only.
    const watching = conns.reduce((n, c) => n + c.data, 0);
    const mostOnOne = Math.max(...conns.map((c) => c.data));
    for (const c of conns) c.socket.destroy();
    // Memory given back: wait for the broker to see the connections go, then measure.
    let after = rssMiB(pid);
    for (let i = 0; i < 40 && after > before + 40; i++) {
      await Bun.sleep(100);
      after = rssMiB(pid);
    }
    console.log(
      `fault-floods watch: RSS ${before.toFixed(0)} -> ${during.toFixed(0)} MiB during, ${after.toFixed(0)} MiB after; ` +
        `${watching} watchers admitted (at most ${mostOnOne} on one connection), ${answered - watching} refused RESOURCE_EXHAUSTED, ${reset} reset`,
    );
    expect(answered + reset).toBe(20 * 990);
    expect(watching).toBeLessThanOrEqual(100); // TASKBROKER_GRPC_MAX_HEALTH_WATCHERS here
    expect(watching).toBeGreaterThan(0);
    expect(mostOnOne).toBeLessThanOrEqual(8);
    expect(during - before).toBeLessThan(150); // was +1,000 MiB
    expect(after - before).toBeLessThan(60);
    const last = await healthCheck(client);
    if (last !== 1)
      console.log("BROKER LOG TAIL", broker.logs().slice(-2500), broker.proc.exitCode, broker.proc.signalCode);
    expect(last).toBe(1);
    client.close();
  });
});

describe("connection limits leave well-behaved connections alone", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({
      TASKBROKER_GRPC_HANDSHAKE_TIMEOUT_MS: "300",
      TASKBROKER_GRPC_IDLE_TIMEOUT_MS: "1500",
    });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("an HTTP/2 connection past its handshake outlives the handshake timeout; an idle one gets GOAWAY after the idle timeout", async () => {
    const session = http2.connect(`http://${broker.address}`);
    session.on("error", () => {});
    let goaway = false;
    session.on("goaway", () => (goaway = true));
    const call = () =>
      new Promise<string | undefined>((resolve) => {
        const st = session.request({
          ":method": "POST",
          ":path": GET_TASK,
          "content-type": "application/grpc",
          te: "trailers",
        });
        st.on("response", (h) => resolve(h["grpc-status"] as string | undefined));
        st.on("error", () => resolve("error"));
        st.end(Buffer.alloc(5));
      });
    expect(await call()).toBe("5");
    await Bun.sleep(800); // well past the 300 ms handshake timeout: the time itself is what is tested
    expect(session.closed || session.destroyed).toBe(false);
    expect(await call()).toBe("5");
    expect(goaway).toBe(false);
    const closed = new Promise<void>((r) => session.once("close", () => r()));
    await closed; // idle for 1.5 s: the broker ends it
    expect(goaway).toBe(true);
  });
});

describe("slowloris: 2,000 trickling connections from 8 addresses, broker limited to 1,024 open files", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker(
      { TASKBROKER_GRPC_HANDSHAKE_TIMEOUT_MS: "3000", TASKBROKER_GRPC_MAX_CONNECTIONS_PER_CLIENT: "200" },
      { command: ["prlimit", "--nofile=1024:1024", "--"] },
    );
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("a persistent client and one reconnecting for every call both keep 100% success", async () => {
    expect(broker.logs()).toMatch(/rpc_listening .*max_connections=896/); // 1,024 less the reserve
    const attackers: net.Socket[] = [];
    let stop = false;
    // Each attacker connection sends the preface one byte every 300 ms, and reconnects when cut.
    const trickle = (source: string) => {
      if (stop) return;
      const s = net.connect({ port: broker.port, host: "127.0.0.1", localAddress: source });
      attackers.push(s);
      let i = 0;
      const timer = setInterval(() => {
        if (i < PREFACE.length && !s.destroyed) s.write(PREFACE.subarray(i, ++i));
      }, 300);
      s.on("error", () => {});
      s.on("close", () => {
        clearInterval(timer);
        if (!stop) setTimeout(() => trickle(source), 200);
      });
    };
    // The well-behaved client that was already connected when the flood began.
    const persistent = grpcJsClient(broker.address);
    expect((await unary(persistent, GET_TASK, Buffer.alloc(0))).code).toBe(5);
    for (let i = 0; i < 2000; i++) trickle(`127.0.0.${2 + (i % 8)}`);

    let ok = 0;
    let failed = 0;
    let freshOk = 0;
    let freshFailed = 0;
    const until = Date.now() + 6000;
    const steady = (async () => {
      while (Date.now() < until) {
        const r = await unary(persistent, GET_TASK, Buffer.alloc(0));
        if (r.code === 5)
          ok++; // NOT_FOUND: served, nothing pending
        else {
          failed++;
          if (failed < 4) console.log("persistent failure", r.code, r.details);
        }
        await Bun.sleep(20);
      }
    })();
    const fresh = (async () => {
      while (Date.now() < until) {
        const code = await freshGetTask(broker.port);
        if (code === 5) freshOk++;
        else {
          freshFailed++;
          if (freshFailed < 4) console.log("fresh failure", code);
        }
        await Bun.sleep(100);
      }
    })();
    await Promise.all([steady, fresh]);
    stop = true;
    const open = attackers.filter((s) => !s.destroyed && s.readyState === "open").length;
    for (const s of attackers) s.destroy();
    persistent.close();
    console.log(
      `fault-floods slowloris: persistent ${ok}/${ok + failed} ok, reconnecting ${freshOk}/${freshOk + freshFailed} ok; ` +
        `${attackers.length} attacker connections made, ${open} open at the end`,
    );
    expect(failed).toBe(0);
    expect(freshFailed).toBe(0);
    expect(ok).toBeGreaterThan(50);
    expect(freshOk).toBeGreaterThan(10);
    // The broker never held more than its cap: many attacker connections were cut (handshake timeout, caps).
    expect(attackers.length).toBeGreaterThan(2000);
  });
});

describe("connections held open from 8 addresses (request bodies trickled, Health/Watch streams), broker limited to 1,024 open files", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker(
      { TASKBROKER_GRPC_MAX_CONNECTIONS_PER_CLIENT: "200" },
      { command: ["prlimit", "--nofile=1024:1024", "--"] },
    );
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("a client from another address still gets a connection for every call", async () => {
    expect(broker.logs()).toMatch(/rpc_listening .*max_connections=896/);
    // Established connections that are never idle: each sent its preface and SETTINGS, then either a
    // GetTask whose body (100 bytes announced) never arrives, or a Health/Watch it keeps open.
    const getTaskHeaders = Buffer.concat([
      Buffer.from([0x83, 0x86]),
      literal(":path", GET_TASK),
      literal(":authority", "held"),
      literal("content-type", "application/grpc"),
      literal("te", "trailers"),
    ]);
    // Each reconnects 200 ms after being cut, so there are always newcomers racing for any free slot.
    let stop = false;
    const attackers: Array<{ socket: net.Socket; answered: boolean; closed: boolean }> = [];
    const attack = (i: number) => {
      if (stop) return;
      const socket = net.connect({ port: broker.port, host: "127.0.0.1", localAddress: `127.0.0.${2 + (i % 8)}` });
      const a = { socket, answered: false, closed: false };
      attackers.push(a);
      socket.on("error", () => {});
      socket.on("data", () => (a.answered = true));
      socket.on("close", () => {
        a.closed = true;
        setTimeout(() => attack(i), 200);
      });
      socket.on("connect", () => {
        const request =
          i % 2 === 0
            ? [h2frame(1, 4, 1, getTaskHeaders), h2frame(0, 0, 1, Buffer.from([0, 0, 0, 0, 100, 0]))]
            : [h2frame(1, 4, 1, watchHeaders), h2frame(0, 1, 1, Buffer.from([0, 0, 0, 0, 0]))];
        socket.write(Buffer.concat([PREFACE, h2frame(4, 0, 0, Buffer.alloc(0)), ...request]));
      });
    };
    for (let i = 0; i < 2000; i++) attack(i);
    const first = attackers.slice();
    const t0 = Date.now();
    while (first.some((a) => !a.answered && !a.closed) && Date.now() - t0 < 20_000) await Bun.sleep(50);
    const held = first.filter((a) => a.answered && !a.closed).length;
    expect(held).toBeGreaterThan(850); // the port (896) is full of them, less the slots being fought over
    const codes: number[] = [];
    for (let i = 0; i < 20; i++) {
      codes.push(await freshGetTask(broker.port));
      await Bun.sleep(100);
    }
    stop = true;
    const made = attackers.length;
    for (const a of attackers) a.socket.destroy();
    console.log(
      `fault-floods held connections: ${held} held, ${codes.filter((c) => c === 5).length}/20 calls on new connections served, ${made} attacker connections made`,
    );
    expect(codes).toEqual(Array(20).fill(5)); // NOT_FOUND: served, nothing pending
  });
});

describe("5,000 distinct namespaces with metrics_max_namespaces=100", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({
      TASKBROKER_METRICS_MAX_NAMESPACES: "100",
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_STORE__MAX_PENDING_COUNT: "100000",
    });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("namespace-labelled series stay at the cap plus _other, and every count is kept", async () => {
    const client = grpcJsClient(broker.address);
    const n = 5000;
    for (let i = 0; i < n; i += 1000) {
      const batch = Buffer.concat(
        Array.from({ length: 1000 }, (_, j) => {
          const a = activation(`ns${String(i + j).padStart(30, "0")}`, { namespace: `tenant-${i + j}` });
          return Buffer.concat([Buffer.from([0x0a, a.byteLength]), a]);
        }),
      );
      expect((await unary(client, PRODUCE, batch)).code).toBe(0);
    }
    let claimed = 0;
    while ((await unary(client, GET_TASK, Buffer.alloc(0))).code === 0) claimed++;
    expect(claimed).toBe(n);
    await fetch(`http://127.0.0.1:${broker.adminPort}/api/depths`); // an exact count, which /metrics then shows
    const text = await (await fetch(`http://127.0.0.1:${broker.adminPort}/metrics`)).text();
    const samples = parsePrometheusText(text).samples;
    const dispatch = samples.filter((s) => s.name === "taskbroker_dispatch_total");
    const depth = samples.filter((s) => s.name === "taskbroker_store_namespace_depth");
    console.log(
      `fault-floods namespaces: /metrics ${text.length} bytes; ${dispatch.length} dispatch series, ${depth.length} depth series`,
    );
    expect(dispatch.length).toBeLessThanOrEqual(101);
    expect(dispatch.reduce((a, s) => a + s.value, 0)).toBe(n);
    expect(dispatch.find((s) => s.labels.namespace === "_other")!.value).toBe(n - 100);
    expect(depth.length).toBeLessThanOrEqual(101);
    expect(depth.reduce((a, s) => a + s.value, 0)).toBe(n); // all processing, summed over the capped labels
    expect(samples.find((s) => s.name === "taskbroker_metrics_namespaces_capped")!.value).toBe(1);
    expect(text.length).toBeLessThan(200_000);
    client.close();
  });
});
