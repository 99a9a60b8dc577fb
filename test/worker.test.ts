// The worker end to end: broker and worker as separate processes over real
// sockets, tasks from test/worker-tasks.fixture.ts observed through the lines
// they write, the worker's /metrics and the broker's admin /metrics.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RetryStateSchema, TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import type { ActivationProducer, DispatchOptions, Task } from "../src/sdk/index.ts";
import { type BrokerProcess, spawnBroker, tempDir } from "./support/broker-process.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";
import { spawnWorker, waitFor, type WorkerProcess } from "./support/worker-process.ts";
import { explicit, fails, hello, once, slow, spin } from "./worker-tasks.fixture.ts";

// Under load (2 shared cores) process start-up and upkeep passes stretch; waits poll conditions anyway.
setDefaultTimeout(30_000);

const TASKS = join(import.meta.dir, "worker-tasks.fixture.ts");
const BROKER_ENV = {
  TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
  TASKBROKER_STORE__PROCESSING_DEADLINE_GRACE_SEC: "0",
  TASKBROKER_ADMIN_ENABLED: "true",
};
const dir = tempDir("worker-test-");
const children: Array<{ stop(signal?: NodeJS.Signals): Promise<number> }> = [];
const producers: ActivationProducer[] = [];

function outFile(name: string) {
  return join(dir, `${name}.out`);
}
function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}
async function broker(extra: Record<string, string> = {}): Promise<BrokerProcess> {
  const b = await spawnBroker({ ...BROKER_ENV, ...extra });
  children.push(b);
  return b;
}
async function worker(
  b: BrokerProcess | BrokerProcess[],
  out: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<WorkerProcess> {
  const hosts = (Array.isArray(b) ? b : [b]).map((x) => `127.0.0.1:${x.port}`).join(",");
  const w = await spawnWorker(
    [
      "--tasks",
      TASKS,
      "--rpc-host-list",
      hosts,
      "--max-backoff-ms",
      "100",
      "--at-most-once-path",
      join(dir, "amo.sqlite"),
      ...args,
    ],
    { WT_OUT: out, ...env },
  );
  children.push(w);
  return w;
}
function producerFor(b: BrokerProcess, secrets?: string[]): ActivationProducer {
  const p = createRpcProducer({ address: `127.0.0.1:${b.port}`, secrets });
  producers.push(p);
  return p;
}
async function send<A extends unknown[]>(
  p: ActivationProducer,
  task: Task<A>,
  options: DispatchOptions & { args?: A },
): Promise<string> {
  const built = task.buildActivation(options);
  await p.send("taskworker", built.activation, built.bytes);
  return built.activation.id;
}
async function brokerStatus(b: BrokerProcess, status: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/metrics`);
  return sumOf(parsePrometheusText(await res.text()), "taskbroker_status_total", { status });
}

afterAll(async () => {
  await Promise.allSettled(producers.map((p) => p.close()));
  await Promise.allSettled(children.reverse().map((c) => c.stop("SIGKILL")));
});

describe("one broker, one worker", () => {
  let b: BrokerProcess;
  let w: WorkerProcess;
  let p: ActivationProducer;
  const out = outFile("basic");
  beforeAll(async () => {
    b = await broker();
    w = await worker(b, out, ["--concurrency", "4"]);
    p = producerFor(b);
  });

  test("a task runs once and is reported COMPLETE; trace headers reach the task", async () => {
    await send(p, hello, { args: ["ok1"], headers: { traceparent: "00-abc-def-01" } });
    await waitFor("hello ran", () => lines(out).includes("hello ok1 trace=00-abc-def-01"));
    await waitFor("broker saw COMPLETE", async () => (await brokerStatus(b, "complete")) >= 1);
    expect(await w.executions({ taskname: "hello", outcome: "complete" })).toBeGreaterThanOrEqual(1);
  });

  test("an exception is retried until attempts run out, then FAILURE", async () => {
    const failuresBefore = await brokerStatus(b, "failure");
    await send(p, fails, { args: ["f1"] });
    await waitFor("three attempts", () => lines(out).filter((l) => l.startsWith("fails f1")).length === 3);
    expect(lines(out).filter((l) => l.startsWith("fails f1"))).toEqual(["fails f1 0", "fails f1 1", "fails f1 2"]);
    await waitFor(
      "worker reported failure",
      async () => (await w.executions({ taskname: "fails", outcome: "failure" })) === 1,
    );
    expect(await w.executions({ taskname: "fails", outcome: "retry" })).toBe(2);
    await waitFor("broker saw FAILURE", async () => (await brokerStatus(b, "failure")) === failuresBefore + 1);
  });

  test("RetryTaskError retries even when the policy's `on` list does not match", async () => {
    await send(p, explicit, { args: ["e1"] });
    await waitFor("second attempt", () => lines(out).includes("explicit e1 1"));
    await waitFor("complete", async () => (await w.executions({ taskname: "explicit", outcome: "complete" })) === 1);
    expect(lines(out).filter((l) => l.startsWith("explicit e1"))).toEqual(["explicit e1 0", "explicit e1 1"]);
  });

  test("an unknown task is reported FAILURE and the worker goes on", async () => {
    const activation = create(TaskActivationSchema, {
      id: crypto.randomUUID().replaceAll("-", ""),
      application: "wt",
      namespace: "wt",
      taskname: "no_such_task",
      receivedAt: timestampFromMs(Date.now()),
      processingDeadlineDuration: 5n,
      retryState: create(RetryStateSchema, { attempts: 0, maxAttempts: 1 }),
    });
    await p.send("taskworker", activation, toBinary(TaskActivationSchema, activation));
    await send(p, hello, { args: ["after-unknown"] });
    await waitFor(
      "unknown reported",
      async () => (await w.executions({ taskname: "no_such_task", outcome: "unknown_task" })) === 1,
    );
    await waitFor("next task ran", () => lines(out).some((l) => l.startsWith("hello after-unknown")));
  });

  test("parameters produced by the Python client (vector bytes, plain and zstd) reach the task", async () => {
    const vectors = [
      ["82a4617267739501a161c4020001c0cb4004000000000000a66b776172677382a66f72675f696407a4666c6167c3", {}],
      [
        "28b52ffd202e71010082a4617267739501a161c4020001c0cb4004000000000000a66b776172677382a66f72675f696407a4666c6167c3",
        { "compression-type": "zstd" },
      ],
    ] as const;
    for (const [hex, headers] of vectors) {
      const activation = create(TaskActivationSchema, {
        id: crypto.randomUUID().replaceAll("-", ""),
        application: "wt",
        namespace: "wt",
        taskname: "echo",
        headers,
        parametersBytes: new Uint8Array(Buffer.from(hex, "hex")),
        receivedAt: timestampFromMs(Date.now()),
        processingDeadlineDuration: 5n,
        retryState: create(RetryStateSchema, { attempts: 0, maxAttempts: 1 }),
      });
      await p.send("taskworker", activation, toBinary(TaskActivationSchema, activation));
    }
    const expected = 'echo [1,"a",{"bytes":[0,1]},null,2.5,{"org_id":7,"flag":true}]';
    await waitFor("both echoes", () => lines(out).filter((l) => l === expected).length === 2);
  });
});

test("an activation that expired while queued is never started", async () => {
  // Our broker already refuses to hand out expired rows (and upkeep drops them); the worker's own
  // check, for brokers that do hand them out, is covered in test/worker-unit.test.ts.
  const b = await broker({ TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "600000" });
  const out = outFile("expired");
  const p = producerFor(b);
  const received = Date.now() - 800;
  const built = hello.buildActivation({ args: ["expired"], expires: 1 });
  const activation = { ...built.activation, receivedAt: timestampFromMs(received) } as typeof built.activation;
  await p.send("taskworker", activation, toBinary(TaskActivationSchema, activation));
  await send(p, hello, { args: ["after-expired"] });
  await waitFor("expiry passed", () => Date.now() > received + 1000);
  const w = await worker(b, out, ["--concurrency", "1"]);
  await waitFor("marker ran", () => lines(out).some((l) => l.startsWith("hello after-expired")));
  // The task prints before its run is counted; wait for the count, then check nothing else ran.
  await waitFor(
    "the marker's run counted",
    async () => (await w.executions({ taskname: "hello", outcome: "complete" })) >= 1,
  );
  expect(lines(out).some((l) => l.startsWith("hello expired"))).toBe(false);
  expect(await w.executions({ taskname: "hello", outcome: "complete" })).toBe(1);
});

test("the processing deadline stops a while(true) task and the slot is reused", async () => {
  const b = await broker();
  const out = outFile("deadline");
  const w = await worker(b, out, ["--concurrency", "1", "--threads", "1"]);
  const p = producerFor(b);
  await send(p, spin, { args: ["s1"] });
  await send(p, hello, { args: ["after-spin"] });
  await waitFor("spin started", () => lines(out).includes("spin s1"));
  await waitFor("next task ran on the same slot", () => lines(out).some((l) => l.startsWith("hello after-spin")));
  expect(await w.executions({ taskname: "spin", outcome: "deadline" })).toBe(1);
  await waitFor("broker saw FAILURE", async () => (await brokerStatus(b, "failure")) === 1);
  expect(lines(out).filter((l) => l === "spin s1").length).toBe(1);
}, 30_000);

test("at-most-once: a task never runs twice, even when its worker is killed mid-task", async () => {
  // The same activation id reaches two brokers; worker A takes it from one and is killed mid-task,
  // worker B (same at-most-once store) takes it from the other and must skip it.
  const [b1, b2] = await Promise.all([broker(), broker()]);
  const out = outFile("amo");
  const built = once.buildActivation({ args: ["x"] });
  await producerFor(b1).send("taskworker", built.activation, built.bytes);
  const a = await worker(b1, out, ["--concurrency", "1"]);
  await waitFor("task started on A", () => lines(out).includes("once x"));
  a.kill9();
  await a.exited;
  const p2 = producerFor(b2);
  await p2.send("taskworker", built.activation, built.bytes);
  await send(p2, hello, { args: ["after-once"] });
  const bw = await worker(b2, out, ["--concurrency", "1"]);
  await waitFor("marker ran on B", () => lines(out).some((l) => l.startsWith("hello after-once")));
  expect(lines(out).filter((l) => l === "once x").length).toBe(1);
  expect(await bw.executions({ taskname: "once", outcome: "skipped" })).toBe(1);
}, 40_000);

test("two brokers: work from both is done, and killing one leaves the other served", async () => {
  const [b1, b2] = await Promise.all([broker(), broker()]);
  const out = outFile("two");
  const w = await worker([b1, b2], out, ["--concurrency", "4", "--rebalance-after", "4"]);
  const [p1, p2] = [producerFor(b1), producerFor(b2)];
  for (let i = 0; i < 20; i++) {
    await send(p1, hello, { args: [`b1-${i}`] });
    await send(p2, hello, { args: [`b2-${i}`] });
  }
  await waitFor("all 40 ran", () => lines(out).filter((l) => l.startsWith("hello b")).length === 40);
  b1.kill9();
  for (let i = 0; i < 20; i++) await send(p2, hello, { args: [`late-${i}`] });
  await waitFor(
    "tasks on the surviving broker ran",
    () => lines(out).filter((l) => l.startsWith("hello late-")).length === 20,
    30_000,
  );
  expect(await w.executions({ taskname: "hello", outcome: "complete" })).toBe(60);
}, 60_000);

test("signing: a worker with the broker's secret is served", async () => {
  const secrets = ["first secret", "older secret"];
  const b = await broker({ TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(secrets) });
  const out = outFile("signed");
  await worker(b, out, ["--concurrency", "1"], { TASKWORKER_GRPC_SHARED_SECRET: JSON.stringify(["first secret"]) });
  await send(producerFor(b, secrets), hello, { args: ["signed"] });
  await waitFor("signed task ran", () => lines(out).some((l) => l.startsWith("hello signed")));
  await waitFor("broker saw COMPLETE", async () => (await brokerStatus(b, "complete")) === 1);
});

test("graceful shutdown: running tasks finish, results are reported, exit 0", async () => {
  const b = await broker();
  const out = outFile("graceful");
  const w = await worker(b, out, ["--concurrency", "2"]);
  const p = producerFor(b);
  await send(p, slow, { args: ["g1"] });
  await send(p, slow, { args: ["g2"] });
  await waitFor("both running", () => lines(out).filter((l) => l.startsWith("slow-start")).length === 2);
  expect(await w.stop("SIGTERM")).toBe(0);
  expect(
    lines(out)
      .filter((l) => l.startsWith("slow-done"))
      .sort(),
  ).toEqual(["slow-done g1", "slow-done g2"]);
  await waitFor("broker saw both COMPLETE", async () => (await brokerStatus(b, "complete")) === 2);
});
