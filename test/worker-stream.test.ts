// The worker's delivery modes end to end (broker and worker processes over
// real sockets): streaming delivery loses nothing when a worker is killed
// mid-batch, moves its capacity between brokers to where the work is, falls
// back to the v1 calls against a broker without the stream (a v1-only gRPC
// server standing in for Sentry's taskbroker), and --delivery unary keeps the
// v1 loop. worker.test.ts runs the rest of the worker's behaviour in the
// default mode (auto, so streaming against our broker).
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { createBrokerClient, createUnaryChannel } from "../src/connect/client.ts";
import { type BrokerProcess, spawnBroker, tempDir } from "./support/broker-process.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";
import { spawnWorker, waitFor, type WorkerProcess } from "./support/worker-process.ts";
import { hello, slow } from "./worker-tasks.fixture.ts";

setDefaultTimeout(30_000);

const TASKS = join(import.meta.dir, "worker-tasks.fixture.ts");
const BROKER_ENV = {
  TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
  TASKBROKER_UPKEEP_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: "0",
  TASKBROKER_STORE__PROCESSING_DEADLINE_GRACE_SEC: "0",
  TASKBROKER_ADMIN_ENABLED: "true",
};
const dir = tempDir("worker-stream-test-");
const children: Array<{ stop(signal?: NodeJS.Signals): Promise<number> }> = [];
const closers: Array<() => unknown> = [];
afterAll(async () => {
  await Promise.allSettled(closers.map((c) => c()));
  await Promise.allSettled(children.reverse().map((c) => c.stop("SIGKILL")));
});

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
async function broker(): Promise<BrokerProcess> {
  const b = await spawnBroker(BROKER_ENV);
  children.push(b);
  return b;
}
async function worker(hosts: string[], out: string, args: string[]): Promise<WorkerProcess> {
  const w = await spawnWorker(
    [
      "--tasks",
      TASKS,
      "--rpc-host-list",
      hosts.join(","),
      "--max-backoff-ms",
      "100",
      "--at-most-once-path",
      join(dir, `amo-${Math.random()}.sqlite`),
      ...args,
    ],
    { WT_OUT: out },
  );
  children.push(w);
  return w;
}
async function metric(b: BrokerProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${b.adminPort}/metrics`);
  return sumOf(parsePrometheusText(await res.text()), name, labels);
}
/** Activations of a fixture task, with a processing deadline of `deadlineS`. */
function activations(task: typeof slow | typeof hello, tags: string[], deadlineS?: number): Uint8Array[] {
  return tags.map((tag) => {
    const built = task.buildActivation({ args: [tag] });
    if (deadlineS !== undefined) built.activation.processingDeadlineDuration = BigInt(deadlineS);
    return toBinary(TaskActivationSchema, built.activation);
  });
}
async function produce(address: string, bytes: Uint8Array[]): Promise<void> {
  const c = createBrokerClient({ address });
  await c.produce(bytes);
  await c.close();
}

describe("streaming delivery", () => {
  test("a worker killed mid-batch loses nothing: what it held comes back after the deadline and runs", async () => {
    const b = await broker();
    const out = join(dir, "killed.out");
    const a = await worker([b.address], out, ["--delivery", "stream", "--concurrency", "4"]);
    const tags = Array.from({ length: 8 }, (_, i) => `k${i}`);
    await produce(b.address, activations(slow, tags, 2));
    await waitFor(
      "4 tasks started by the first worker",
      () => lines(out).filter((l) => l.startsWith("slow-start")).length === 4,
    );
    a.kill9();
    await a.exited;
    const w2 = await worker([b.address], out, ["--delivery", "stream", "--concurrency", "8"]);
    await waitFor(
      "all 8 done",
      () =>
        new Set(
          lines(out)
            .filter((l) => l.startsWith("slow-done"))
            .map((l) => l.split(" ")[1]),
        ).size === 8,
      20_000,
    );
    await waitFor(
      "8 completions",
      async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 8,
    );
    // The first worker's 4 ran again (after their deadline), the other 4 ran once.
    expect(lines(out).filter((l) => l.startsWith("slow-start")).length).toBe(12);
    expect(await metric(b, "taskbroker_delivery_streams")).toBe(1);
    await w2.stop();
  });

  test("prefetched activations wait for a slot: never more running than --concurrency", async () => {
    const b = await broker();
    const out = join(dir, "concurrency.out");
    const w = await worker([b.address], out, ["--delivery", "stream", "--concurrency", "2"]);
    // Many quick tasks first (they earn the worker a prefetch), then slow ones.
    await produce(
      b.address,
      activations(
        hello,
        Array.from({ length: 200 }, (_, i) => `q${i}`),
      ),
    );
    await waitFor("the quick tasks", () => lines(out).length === 200);
    await produce(b.address, activations(slow, ["c1", "c2", "c3"]));
    await waitFor("the slow tasks", () => lines(out).filter((l) => l.startsWith("slow-done")).length === 3, 20_000);
    let running = 0;
    let most = 0;
    for (const l of lines(out)) {
      if (l.startsWith("slow-start")) most = Math.max(most, ++running);
      if (l.startsWith("slow-done")) running--;
    }
    expect(most).toBe(2);
    await w.stop();
  });

  test("with two brokers, a worker's capacity moves to the one that has work", async () => {
    const [b1, b2] = [await broker(), await broker()];
    const out = join(dir, "balance.out");
    const w = await worker([b1.address, b2.address], out, ["--delivery", "stream", "--concurrency", "8"]);
    // Work on both: each broker gets its results.
    await produce(b1.address, activations(hello, ["a1", "a2", "a3"]));
    await produce(b2.address, activations(hello, ["b1", "b2", "b3"]));
    await waitFor(
      "both brokers' tasks",
      async () =>
        (await metric(b1, "taskbroker_status_total", { status: "complete" })) === 3 &&
        (await metric(b2, "taskbroker_status_total", { status: "complete" })) === 3,
    );
    // Work on one only: it gets more than its half of the 8 slots (the idle broker keeps one credit).
    await produce(
      b2.address,
      activations(
        slow,
        Array.from({ length: 8 }, (_, i) => `s${i}`),
      ),
    );
    await waitFor(
      "7 slow tasks running at once",
      () => lines(out).filter((l) => l.startsWith("slow-start")).length >= 7,
      10_000,
    );
    expect(lines(out).filter((l) => l.startsWith("slow-done")).length).toBe(0);
    await waitFor(
      "all slow tasks done",
      () => lines(out).filter((l) => l.startsWith("slow-done")).length === 8,
      15_000,
    );
    await w.stop();
  });
});

describe("the v1 calls", () => {
  test("auto: against a broker without the delivery stream (a v1-only gRPC server) the worker uses GetTask/SetTaskStatus", async () => {
    const b = await broker();
    // A v1-only broker: grpc-js serving exactly ConsumerService (forwarded to our broker), nothing else, so
    // the delivery stream gets UNIMPLEMENTED as from Sentry's taskbroker.
    const upstream = createUnaryChannel({ address: b.address });
    const server = new grpc.Server();
    const ident = (x: Buffer) => x;
    const method = (name: string) => ({
      path: `/sentry_protos.taskbroker.v1.ConsumerService/${name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: ident,
      requestDeserialize: ident,
      responseSerialize: ident,
      responseDeserialize: ident,
    });
    const forward = (name: string) => (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      upstream.call(`/sentry_protos.taskbroker.v1.ConsumerService/${name}`, call.request).then(
        (res) => cb(null, Buffer.from(res)),
        (err: { code: number; rawMessage: string }) =>
          cb({ code: err.code, details: err.rawMessage } as grpc.ServiceError),
      );
    };
    const names = ["GetTask", "SetTaskStatus", "SetBatchActivationStatus"];
    server.addService(
      Object.fromEntries(names.map((n) => [n, method(n)])) as grpc.ServiceDefinition,
      Object.fromEntries(names.map((n) => [n, forward(n)])),
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    closers.push(
      () => server.forceShutdown(),
      () => upstream.close(),
    );
    const out = join(dir, "fallback.out");
    const w = await worker([`127.0.0.1:${port}`], out, ["--concurrency", "4"]);
    await produce(b.address, activations(hello, ["f1", "f2", "f3", "f4", "f5"]));
    await waitFor("5 tasks", () => lines(out).length === 5);
    await waitFor(
      "5 completions",
      async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 5,
    );
    expect(w.logs()).toContain("delivery_fallback_unary");
    await w.stop();
  });

  test("--delivery stream against that kind of broker says so and keeps trying; --delivery unary never opens a stream", async () => {
    const b = await broker();
    const out = join(dir, "unary.out");
    const w = await worker([b.address], out, ["--delivery", "unary", "--concurrency", "2"]);
    await produce(b.address, activations(hello, ["u1", "u2", "u3"]));
    await waitFor("3 tasks", () => lines(out).length === 3);
    await waitFor(
      "3 completions",
      async () => (await metric(b, "taskbroker_status_total", { status: "complete" })) === 3,
    );
    expect(await metric(b, "taskbroker_rpc_requests_total", { method: "GetTask" })).toBeGreaterThan(0);
    expect(await metric(b, "taskbroker_delivery_streams_ended_total")).toBe(0);
    expect(await metric(b, "taskbroker_delivery_streams")).toBe(0);
    await w.stop();

    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    closers.push(() => server.forceShutdown());
    const s = await worker([`127.0.0.1:${port}`], join(dir, "never.out"), ["--delivery", "stream"]);
    await waitFor("the error line", () => s.logs().includes("delivery_stream_unsupported"));
    expect(s.proc.exitCode).toBeNull();
    expect(await s.stop()).toBe(0);
  });
});
