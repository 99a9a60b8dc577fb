// `taskplatform inspect` as a user runs it (a child process of the real CLI)
// against a running broker, over both transports: AdminService on the RPC
// port (signed, since the broker has a shared secret, and with the admin
// token, which AdminService requires like admin HTTP) and the admin HTTP API
// (with the admin token). Tables for people, --json for scripts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { encode } from "@msgpack/msgpack";
import { TaskActivationSchema, TaskActivationStatus } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { runCli } from "./support/cli-process.ts";
import { activation, brokerClients } from "./support/activations.ts";

const SECRET = "inspect-secret";
const TOKEN = "inspect-token";
let broker: BrokerProcess;

beforeAll(async () => {
  broker = await spawnBroker({
    TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify([SECRET]),
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
    TASKBROKER_ADMIN_TOKEN: TOKEN,
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
  });
}, 30_000);
afterAll(async () => {
  await broker?.stop();
});

function inspect(args: string[], env: Record<string, string> = {}) {
  return runCli(["inspect", ...args], env);
}

const viaRpc = () => ["--broker", broker.address];
const rpcEnv = () => ({ TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify([SECRET]), TASKBROKER_ADMIN_TOKEN: TOKEN });
const viaHttp = () => ["--admin", `http://127.0.0.1:${broker.adminPort}`, "--token", TOKEN];

test("depths, get, deadletters, replay, discard over both transports", async () => {
  const { ingest, consumer } = brokerClients(broker.port, SECRET);
  const params = create(TaskActivationSchema, {
    ...activation({ namespace: "insp-a", taskname: "billing.invoice" }),
    parametersBytes: encode({ args: [12], kwargs: { currency: "EUR" } }),
  });
  await ingest.produce({
    activations: [params, activation({ namespace: "insp-a" }), activation({ namespace: "insp-b" })],
  });
  const doomed = [0, 1].map(() => activation({ namespace: "insp-dl", taskname: "billing.charge", deadLetterAfter: 1 }));
  await ingest.produce({ activations: doomed });
  for (const d of doomed) {
    const r = await consumer.getTask({ application: "tests", namespace: "insp-dl" });
    expect(r.task!.id).toBe(d.id);
    await consumer.setTaskStatus({ id: d.id, status: TaskActivationStatus.FAILURE });
  }

  // depths: table and JSON agree, over both transports.
  const table = await inspect(["depths", ...viaRpc()], rpcEnv());
  expect(table.code).toBe(0);
  expect(table.stdout).toMatch(/^NAMESPACE\s+PENDING\s+DELAY/m);
  expect(table.stdout).toMatch(/^insp-a\s+2\s+0/m);
  expect(table.stdout).toMatch(/^insp-b\s+1\s+0/m);
  for (const via of [[...viaRpc()], [...viaHttp()]]) {
    const json = await inspect(["depths", ...via, "--json"], rpcEnv());
    expect(json.code).toBe(0);
    const d = JSON.parse(json.stdout) as {
      totals: Record<string, number>;
      byNamespace: Array<{ namespace: string; state: string; count: number }>;
    };
    expect(d.totals.pending).toBe(3);
    expect(d.byNamespace).toContainEqual({ namespace: "insp-a", state: "pending", count: 2 });
  }

  // get: decoded parameters.
  const got = await inspect(["get", params.id, ...viaRpc()], rpcEnv());
  expect(got.code).toBe(0);
  expect(got.stdout).toMatch(/^taskname\s+billing\.invoice$/m);
  expect(got.stdout).toMatch(/^state\s+pending$/m);
  expect(got.stdout).toContain('{"args":[12],"kwargs":{"currency":"EUR"}}');
  const gotJson = JSON.parse((await inspect(["get", params.id, ...viaHttp(), "--json"])).stdout);
  expect(gotJson).toMatchObject({
    id: params.id,
    namespace: "insp-a",
    state: "pending",
    parameters: { args: [12], kwargs: { currency: "EUR" } },
  });
  const missing = await inspect(["get", "no-such-id", ...viaRpc()], rpcEnv());
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain("no activation no-such-id");

  // deadletters (upkeep moves both failures there).
  let list = { items: [] as Array<{ id: string; taskname: string; attempts: number }>, total: 0 };
  const deadline = Date.now() + 10_000;
  while (list.total < 2 && Date.now() < deadline) {
    list = JSON.parse((await inspect(["deadletters", ...viaHttp(), "--json"])).stdout);
  }
  expect(list.items.map((d) => d.id).sort()).toEqual(doomed.map((d) => d.id).sort());
  const dlTable = await inspect(["deadletters", ...viaRpc()], rpcEnv());
  expect(dlTable.stdout).toMatch(/^ID\s+NAMESPACE\s+TASKNAME\s+RUNS/m);
  expect(dlTable.stdout).toContain("billing.charge");
  expect(dlTable.stdout).toContain("(2 total)");

  // replay over RPC, discard over HTTP.
  const replay = await inspect(["replay", doomed[0]!.id, ...viaRpc(), "--json"], rpcEnv());
  expect(replay.code).toBe(0);
  const { newId } = JSON.parse(replay.stdout) as { newId: string };
  const again = await consumer.getTask({ application: "tests", namespace: "insp-dl" });
  expect(again.task!.id).toBe(newId);
  const discard = await inspect(["discard", doomed[1]!.id, ...viaHttp()]);
  expect(discard.code).toBe(0);
  expect(discard.stdout).toBe(`discarded ${doomed[1]!.id}\n`);
  const twice = await inspect(["discard", doomed[1]!.id, ...viaRpc()], rpcEnv());
  expect(twice.code).toBe(1);
  expect(twice.stderr).toContain(`no dead letter ${doomed[1]!.id}`);
}, 60_000);

test("usage errors exit 2; an unreachable broker or a wrong token exits 1 naming the problem", async () => {
  const usage = await inspect(["frobnicate"]);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toContain('unknown subcommand "frobnicate"');
  const unsigned = await inspect(["depths", ...viaRpc()]);
  expect(unsigned.code).toBe(1);
  expect(unsigned.stderr).toContain("Unauthenticated");
  const wrongToken = await inspect(["depths", "--admin", `http://127.0.0.1:${broker.adminPort}`, "--token", "nope"]);
  expect(wrongToken.code).toBe(1);
  expect(wrongToken.stderr).toContain("HTTP 401");
  const nobody = await inspect(["depths", "--admin", "http://127.0.0.1:1"]);
  expect(nobody.code).toBe(1);
  expect(nobody.stderr).toContain("cannot reach admin http://127.0.0.1:1");
}, 60_000);
