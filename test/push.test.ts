// Push delivery end to end (TASKBROKER_DELIVERY_MODE=push): broker and workers
// as separate processes over real sockets. The broker claims rows and calls
// WorkerService.PushTask on the workers' push ports; workers run the tasks
// and report with SetBatchActivationStatus. Tasks from test/push-tasks.fixture.ts
// are observed through the lines they write and the broker's admin /metrics.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { createWorkerClient } from "../src/connect/worker-client.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import type { ActivationProducer, Task } from "../src/sdk/index.ts";
import { brokerClients } from "./support/activations.ts";
import { type BrokerProcess, spawnBroker, tempDir } from "./support/broker-process.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";
import { spawnWorker, waitFor, type WorkerProcess } from "./support/worker-process.ts";
import { hello, slow, stall } from "./push-tasks.fixture.ts";

setDefaultTimeout(30_000);

const TASKS = join(import.meta.dir, "push-tasks.fixture.ts");
const dir = tempDir("push-test-");
const children: Array<{ stop(signal?: NodeJS.Signals): Promise<number> }> = [];
const producers: ActivationProducer[] = [];

afterAll(async () => {
  await Promise.allSettled(producers.map((p) => p.close()));
  await Promise.allSettled(children.reverse().map((c) => c.stop("SIGKILL")));
});

/** A port nothing listens on right now (the broker must know workers' push ports before they start). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}
async function pushBroker(workerPorts: number[], extra: Record<string, string> = {}): Promise<BrokerProcess> {
  const b = await spawnBroker({
    TASKBROKER_DELIVERY_MODE: "push",
    TASKBROKER_PUSH_WORKER_ADDRESSES: JSON.stringify(workerPorts.map((p) => `127.0.0.1:${p}`)),
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
    TASKBROKER_UPKEEP_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: "0",
    TASKBROKER_STORE__PROCESSING_DEADLINE_GRACE_SEC: "0",
    TASKBROKER_STORE__CLAIM_LEASE_MS: "2000",
    TASKBROKER_ADMIN_ENABLED: "true",
    ...extra,
  });
  children.push(b);
  return b;
}
async function pushWorker(
  b: BrokerProcess,
  pushPort: number,
  out: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<WorkerProcess> {
  // A push port without a secret must be told to serve unsigned pushes (tested below).
  const unsigned = env.TASKWORKER_GRPC_SHARED_SECRET === undefined ? ["--push-allow-unsigned"] : [];
  const w = await spawnWorker(
    [
      "--tasks",
      TASKS,
      "--rpc-host-list",
      `127.0.0.1:${b.port}`,
      "--push-port",
      String(pushPort),
      "--at-most-once-path",
      join(dir, `amo-${pushPort}.sqlite`),
      ...unsigned,
      ...args,
    ],
    { PT_OUT: out, ...env },
  );
  children.push(w);
  return w;
}
async function send<A extends unknown[]>(
  b: BrokerProcess,
  task: Task<A>,
  args: A,
  secrets?: string[],
): Promise<string> {
  const p = createRpcProducer({ address: `127.0.0.1:${b.port}`, secrets });
  producers.push(p);
  const built = task.buildActivation({ args });
  await p.send("taskworker", built.activation, built.bytes);
  return built.activation.id;
}
async function metric(b: BrokerProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/metrics`);
  return sumOf(parsePrometheusText(await res.text()), name, labels);
}
/** Rows the broker still holds in any not-finished state. */
async function held(b: BrokerProcess): Promise<number> {
  let n = 0;
  for (const state of ["pending", "delay", "claimed", "processing", "retry", "failure"])
    n += await metric(b, "taskbroker_store_depth", { state });
  return n;
}

test("produced tasks are pushed to the worker, run once each and completed; GetTask is PERMISSION_DENIED", async () => {
  const wp = await freePort();
  const b = await pushBroker([wp]);
  const out = join(dir, "basic.out");
  await pushWorker(b, wp, out, ["--concurrency", "4"]);
  const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => send(b, hello, [`t${i}`])));
  expect(new Set(ids).size).toBe(30);
  await waitFor("30 tasks ran", () => lines(out).length >= 30);
  await waitFor(
    "broker saw 30 COMPLETE",
    async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 30,
  );
  await waitFor("store empty", async () => (await held(b)) === 0);
  expect(lines(out).sort()).toEqual(Array.from({ length: 30 }, (_, i) => `hello t${i}`).sort());
  expect(await metric(b, "taskbroker_push_total", { result: "delivered" })).toBe(30);

  const { consumer } = brokerClients(b.port);
  const err = await consumer.getTask({}).then(
    () => null,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err?.code).toBe(Code.PermissionDenied);
});

test("one worker serving two pushing brokers reports each result to the broker that pushed it (callback_url)", async () => {
  const wp = await freePort();
  const secret = { TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(["pool secret"]) };
  const a = await pushBroker([wp], secret);
  const b = await pushBroker([wp], secret);
  const out = join(dir, "two-brokers.out");
  // The worker is configured with broker A only; B's signed pushes name B, so B's results still reach B.
  await pushWorker(a, wp, out, ["--concurrency", "4"], {
    TASKWORKER_GRPC_SHARED_SECRET: JSON.stringify(["pool secret"]),
  });
  await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => send(a, hello, [`a${i}`], ["pool secret"])),
    ...Array.from({ length: 10 }, (_, i) => send(b, hello, [`b${i}`], ["pool secret"])),
  ]);
  await waitFor("20 tasks ran", () => lines(out).length >= 20);
  for (const broker of [a, b]) {
    await waitFor(
      "10 COMPLETE reported to each broker",
      async () => (await metric(broker, "taskbroker_status_total", { status: "complete" })) === 10,
    );
    await waitFor("each store empty", async () => (await held(broker)) === 0);
  }
  expect(lines(out).length).toBe(20);
});

test("a full worker answers RESOURCE_EXHAUSTED; the broker delivers the task later instead of losing it", async () => {
  const wp = await freePort();
  const b = await pushBroker([wp]);
  const out = join(dir, "busy.out");
  // No waiting for a slot (the default waits up to 5 s, see test/worker-parity.test.ts): busy at once.
  await pushWorker(b, wp, out, ["--concurrency", "1", "--push-task-timeout", "0"]);
  for (const tag of ["a", "b", "c"]) await send(b, slow, [tag]);
  await waitFor(
    "all three ran to the end",
    () => lines(out).filter((l) => l.startsWith("slow-done")).length === 3,
    20_000,
  );
  // One slot: never two at once, so each start follows the previous done.
  const seq = lines(out).map((l) => l.split(" ")[0]);
  expect(seq).toEqual(["slow-start", "slow-done", "slow-start", "slow-done", "slow-start", "slow-done"]);
  expect(await metric(b, "taskbroker_push_total", { result: "busy" })).toBeGreaterThan(0);
  await waitFor("store empty", async () => (await held(b)) === 0);
  expect(await metric(b, "taskbroker_status_total", { status: "complete" })).toBe(3);

  // The worker's answer itself, seen by a PushTask caller of our own.
  await send(b, slow, ["d"]);
  await waitFor("d running", () => lines(out).includes("slow-start d"));
  const direct = createWorkerClient({ address: `127.0.0.1:${wp}` });
  const built = hello.buildActivation({ args: ["direct"] });
  const busy = await direct.pushTask(built.bytes).then(
    () => null,
    (e: unknown) => ConnectError.from(e),
  );
  await direct.close();
  expect(busy?.code).toBe(Code.ResourceExhausted);
  expect(busy?.rawMessage).toBe("worker busy");
});

test("a worker killed with kill -9 mid-task: the row returns after its deadline and a second worker completes it", async () => {
  const [wa, wb] = [await freePort(), await freePort()];
  const b = await pushBroker([wa, wb]);
  const out = join(dir, "kill.out");
  const a = await pushWorker(b, wa, out, ["--concurrency", "1"], { PT_STALL: "1" });
  await send(b, stall, ["k"]);
  await waitFor("stall started on worker A", () => lines(out).some((l) => l.startsWith("stall-start k")));
  a.kill9();
  await a.exited;
  await pushWorker(b, wb, out, ["--concurrency", "1"]);
  // Deadline 2 s (grace 0): upkeep resets the row to Pending, the pusher skips dead A and hands it to B.
  await waitFor("stall completed on worker B", () => lines(out).some((l) => l.startsWith("stall-done k")), 20_000);
  await waitFor(
    "broker saw COMPLETE",
    async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 1,
  );
  await waitFor("store empty", async () => (await held(b)) === 0);
  expect(lines(out).filter((l) => l.startsWith("stall-start k")).length).toBe(2);
});

test("signing: the broker signs PushTask, the worker checks it and signs its reports", async () => {
  const secrets = ["push secret", "older secret"];
  const wp = await freePort();
  const b = await pushBroker([wp], { TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(secrets) });
  const out = join(dir, "signed.out");
  // The worker knows the broker's signing secret (first of the broker's list) only.
  await pushWorker(b, wp, out, ["--concurrency", "2"], {
    TASKWORKER_GRPC_SHARED_SECRET: JSON.stringify(["push secret"]),
  });
  await send(b, hello, ["signed"], secrets);
  await waitFor("signed task ran", () => lines(out).includes("hello signed"));
  // The broker rejects unsigned status reports, so COMPLETE proves the reports were signed.
  await waitFor(
    "broker saw COMPLETE",
    async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 1,
  );

  const built = hello.buildActivation({ args: ["intruder"] });
  for (const s of [undefined, ["wrong secret"]]) {
    const c = createWorkerClient({ address: `127.0.0.1:${wp}`, secrets: s });
    const err = await c.pushTask(built.bytes).then(
      () => null,
      (e: unknown) => ConnectError.from(e),
    );
    await c.close();
    expect(err?.code).toBe(Code.Unauthenticated);
  }
  expect(lines(out)).not.toContain("hello intruder");
});

test("a worker that does not share the secret gets nothing run: the broker's pushes are refused, rows stay held", async () => {
  const wp = await freePort();
  const b = await pushBroker([wp], { TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(["right"]) });
  const out = join(dir, "mismatch.out");
  await pushWorker(b, wp, out, ["--concurrency", "1"], { TASKWORKER_GRPC_SHARED_SECRET: JSON.stringify(["wrong"]) });
  await send(b, hello, ["refused"], ["right"]);
  await waitFor(
    "broker saw a refused push",
    async () => (await metric(b, "taskbroker_push_total", { result: "error" })) > 0,
  );
  expect(lines(out)).toEqual([]);
  expect(await held(b)).toBe(1);
});

test("graceful stop: a push worker finishes its running task and reports it; the broker stops cleanly", async () => {
  const wp = await freePort();
  const b = await pushBroker([wp]);
  const out = join(dir, "graceful.out");
  const w = await pushWorker(b, wp, out, ["--concurrency", "2"]);
  await send(b, slow, ["g1"]);
  await send(b, slow, ["g2"]);
  await waitFor("both running", () => lines(out).filter((l) => l.startsWith("slow-start")).length === 2);
  expect(await w.stop("SIGTERM")).toBe(0);
  expect(
    lines(out)
      .filter((l) => l.startsWith("slow-done"))
      .sort(),
  ).toEqual(["slow-done g1", "slow-done g2"]);
  await waitFor(
    "broker saw both COMPLETE",
    async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 2,
  );
  expect(await b.stop("SIGTERM")).toBe(0);
});

test("without push_worker_addresses the broker pushes by worker_map, each application to its own worker; a bad endpoint is a one-line config error", async () => {
  const wp = await freePort();
  // The reference's form: application -> worker endpoint. Nothing of application "other" exists, so its worker gets nothing.
  const b = await pushBroker([], { TASKBROKER_WORKER_MAP: `{pt=http://127.0.0.1:${wp},other=http://127.0.0.1:1}` });
  const out = join(dir, "worker-map.out");
  await pushWorker(b, wp, out);
  await send(b, hello, ["mapped"]);
  await waitFor("the mapped worker ran it", () => lines(out).includes("hello mapped"));
  await waitFor(
    "broker saw COMPLETE",
    async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 1,
  );
  expect(await metric(b, "taskbroker_push_total", { worker: `127.0.0.1:${wp}`, result: "delivered" })).toBe(1);
  expect(await metric(b, "taskbroker_push_total", { worker: "127.0.0.1:1" })).toBe(0);

  const proc = Bun.spawn([process.execPath, resolve(import.meta.dir, "../src/main.ts"), "broker"], {
    env: {
      PATH: process.env.PATH ?? "",
      TASKBROKER_DELIVERY_MODE: "push",
      TASKBROKER_GRPC_PORT: "0",
      TASKBROKER_WORKER_MAP: "{pt=https://w:1}",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(await proc.exited).toBe(2);
  const stderr = (await new Response(proc.stderr).text()).trim();
  expect(stderr.split("\n")).toHaveLength(1);
  expect(stderr).toContain('TASKBROKER_WORKER_MAP: pt="https://w:1" is invalid');
});

test("a push port without a secret does not start unless told to serve unsigned pushes", async () => {
  const proc = Bun.spawn(
    [
      process.execPath,
      resolve(import.meta.dir, "../src/main.ts"),
      "worker",
      "--tasks",
      TASKS,
      "--rpc-host-list",
      "127.0.0.1:1",
      "--push-port",
      "0",
    ],
    { env: { PATH: process.env.PATH ?? "" }, stdout: "pipe", stderr: "pipe" },
  );
  expect(await proc.exited).toBe(2);
  const stderr = await new Response(proc.stderr).text();
  expect(stderr).toContain("signed pushes only");
  expect(stderr).toContain("--push-allow-unsigned");
});

test("an unsigned push cannot send the worker anywhere: callback_url to an unknown address is not followed (SSRF)", async () => {
  const wp = await freePort();
  const b = await pushBroker([wp]);
  const out = join(dir, "ssrf.out");
  const w = await pushWorker(b, wp, out, ["--concurrency", "1"]);
  // Something the attacker wants the worker to connect to (and keep retrying).
  let connections = 0;
  const target = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
  const targetPort = (target.address() as { port: number }).port;
  const built = hello.buildActivation({ args: ["ssrf"] });
  const c = createWorkerClient({ address: `127.0.0.1:${wp}` });
  await c.pushTask(built.bytes, `127.0.0.1:${targetPort}`);
  await c.close();
  await waitFor("the pushed task ran", () => lines(out).includes("hello ssrf"));
  await waitFor("the refusal logged", () => w.logs().includes("push_callback_refused"));
  // Its result went to the configured broker instead (which does not hold the id: an unknown-id no-op).
  await waitFor(
    "the configured broker got the report",
    async () => (await metric(b, "taskbroker_status_total", { status: "unknown_id" })) >= 1,
  );
  expect(connections).toBe(0);
  target.close();
});
