// Doors closed by default (issue 11 items 10, 11, 13): one authentication
// story for admin HTTP and AdminService on the RPC port, the admin port on
// loopback unless configured, Host and cross-site checks, throttled logins,
// expiring random sessions, and a start-up warning for an unsigned RPC port.
// Broker processes, real sockets: grpc-js for AdminService, fetch for HTTP.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { fromBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  ListDeadLettersRequestSchema,
  ListDeadLettersResponseSchema,
  ReplayDeadLetterRequestSchema,
} from "../src/gen/taskplatform/v1/admin_pb.ts";
import {
  GetTaskResponseSchema,
  SetTaskStatusRequestSchema,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { GET_TASK, PRODUCE, SET_STATUS, activation, encode, grpcJsClient, unary } from "./support/rpc-clients.ts";

setDefaultTimeout(30_000);

const LIST = "/taskplatform.v1.AdminService/ListDeadLetters";
const REPLAY = "/taskplatform.v1.AdminService/ReplayDeadLetter";
const TOKEN = "admin-access-token";

/** A dead letter, made the way upkeep makes them: a DEADLETTER activation that fails once. */
async function makeDeadLetter(client: grpc.Client, id: string, admin: () => Promise<number>): Promise<void> {
  const a = activation(id, { retryState: { attempts: 0, maxAttempts: 1, onAttemptsExceeded: 2 } });
  expect((await unary(client, PRODUCE, Buffer.concat([Buffer.from([0x0a, a.byteLength]), a]))).code).toBe(0);
  const got = await unary(client, GET_TASK, Buffer.alloc(0));
  const claimed = fromBinary(GetTaskResponseSchema, got.response!).task!.id;
  expect((await unary(client, SET_STATUS, encode(SetTaskStatusRequestSchema, { id: claimed, status: 3 }))).code).toBe(
    0,
  );
  for (let i = 0; (await admin()) === 0; i++) {
    if (i > 300) throw new Error("no dead letter appeared");
    await Bun.sleep(20);
  }
}

/** A non-loopback IPv4 address of this machine, or null. */
function lanAddress(): string | null {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return null;
}

describe("with an admin token", () => {
  let broker: BrokerProcess;
  let client: grpc.Client;
  let admin: string;
  beforeAll(async () => {
    broker = await spawnBroker({
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_ADMIN_TOKEN: TOKEN,
      TASKBROKER_ADMIN_SESSION_TTL_SEC: "1",
      TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "50",
    });
    client = grpcJsClient(broker.address);
    admin = `http://127.0.0.1:${broker.adminPort}`;
    const total = async () => {
      const r = await unary(client, LIST, encode(ListDeadLettersRequestSchema, {}), {
        authorization: `Bearer ${TOKEN}`,
      });
      return r.code === 0 ? Number(fromBinary(ListDeadLettersResponseSchema, r.response!).total) : 0;
    };
    await makeDeadLetter(client, "adm0000000000000000000000000000a1", total);
  });
  afterAll(async () => {
    client?.close();
    await broker?.stop();
  });
  /** The dashboard's login form posted with `token`; the answer unfollowed (303 + cookie on success). */
  const login = (token: string) =>
    fetch(`${admin}/login`, { method: "POST", body: new URLSearchParams({ token }), redirect: "manual" });

  test("the admin port binds loopback unless configured, and the unsigned RPC port is announced", () => {
    expect(broker.logs()).toMatch(/admin_listening .*host=127\.0\.0\.1/);
    expect(broker.logs()).toMatch(/WARN\s+rpc_unsigned .*TASKBROKER_GRPC_SHARED_SECRET is not set/);
  });

  test("AdminService over gRPC requires the token too (ListDeadLetters, ReplayDeadLetter)", async () => {
    const list = encode(ListDeadLettersRequestSchema, {});
    expect((await unary(client, LIST, list)).code).toBe(16); // UNAUTHENTICATED
    expect((await unary(client, LIST, list, { authorization: "Bearer wrong" })).code).toBe(16);
    const replay = encode(ReplayDeadLetterRequestSchema, { id: "adm0000000000000000000000000000a1" });
    expect((await unary(client, REPLAY, replay)).code).toBe(16);
    const ok = await unary(client, LIST, list, { authorization: `Bearer ${TOKEN}` });
    expect(ok.code).toBe(0);
    expect(fromBinary(ListDeadLettersResponseSchema, ok.response!).total).toBe(1n);
  });

  test("a cross-site text/plain POST cannot replay a dead letter; a foreign Host is refused", async () => {
    const loggedIn = await login(TOKEN);
    expect(loggedIn.status).toBe(303);
    const cookie = loggedIn.headers.get("set-cookie")!.split(";")[0]!;
    expect(cookie).not.toContain(TOKEN);
    const url = `${admin}/api/deadletters/adm0000000000000000000000000000a1/replay`;
    // What a page on another site can make a browser send: a simple form-style POST, with the session cookie.
    const csrf = await fetch(url, {
      method: "POST",
      headers: { cookie, "content-type": "text/plain", origin: "http://evil.example", "sec-fetch-site": "cross-site" },
      body: "x",
    });
    expect(csrf.status).toBe(403);
    // DNS rebinding: the same request under the attacker's name.
    const rebound = await fetch(`${admin}/api/deadletters`, { headers: { cookie, host: "evil.example:80" } });
    expect(rebound.status).toBe(403);
    // Still a dead letter: nothing was replayed.
    const still = await fetch(`${admin}/api/deadletters`, { headers: { cookie } });
    expect(((await still.json()) as { total: number }).total).toBe(1);
    // The dashboard's own same-origin POST works.
    const same = await fetch(url, {
      method: "POST",
      headers: { cookie, origin: admin, "sec-fetch-site": "same-origin" },
    });
    expect(same.status).toBe(200);
  });

  test("a login session is a random id that expires (TASKBROKER_ADMIN_SESSION_TTL_SEC=1 here)", async () => {
    const loggedIn = await login(TOKEN);
    expect(loggedIn.status).toBe(303);
    const cookie = loggedIn.headers.get("set-cookie")!.split(";")[0]!;
    expect((await fetch(`${admin}/api/depths`, { headers: { cookie } })).status).toBe(200);
    await Bun.sleep(1100); // expiry is the passing of time itself
    expect((await fetch(`${admin}/api/depths`, { headers: { cookie } })).status).toBe(401);
  });

  test("failed logins are throttled: 40 guesses in a row, at most 10 even checked", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await login(`guess-${i}`);
      statuses.push(r.status);
    }
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(30);
    // Throttled means throttled: the right token waits too.
    const right = await login(TOKEN);
    expect(right.status).toBe(429);
    expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("without an admin token", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_GRPC_HOST: "0.0.0.0" });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  test("AdminService serves loopback clients, and refuses others", async () => {
    const list = encode(ListDeadLettersRequestSchema, {});
    const local = grpcJsClient(broker.address);
    expect((await unary(local, LIST, list)).code).toBe(0);
    local.close();
    const lan = lanAddress();
    if (lan === null) {
      console.warn("admin-access: no non-loopback IPv4 address on this machine; the remote refusal is not checked");
      return;
    }
    const remote = grpcJsClient(`${lan}:${broker.port}`);
    const r = await unary(remote, LIST, list);
    remote.close();
    expect(r.code).toBe(7); // PERMISSION_DENIED
    expect(r.details).toContain("TASKBROKER_ADMIN_TOKEN");
  });
});
