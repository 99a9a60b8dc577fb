// Loading schedules from where users keep them: a TypeScript module (that also
// registers its tasks, whose options then shape the scheduled activations, also
// from an application folder with its own copy of the SDK installed),
// YAML and JSON files; and refusing bad sources with a message that names them.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { OnAttemptsExceeded } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { buildScheduledActivation, loadSchedules, ScheduleDefinitionError } from "../src/scheduler/index.ts";
import { findTaskTemplate } from "../src/sdk/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "scheduler-loader-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a module's schedules use the options of the tasks it registers", async () => {
  const path = join(dir, "schedules.ts");
  writeFileSync(
    path,
    `import { createApp, retry } from ${JSON.stringify(join(ROOT, "src/sdk/index.ts"))};
import { defineSchedules } from ${JSON.stringify(join(ROOT, "src/scheduler/index.ts"))};
const app = createApp({ name: "loader-test" });
const reports = app.namespace("loader_reports", { retry: retry({ times: 3, onAttemptsExceeded: "deadletter" }), processingDeadlineS: 45 });
reports.register({ name: "nightly", handler: () => {} });
export const schedules = defineSchedules({
  nightly: { task: "loader_reports:nightly", crontab: "0 3 * * *", kwargs: { full: true } },
  unknown: { task: "elsewhere:thing", intervalSec: 30 },
});
`,
  );
  const schedules = await loadSchedules(path);
  expect(schedules.map((s) => s.key)).toEqual(["nightly", "unknown"]);
  const nightly = buildScheduledActivation(schedules[0]!, 0, 0, findTaskTemplate).activation;
  expect(nightly.application).toBe("loader-test");
  expect(nightly.processingDeadlineDuration).toBe(45n);
  expect(nightly.retryState).toMatchObject({ maxAttempts: 3, onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER });
  // A task this process does not know: platform defaults.
  const unknown = buildScheduledActivation(schedules[1]!, 0, 0, findTaskTemplate).activation;
  expect(unknown).toMatchObject({ application: "default", processingDeadlineDuration: 10n });
});

test("an application's schedules module importing \"taskplatform\" registers into the scheduler's own SDK", async () => {
  // As in an application folder: its own copy of the package is installed, and must not be the one loaded,
  // else the tasks register there and the scheduled activations lose their retry policy and deadline.
  const appDir = join(dir, "app");
  mkdirSync(join(appDir, "node_modules/taskplatform"), { recursive: true });
  writeFileSync(
    join(appDir, "node_modules/taskplatform/package.json"),
    JSON.stringify({ name: "taskplatform", type: "module", exports: { ".": "./index.js" } }),
  );
  writeFileSync(
    join(appDir, "node_modules/taskplatform/index.js"),
    'throw new Error("the application\'s copy of taskplatform was loaded");\n',
  );
  writeFileSync(
    join(appDir, "tasks.ts"),
    `import { createApp, retry } from "taskplatform";
const app = createApp({ name: "alias-shop" });
const billing = app.namespace("alias_billing", { processingDeadlineS: 20 });
billing.register({ name: "sync", retry: retry({ times: 5, onAttemptsExceeded: "deadletter" }), handler: () => {} });
`,
  );
  writeFileSync(
    join(appDir, "schedules.ts"),
    `import { defineSchedules } from "taskplatform";
import "./tasks.ts";
export default defineSchedules({ sync: { task: "alias_billing:sync", intervalSec: 600, application: "alias-shop" } });
`,
  );
  const [sync] = await loadSchedules("schedules.ts", appDir);
  const built = buildScheduledActivation(sync!, 0, 0, findTaskTemplate).activation;
  expect(built.processingDeadlineDuration).toBe(20n);
  expect(built.retryState).toMatchObject({ maxAttempts: 5, onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER });
});

test("YAML (bare map) and JSON (under `schedules`) files", async () => {
  writeFileSync(
    join(dir, "a.yml"),
    "tick:\n  task: ns:tick\n  intervalSec: 5\ncron:\n  task: ns:cron\n  crontab: '@hourly'\n",
  );
  writeFileSync(join(dir, "b.json"), JSON.stringify({ schedules: { tick: { task: "ns:tick", intervalSec: 5 } } }));
  const yaml = await loadSchedules("a.yml", dir);
  expect(yaml.map((s) => [s.key, s.trigger.kind])).toEqual([
    ["tick", "interval"],
    ["cron", "crontab"],
  ]);
  const json = await loadSchedules(join(dir, "b.json"));
  expect(json[0]!.hash).toBe(yaml[0]!.hash);
});

test("bad sources are refused with a message naming the problem", async () => {
  writeFileSync(join(dir, "none.ts"), "export const other = 1;\n");
  writeFileSync(join(dir, "bad.yaml"), "tick:\n  task: ns:tick\n  intervalSec: 0.5\n");
  writeFileSync(join(dir, "broken.yaml"), "tick: [\n");
  await expect(loadSchedules(join(dir, "missing.yaml"))).rejects.toThrow(/cannot read schedules file/);
  await expect(loadSchedules(join(dir, "none.ts"))).rejects.toThrow(/exports no `schedules`/);
  await expect(loadSchedules(join(dir, "bad.yaml"))).rejects.toThrow(
    /schedule "tick"\.intervalSec: must be whole seconds/,
  );
  await expect(loadSchedules(join(dir, "broken.yaml"))).rejects.toThrow(ScheduleDefinitionError);
  await expect(loadSchedules("no-such-package-for-schedules")).rejects.toThrow(/cannot load schedules module/);
});
