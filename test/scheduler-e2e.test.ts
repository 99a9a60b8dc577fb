// End to end: `taskplatform scheduler` as its own process, producing into a
// real broker process over the ingest RPC; the scheduled activations are then
// fetched with GetTask by an independent gRPC client, carrying the schedule's
// parameters and the header that turns trace propagation off. SIGTERM stops
// the scheduler cleanly.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ConsumerService, type TaskActivation } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { decodeParameters } from "../src/activation/parameters.ts";
import { type BrokerProcess, spawnBroker } from "./support/broker-process.ts";

const ROOT = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "scheduler-e2e-"));
let broker: BrokerProcess;
const children: Bun.Subprocess[] = [];

beforeAll(async () => {
  broker = await spawnBroker();
});
afterAll(async () => {
  for (const c of children) c.kill(9);
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function spawnScheduler(schedulesFile: string, dbPath: string) {
  const proc = Bun.spawn(
    [
      process.execPath,
      join(ROOT, "src/main.ts"),
      "scheduler",
      "--schedules",
      schedulesFile,
      "--db",
      dbPath,
      "--rpc-host",
      `127.0.0.1:${broker.port}`,
    ],
    { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  children.push(proc);
  let logs = "";
  const drained = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) logs += decoder.decode(chunk, { stream: true });
  })();
  /** Exit code, once the process has exited and its stderr is read to the end. */
  const exited = async () => {
    const code = await proc.exited;
    await drained;
    return code;
  };
  return { proc, exited, logs: () => logs };
}

test("scheduled activations reach the broker and come out of GetTask with propagation off", async () => {
  const schedulesFile = join(dir, "schedules.yaml");
  writeFileSync(
    schedulesFile,
    `schedules:
  heartbeat:
    task: "e2e:heartbeat"
    intervalSec: 1
    args: [1, "a"]
    kwargs: { org_id: 7 }
    headers: { origin: scheduler-test }
`,
  );
  const scheduler = spawnScheduler(schedulesFile, join(dir, "runs.sqlite"));
  const client = createClient(ConsumerService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${broker.port}` }));

  const got: TaskActivation[] = [];
  const deadline = Date.now() + 20_000;
  while (got.length < 2 && Date.now() < deadline) {
    try {
      const res = await client.getTask({ namespace: "e2e", application: "default" });
      if (res.task) got.push(res.task);
    } catch (err) {
      if (ConnectError.from(err).code !== Code.NotFound) throw err;
      await Bun.sleep(50); // empty: the next slot is up to a second away
    }
  }
  expect(got.length).toBe(2);
  for (const activation of got) {
    expect(activation).toMatchObject({ namespace: "e2e", taskname: "heartbeat", application: "default" });
    expect(activation.headers["sentry-propagate-traces"]).toBe("False");
    expect(activation.headers["taskplatform-schedule"]).toBe("heartbeat");
    expect(activation.headers.origin).toBe("scheduler-test");
    expect(decodeParameters(activation.parametersBytes, activation.headers["compression-type"])).toEqual({
      args: [1, "a"],
      kwargs: { org_id: 7 },
    });
  }
  expect(got[0]!.id).not.toBe(got[1]!.id);
  const slots = got.map((a) => Date.parse(a.headers["taskplatform-schedule-slot"]!));
  // Consecutive slots of a 1 s interval (one may be skipped as missed if this machine stalls for a second).
  expect(slots[1]! - slots[0]!).toBeGreaterThan(0);
  expect((slots[1]! - slots[0]!) % 1000).toBe(0);

  scheduler.proc.kill("SIGTERM");
  expect(await scheduler.exited()).toBe(0);
  expect(scheduler.logs()).toContain("scheduler_started");
  expect(scheduler.logs()).toContain("schedule_fired");
  expect(scheduler.logs()).toContain("scheduler_stopped");
}, 40_000);

test("a schedules file with a bad definition is refused with exit code 2", async () => {
  const schedulesFile = join(dir, "bad.json");
  writeFileSync(schedulesFile, JSON.stringify({ nightly: { task: "e2e:nightly", crontab: "0 0 3 * * *" } }));
  const scheduler = spawnScheduler(schedulesFile, join(dir, "bad-runs.sqlite"));
  expect(await scheduler.exited()).toBe(2);
  expect(scheduler.logs()).toContain("expected 5");
});
