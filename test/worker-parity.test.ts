// What a Sentry operator expects of a worker, checked over real sockets with
// broker and worker processes: fetches name the application (another
// application's tasks stay untouched), an idle worker keeps its health file
// fresh, a result the broker cannot take is kept and reported once the broker
// is back, every finished task leaves one structured log line naming the
// processing pool, task threads are recycled after N tasks; a push worker
// has grpc.health.v1 with warm-up and waits for a slot up to its push timeout.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { toBinary } from "@bufbuild/protobuf";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { join, resolve } from "node:path";
import { sendWelcome } from "../examples/sdk/tasks.ts";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { healthClient } from "../src/connect/client.ts";
import { createWorkerClient } from "../src/connect/worker-client.ts";
import { HealthCheckResponse_ServingStatus as Serving } from "../src/gen/grpc/health/v1/health_pb.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import type { ActivationProducer } from "../src/sdk/index.ts";
import { type BrokerProcess, spawnBroker, tempDir } from "./support/broker-process.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";
import { spawnWorker, waitFor, type WorkerProcess } from "./support/worker-process.ts";
import { hello as gatedHello } from "./gated-load.fixture.ts";
import { hello as ptHello, slow as ptSlow } from "./push-tasks.fixture.ts";
import { explicit, hello, slow } from "./worker-tasks.fixture.ts";

setDefaultTimeout(30_000);

const TASKS = join(import.meta.dir, "worker-tasks.fixture.ts");
const GATED = join(import.meta.dir, "gated-load.fixture.ts");
const PUSH_TASKS = join(import.meta.dir, "push-tasks.fixture.ts");
const SHOP = resolve(import.meta.dir, "../examples/sdk/tasks.ts");
const BROKER_ENV = { TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100", TASKBROKER_ADMIN_ENABLED: "true" };
const dir = tempDir("worker-parity-");
const stops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
});

async function broker(env: Record<string, string> = {}, dbPath?: string): Promise<BrokerProcess> {
  const b = await spawnBroker({ ...BROKER_ENV, ...env }, dbPath ? { dbPath } : {});
  stops.push(() => b.stop("SIGKILL"));
  return b;
}
async function worker(b: BrokerProcess, args: string[], env: Record<string, string> = {}): Promise<WorkerProcess> {
  const w = await spawnWorker(
    ["--rpc-host-list", b.address, "--max-backoff-ms", "100", "--at-most-once-path", join(dir, "amo.sqlite"), ...args],
    { WT_OUT: join(dir, "wt.out"), SHOP_OUTBOX: join(dir, "shop.out"), ...env },
  );
  stops.push(() => w.stop("SIGKILL"));
  return w;
}
function producer(b: BrokerProcess): ActivationProducer {
  const p = createRpcProducer({ address: b.address });
  stops.push(() => p.close());
  return p;
}
async function brokerMetric(b: BrokerProcess, name: string, labels: Record<string, string>): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/metrics`);
  return sumOf(parsePrometheusText(await res.text()), name, labels);
}
/** The gRPC code a call failed with (OK when it did not fail). */
async function codeOf(call: Promise<unknown>): Promise<Code | "OK"> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}
async function stateOf(b: BrokerProcess, id: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/api/activations/${id}`);
  return res.status === 404 ? "gone" : ((await res.json()) as { state: string }).state;
}

describe("application", () => {
  test("a worker claims only the applications it loaded, each in turn; another application's task stays pending", async () => {
    const b = await broker();
    const p = producer(b);
    const mine = hello.buildActivation({ args: ["mine"] });
    // Same namespace and task name, other application: not this worker's to claim.
    const foreign = hello.buildActivation({ args: ["foreign"] });
    foreign.activation.application = "someone-else";
    const foreignBytes = toBinary(TaskActivationSchema, foreign.activation);
    await p.send("taskworker", mine.activation, mine.bytes);
    await p.send("taskworker", foreign.activation, foreignBytes);
    // Two task modules, two applications (wt and shop): both are claimed, in turn.
    const shop = sendWelcome.buildActivation({ args: [5] });
    await p.send("taskworker", shop.activation, shop.bytes);

    const w = await worker(b, ["--tasks", `${TASKS},${SHOP}`, "--log-format", "json"]);
    await waitFor("both applications' tasks ran", async () => (await w.executions({ outcome: "complete" })) === 2);
    expect(w.logs()).toContain('"applications":"shop,wt"');
    expect(await stateOf(b, foreign.activation.id)).toBe("pending");
    expect(await brokerMetric(b, "taskbroker_dispatch_total", {})).toBe(2);
  });
});

describe("health file", () => {
  test("an idle worker keeps touching it from a timer, not only after results", async () => {
    const b = await broker();
    const file = join(dir, "healthy");
    // Fetch back-off of 5 s: between polls, only the timer can move the file.
    await worker(b, [
      "--tasks",
      TASKS,
      "--health-check-file-path",
      file,
      "--health-check-sec-per-touch",
      "0.2",
      "--max-backoff-ms",
      "5000",
    ]);
    const first = statSync(file).mtimeMs;
    let seen = first;
    let moves = 0;
    await waitFor(
      "the file moved three times with nothing to do",
      () => {
        const m = statSync(file).mtimeMs;
        if (m > seen) moves++, (seen = m);
        return moves >= 3;
      },
      5_000,
    );
    expect(seen).toBeGreaterThan(first);
  });
});

describe("reporting", () => {
  // Both pull paths: the v1 calls (what a worker meets with Sentry's broker) and the delivery stream.
  test.each(["unary", "stream"])(
    "a result the broker cannot take is kept and reported once the broker is back (--delivery %s)",
    async (delivery) => {
      const dbPath = join(tempDir("parity-db-"), "inflight.sqlite");
      const first = await broker({}, dbPath);
      const port = String(first.port);
      const p = producer(first);
      const built = slow.buildActivation({ args: ["kept"] });
      await p.send("taskworker", built.activation, built.bytes);
      const out = join(dir, `kept-${delivery}.out`);
      const w = await worker(first, ["--tasks", TASKS, "--metrics-port", "0", "--delivery", delivery], { WT_OUT: out });
      await waitFor(
        "the slow task started",
        async () => (await Bun.file(out).exists()) && (await Bun.file(out).text()).includes("slow-start kept"),
      );
      // The broker dies while the task runs (1.5 s): the report fails, the worker keeps the result.
      first.kill9();
      await first.proc.exited;
      await waitFor("the worker holds the result", async () => {
        const res = await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`);
        return sumOf(parsePrometheusText(await res.text()), "taskworker_results_held", {}) === 1;
      });
      // Same port and store: the restarted broker takes the held result.
      const second = await broker({ TASKBROKER_GRPC_PORT: port }, dbPath);
      await waitFor(
        "the held result was reported",
        async () => (await brokerMetric(second, "taskbroker_status_total", { status: "complete" })) === 1,
        20_000,
      );
      expect(await stateOf(second, built.activation.id)).not.toBe("processing");
      await waitFor("the worker holds nothing any more", async () => {
        const res = await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`);
        return sumOf(parsePrometheusText(await res.text()), "taskworker_results_held", {}) === 0;
      });
      // Logged once the broker's answer is back (the broker counts it before answering).
      if (delivery === "unary")
        await waitFor("the worker logged the late report", () =>
          /result_reported .*id=\w+ .*attempts=\d+/.test(w.logs()),
        );
      expect((await Bun.file(out).text()).match(/slow-done kept/g)).toHaveLength(1);
    },
  );
});

describe("task log line", () => {
  test("one JSON line per finished task: task, namespace, attempt, outcome, duration, processing pool", async () => {
    const b = await broker();
    const p = producer(b);
    const built = hello.buildActivation({ args: ["logged"] });
    await p.send("taskworker", built.activation, built.bytes);
    const w = await worker(b, [
      "--tasks",
      TASKS,
      "--log-format",
      "json",
      "--processing-pool-name",
      "pool-a",
      "--max-child-task-count",
      "1",
      "--threads",
      "1",
    ]);
    // The pool name is a label of every worker metric, as in Sentry's worker.
    await waitFor(
      "the task ran",
      async () => (await w.executions({ outcome: "complete", processing_pool: "pool-a" })) === 1,
    );
    // After its one task the thread is recycled (Sentry's --max-child-task-count).
    await waitFor("the thread was recycled", () => w.logs().includes('"task_thread_recycled"'));
    await waitFor("its log line", () => w.logs().includes(built.activation.id));
    const lines = w
      .logs()
      .split("\n")
      .filter((l) => l.includes('"task_finished"'))
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: "info",
      event: "task_finished",
      task: "hello",
      namespace: "wt",
      attempt: 0,
      outcome: "complete",
      id: built.activation.id,
      processing_pool: "pool-a",
    });
    expect(typeof lines[0].duration_ms).toBe("number");

    // A retry the task asked for is routine, as in Sentry's worker: info, the message, no stack.
    const again = explicit.buildActivation({ args: ["logged"] });
    await p.send("taskworker", again.activation, again.bytes);
    const linesOf = () =>
      w
        .logs()
        .split("\n")
        .filter((l) => l.includes('"task_finished"') && l.includes('"task":"explicit"'))
        .map((l) => JSON.parse(l));
    // (The retry is a new activation, with an id of its own, as the reference broker makes it.)
    await waitFor("the retry and the second run", () => linesOf().length === 2);
    const [retried, completed] = linesOf();
    expect(retried).toMatchObject({
      level: "info",
      outcome: "retry",
      attempt: 0,
      id: again.activation.id,
      error: "RetryTaskError: try again",
    });
    expect(completed).toMatchObject({ level: "info", outcome: "complete", attempt: 1 });
  });
});

describe("push mode", () => {
  test("grpc.health.v1 answers NOT_SERVING while the task threads warm up, SERVING after, NOT_SERVING at shutdown", async () => {
    const b = await broker();
    const gate = join(dir, "load-gate");
    const w = await spawnWorker(
      [
        "--tasks",
        GATED,
        "--rpc-host-list",
        b.address,
        "--push-port",
        "0",
        "--push-allow-unsigned",
        "--threads",
        "2",
        "--at-most-once-path",
        join(dir, "amo-push.sqlite"),
      ],
      { LOAD_GATE: gate },
      20_000,
      /^.*push_port_listening.*$/m,
    );
    stops.push(() => w.stop("SIGKILL"));
    const port = Number(
      /port=(\d+)/.exec(
        w
          .logs()
          .split("\n")
          .find((l) => l.includes("push_port_listening"))!,
      )![1],
    );
    const health = healthClient(`127.0.0.1:${port}`);
    const watched: number[] = [];
    const watch = (async () => {
      for await (const r of health.watch({ service: "" })) watched.push(r.status);
    })();
    expect((await health.check({ service: "" })).status).toBe(Serving.NOT_SERVING);
    expect((await health.check({ service: "sentry_protos.taskbroker.v1.WorkerService" })).status).toBe(
      Serving.NOT_SERVING,
    );
    expect(await codeOf(health.check({ service: "nope" }))).toBe(Code.NotFound);
    // A push during warm-up is turned away (the broker tries elsewhere or later), not queued.
    const pusher = createWorkerClient({ address: `127.0.0.1:${port}` });
    stops.push(() => pusher.close());
    const early = gatedHello.buildActivation();
    expect(await codeOf(pusher.pushTask(early.bytes, b.address))).toBe(Code.Unavailable);

    writeFileSync(gate, "");
    await waitFor("SERVING", async () => (await health.check({ service: "" })).status === Serving.SERVING);
    expect(w.logs()).toMatch(/warmup_complete .*timed_out=false/);
    await pusher.pushTask(gatedHello.buildActivation().bytes, b.address);

    expect(await w.stop("SIGTERM")).toBe(0);
    await watch.catch(() => {});
    expect(watched).toEqual([Serving.NOT_SERVING, Serving.SERVING, Serving.NOT_SERVING]);
  });

  test("a push finding every slot busy waits up to --push-task-timeout, never past the caller's deadline", async () => {
    const b = await broker();
    const w = await spawnWorker(
      [
        "--tasks",
        PUSH_TASKS,
        "--rpc-host-list",
        b.address,
        "--push-port",
        "0",
        "--push-allow-unsigned",
        "--concurrency",
        "1",
        "--push-task-timeout",
        "5",
        "--at-most-once-path",
        join(dir, "amo-push2.sqlite"),
      ],
      { PT_OUT: join(dir, "pt.out") },
    );
    stops.push(() => w.stop("SIGKILL"));
    const port = Number(/push_port=(\d+)/.exec(w.logs())![1]);
    const patient = createWorkerClient({ address: `127.0.0.1:${port}`, deadlineMs: 10_000 });
    const hurried = createWorkerClient({ address: `127.0.0.1:${port}`, deadlineMs: 300 });
    stops.push(
      () => patient.close(),
      () => hurried.close(),
    );
    await patient.pushTask(ptSlow.buildActivation({ args: ["first"] }).bytes, b.address); // takes the only slot for 800 ms
    const t0 = Date.now();
    // Its caller gives up after 300 ms: answered busy before that, so it never runs here behind the caller's back.
    expect(await codeOf(hurried.pushTask(ptHello.buildActivation({ args: ["hurried"] }).bytes, b.address))).toBe(
      Code.ResourceExhausted,
    );
    expect(Date.now() - t0).toBeLessThan(300);
    // A patient caller is accepted as soon as the slot frees, instead of being turned away.
    await patient.pushTask(ptHello.buildActivation({ args: ["waited"] }).bytes, b.address);
    await waitFor("the waiting push ran", () =>
      Bun.file(join(dir, "pt.out")).size > 0
        ? readFileSync(join(dir, "pt.out"), "utf8").includes("hello waited")
        : false,
    );
    expect(readFileSync(join(dir, "pt.out"), "utf8")).not.toContain("hurried");
  });
});
