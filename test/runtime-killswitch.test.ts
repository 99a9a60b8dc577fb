// The kill switch end to end, against a real broker process: a rule written to
// the runtime config file removes matching stored activations within a reload
// period and drops matching new ones at ingest (counted as killed); undecodable
// parameters are kept (fail open); a malformed file changes nothing. Both file
// formats: this broker's earlier `kill_switch` and the reference broker's
// `drop_task_killswitch` selectors (any condition suffices; rows in any state).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { encode } from "@msgpack/msgpack";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { activation, brokerClients } from "./support/activations.ts";
import { parsePrometheusText, sumOf } from "./support/prom-text.ts";

const RELOAD_MS = 300;
const dir = tempDir("killswitch-");
const runtimePath = join(dir, "runtime.yaml");
let broker: BrokerProcess;

beforeAll(async () => {
  writeFileSync(runtimePath, "# no rules yet\n");
  broker = await spawnBroker({
    TASKBROKER_RUNTIME_CONFIG_PATH: runtimePath,
    TASKBROKER_RUNTIME_CONFIG_RELOAD_MS: String(RELOAD_MS),
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
  });
}, 30_000);
afterAll(async () => {
  await broker?.stop();
});

function task(
  taskname: string,
  args: unknown[],
  opts: { zstd?: boolean; raw?: Uint8Array; kwargs?: Record<string, unknown>; namespace?: string } = {},
) {
  let params = opts.raw ?? encode({ args, kwargs: opts.kwargs ?? {} });
  if (opts.zstd) params = Bun.zstdCompressSync(params);
  return create(TaskActivationSchema, {
    ...activation({ namespace: opts.namespace ?? "kill", taskname }),
    headers: opts.zstd ? { "compression-type": "zstd" } : {},
    parametersBytes: params,
  });
}

const stored = async (id: string) =>
  (await fetch(`http://127.0.0.1:${broker.adminPort}/api/activations/${id}`)).status === 200;
const killedAtIngest = async () =>
  sumOf(
    parsePrometheusText(await (await fetch(`http://127.0.0.1:${broker.adminPort}/metrics`)).text()),
    "taskbroker_ingest_total",
    {
      result: "killed",
    },
  );

/** Resolves on the next log line matching `pattern` that was not there when called. */
function nextLog(pattern: RegExp): Promise<void> {
  const count = () =>
    broker
      .logs()
      .split("\n")
      .filter((l) => pattern.test(l)).length;
  const seen = count();
  return until(`log ${pattern}`, async () => count() > seen, RELOAD_MS + 5000);
}

async function until(what: string, cond: () => Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await Bun.sleep(20);
  }
}

test("rules apply to stored rows within a reload period and to new ones at ingest", async () => {
  const { ingest } = brokerClients(broker.port);
  const victims = [task("tests.victim", [1]), task("tests.victim", [1], { zstd: true })];
  const spared = [task("tests.victim", [2]), task("tests.bystander", [1])];
  const unreadable = task("tests.victim", [], { raw: new Uint8Array([0xc1, 0x00, 0x01]) });
  expect((await ingest.produce({ activations: [...victims, ...spared, unreadable] })).accepted).toBe(5);

  writeFileSync(runtimePath, "kill_switch:\n  - taskname: tests.victim\n    args: [{ position: 0, values: [1] }]\n");
  const written = Date.now();
  // One period for the timer to fire plus slack for a loaded 2-core machine.
  await until(
    "stored victims removed",
    async () => !(await stored(victims[0]!.id)) && !(await stored(victims[1]!.id)),
    RELOAD_MS + 3000,
  );
  expect(Date.now() - written).toBeLessThan(RELOAD_MS + 3000);
  for (const a of [...spared, unreadable]) expect(await stored(a.id)).toBe(true);
  expect(broker.logs()).toContain("killswitch_swept");

  const before = await killedAtIngest();
  const res = await ingest.produce({ activations: [task("tests.victim", [1]), task("tests.victim", [3])] });
  expect(res.accepted).toBe(1);
  expect((await killedAtIngest()) - before).toBe(1);
});

test("a malformed file keeps the previous rules; removing the rule stops the killing", async () => {
  const { ingest } = brokerClients(broker.port);
  const invalid = nextLog(/runtime_config_invalid/);
  writeFileSync(runtimePath, "kill_switch:\n  - taskname: tests.victim\n    args: [{ values: [1] }\n");
  await invalid;
  expect((await ingest.produce({ activations: [task("tests.victim", [1])] })).accepted).toBe(0);

  const loaded = nextLog(/runtime_config_loaded.*kill_rules=0/);
  writeFileSync(runtimePath, "");
  await loaded;
  expect((await ingest.produce({ activations: [task("tests.victim", [1])] })).accepted).toBe(1);
});

test("the reference broker's selectors: either condition suffices, stored rows in any state go, new ones are dropped", async () => {
  const { ingest, consumer } = brokerClients(broker.port);
  const byPosition = task("tests.unmerge", [123]);
  const byKeyword = task("tests.unmerge", [], { kwargs: { project_id: 123 } });
  const running = task("tests.unmerge", [123], { namespace: "kill.running" });
  const other = task("tests.unmerge", [7], { kwargs: { project_id: 8 } });
  expect((await ingest.produce({ activations: [byPosition, byKeyword, running, other] })).accepted).toBe(4);
  const claimed = await consumer.getTask({ application: running.application, namespace: "kill.running" });
  expect(claimed.task?.id).toBe(running.id);

  writeFileSync(
    runtimePath,
    "drop_task_killswitch:\n  - name: tests.unmerge\n    select_arg: {0: 123}\n    select_kwarg: {project_id: 123}\ndemoted_namespaces: []\n",
  );
  await until(
    "stored matches removed, the running one too",
    async () => !(await stored(byPosition.id)) && !(await stored(byKeyword.id)) && !(await stored(running.id)),
    RELOAD_MS + 3000,
  );
  expect(await stored(other.id)).toBe(true);

  const res = await ingest.produce({
    activations: [task("tests.unmerge", [], { kwargs: { project_id: 123 } }), task("tests.unmerge", [124])],
  });
  expect(res.accepted).toBe(1);
});
