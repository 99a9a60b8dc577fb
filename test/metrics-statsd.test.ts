// The statsd output against a real UDP socket, during a scripted run of a
// broker process configured the reference broker's way (statsd_addr,
// default_metrics_tags): its metric names, types and tags arrive as that
// broker sends them (prefix taskbroker, DogStatsD tags with the default tags
// first), from the same events as our Prometheus counters, and once the
// broker has stopped the statsd totals equal the Prometheus ones.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createSocket, type Socket } from "node:dgram";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { activation, brokerClients } from "./support/activations.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";

interface Line {
  name: string;
  value: number;
  type: string;
  tags: string[];
  raw: string;
}

let socket: Socket;
const lines: Line[] = [];
const waiters: Array<() => void> = [];

beforeAll(async () => {
  socket = createSocket("udp4");
  socket.on("message", (msg) => {
    for (const raw of msg.toString("utf8").split("\n")) {
      const m = /^([^:]+):([^|]+)\|([a-z]+)(?:\|#(.*))?$/.exec(raw);
      if (!m) throw new Error(`not a statsd line: ${JSON.stringify(raw)}`);
      lines.push({ name: m[1]!, value: Number(m[2]), type: m[3]!, tags: m[4] ? m[4].split(",") : [], raw });
    }
    for (const w of waiters.splice(0)) w();
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
});
afterAll(() => socket.close());

const total = (name: string, ...tags: string[]) =>
  lines.filter((l) => l.name === name && tags.every((t) => l.tags.includes(t))).reduce((n, l) => n + l.value, 0);

/** Resolves once `cond` holds over the datagrams received so far (checked on each arrival). */
async function received(what: string, cond: () => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(`no statsd datagrams for ${what} within ${ms} ms; got:\n${lines.map((l) => l.raw).join("\n")}`);
    await new Promise<void>((r) => {
      const t = setTimeout(r, left);
      waiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }
}

test("a scripted run arrives under the reference broker's names and tags, totals equal to Prometheus'", async () => {
  const dir = tempDir("statsd-");
  const runtimePath = join(dir, "runtime.yaml");
  writeFileSync(runtimePath, "drop_task_killswitch: [tests.killed]\ndemoted_namespaces: []\n");
  const broker: BrokerProcess = await spawnBroker({
    TASKBROKER_STATSD_ADDR: `127.0.0.1:${socket.address().port}`,
    TASKBROKER_DEFAULT_METRICS_TAGS__ENV: "test",
    TASKBROKER_DEFAULT_METRICS_TAGS__A_POOL: "p1",
    TASKBROKER_STATSD_INTERVAL_MS: "100ms",
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100ms",
    TASKBROKER_RUNTIME_CONFIG_PATH: runtimePath,
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
  });
  const { ingest, consumer } = brokerClients(broker.port);
  const a = activation({ namespace: "statsd" });
  const b = activation({ namespace: "statsd" });
  expect((await ingest.produce({ activations: [a, b, activation({ taskname: "tests.killed" })] })).accepted).toBe(2);
  const first = await consumer.getTask({});
  const second = await consumer.getTask({});
  await consumer.setTaskStatus({ id: first.task!.id, status: 5 }); // COMPLETE
  await consumer.setTaskStatus({ id: second.task!.id, status: 3 }); // FAILURE
  await consumer.setTaskStatus({ id: "no-such-id", status: 5 });

  const getTask = "path:/sentry_protos.taskbroker.v1.ConsumerService/GetTask";
  await received(
    "the run",
    () =>
      total("taskbroker.upkeep.task.state_transition", "state:completed") >= 1 &&
      total("taskbroker.grpc.request", getTask) >= 2,
  );
  // Default tags first, sorted by key, then the metric's own tags in its order.
  const setStatus = lines.find(
    (l) => l.name === "taskbroker.grpc_server.set_status" && l.tags.includes("status:Complete"),
  )!;
  // (Counters are summed per flush: one line carries every increment since the last.)
  expect(setStatus.raw).toMatch(
    /^taskbroker\.grpc_server\.set_status:\d+\|c\|#a_pool:p1,env:test,result:ok,status:Complete$/,
  );
  expect(total("taskbroker.grpc_server.set_status", "result:not_found")).toBe(1);
  expect(total("taskbroker.grpc_server.set_status.failure")).toBe(1);
  expect(lines.find((l) => l.name === "taskbroker.filter.drop_task_killswitch")!.raw).toBe(
    "taskbroker.filter.drop_task_killswitch:1|c|#a_pool:p1,env:test,taskname:tests.killed,match:whole_task",
  );
  const duration = lines.find((l) => l.name === "taskbroker.grpc.request.duration" && l.tags.includes(getTask))!;
  expect(duration.type).toBe("h");
  expect(duration.value).toBeGreaterThan(0);
  expect(duration.value).toBeLessThan(10); // seconds, not milliseconds
  for (const timer of [
    "taskbroker.grpc_server.get_task.duration",
    "taskbroker.grpc_server.set_status.duration",
    "taskbroker.upkeep.duration",
  ]) {
    expect(lines.some((l) => l.name === timer && l.type === "h")).toBe(true);
  }
  await received("gauges and health", () =>
    lines.some((l) => l.name === "taskbroker.upkeep.health" && l.tags.includes("status:healthy")),
  );
  for (const gauge of [
    "upkeep.current_pending_tasks",
    "upkeep.current_processing_tasks",
    "upkeep.db_file_size.bytes",
    "upkeep.pending_activation.max_lag.sec",
  ]) {
    expect(lines.find((l) => l.name === `taskbroker.${gauge}`)?.type).toBe("g");
  }
  expect(lines.every((l) => l.tags[0] === "a_pool:p1" && l.tags[1] === "env:test")).toBe(true);

  // Both rows finished (the failure discarded, then deleted): nothing changes any more. After a
  // graceful stop (last flush) the statsd totals equal the Prometheus counters of the same events.
  await received("both rows finished", () => total("taskbroker.upkeep.task.state_transition", "state:completed") >= 2);
  const promNow = parsePrometheusText(await (await fetch(`http://127.0.0.1:${broker.adminPort}/metrics`)).text());
  expect(await broker.stop()).toBe(0);
  expect(total("taskbroker.grpc.request", getTask)).toBe(
    sumOf(promNow, "taskbroker_rpc_requests_total", { method: "GetTask" }),
  );
  expect(total("taskbroker.grpc_server.set_status", "result:ok")).toBe(
    sumOf(promNow, "taskbroker_status_total", { status: "complete" }) +
      sumOf(promNow, "taskbroker_status_total", { status: "failure" }),
  );
  expect(total("taskbroker.filter.drop_task_killswitch")).toBe(
    sumOf(promNow, "taskbroker_ingest_total", { result: "killed" }),
  );
  expect(total("taskbroker.upkeep.task.state_transition", "state:completed")).toBe(
    sumOf(promNow, "taskbroker_upkeep_transitions_total", { action: "deleted" }),
  );
  expect(total("taskbroker.upkeep.task.state_transition", "state:failed")).toBe(
    sumOf(promNow, "taskbroker_upkeep_transitions_total", { action: "discarded" }) +
      sumOf(promNow, "taskbroker_upkeep_transitions_total", { action: "deadlettered" }),
  );
}, 30_000);
