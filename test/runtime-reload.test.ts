// Hot reload of the runtime configuration file: a new file takes effect within
// one reload period, a malformed or missing file keeps the previous rules and
// says why in the log; the load line's notes; a killed task's local retry.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../src/log.ts";
import { startRuntimeConfig } from "../src/runtime/index.ts";
import { openStore } from "../src/store/sqlite.ts";
import { localPublisher } from "../src/upkeep/publisher.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

const dir = mkdtempSync(join(tmpdir(), "runtime-reload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(cond: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("rules follow the file; a malformed or missing file changes nothing", async () => {
  const path = join(dir, "runtime.yaml");
  writeFileSync(path, "demoted_namespaces: { slow: long }\n");
  const lines: string[] = [];
  const log = createLogger({ format: "text", level: "info", write: (l) => lines.push(l) });
  const runtime = startRuntimeConfig({ path, reloadMs: 50, log });
  try {
    // Loaded synchronously at start-up.
    expect(runtime.demotedTopic("slow")).toBe("long");

    writeFileSync(path, "demoted_namespaces: { slow: longer }\nkill_switch: [{ taskname: t }]\n");
    await until(() => runtime.demotedTopic("slow") === "longer");
    expect(runtime.rules().killByTaskname.has("t")).toBe(true);

    writeFileSync(path, "kill_switch: [{ taskname: t, args: [{ values: [1] }] }]\n");
    await until(() => lines.some((l) => l.includes("runtime_config_invalid")));
    expect(await runtime.reload()).toBe("invalid");
    expect(await runtime.reload()).toBe("invalid");
    expect(lines.filter((l) => l.includes("runtime_config_invalid")).length).toBe(1); // logged once, not every period
    expect(runtime.demotedTopic("slow")).toBe("longer");
    expect(runtime.rules().killByTaskname.has("t")).toBe(true);
    expect(lines.find((l) => l.includes("runtime_config_invalid"))).toContain("position or a keyword");

    unlinkSync(path);
    await until(() => lines.some((l) => l.includes("runtime_config_unreadable")));
    expect(runtime.demotedTopic("slow")).toBe("longer");

    writeFileSync(path, "");
    await until(() => runtime.demotedTopic("slow") === null);
    expect(runtime.rules().killByTaskname.size).toBe(0);
  } finally {
    runtime.stop();
  }
});

test("no path: no rules, nothing dropped", () => {
  const runtime = startRuntimeConfig({
    path: undefined,
    reloadMs: 50,
    log: createLogger({ format: "text", level: "error", write: () => {} }),
  });
  expect(runtime.shouldDrop({ taskname: "t", namespace: "n", activation: new Uint8Array() })).toBe(false);
  runtime.stop();
});

test("the load line names selectors that match nothing, the earlier format, and demotion without Kafka", () => {
  const path = join(dir, "notes.yaml");
  writeFileSync(
    path,
    "drop_task_killswitch: [{ name: t }]\nkill_switch: [{ taskname: u }]\ndemoted_namespaces: [slow]\n",
  );
  const lines: string[] = [];
  const runtime = startRuntimeConfig({
    path,
    reloadMs: 60_000,
    kafka: false,
    log: createLogger({ format: "text", level: "info", write: (l) => lines.push(l) }),
  });
  runtime.stop();
  const notes = lines.filter((l) => l.includes("runtime_config_note")).join("\n");
  expect(notes).toContain("matches nothing");
  expect(notes).toContain("earlier format");
  expect(notes).toContain("no effect without Kafka");
  expect(runtime.demotedTopic("slow")).toBe("taskworker-long");
  const withLong = startRuntimeConfig({
    path,
    reloadMs: 60_000,
    longTopic: "my-long",
    log: createLogger({ format: "text", level: "error", write: () => {} }),
  });
  withLong.stop();
  expect(withLong.demotedTopic("slow")).toBe("my-long"); // kafka_long_topic
});

test("a killed task's retry is dropped on its way back in (no Kafka: the local publisher)", async () => {
  const store = openStore({
    path: ":memory:",
    synchronous: "normal",
    groupCommitWindowMs: 0,
    processingDeadlineGraceSec: 3,
  });
  try {
    const bytes = (taskname: string) =>
      toBinary(
        TaskActivationSchema,
        create(TaskActivationSchema, { id: crypto.randomUUID(), namespace: "n", taskname, application: "a" }),
      );
    const publisher = localPublisher(store, { drop: (row) => row.taskname === "doomed" });
    await publisher.publishRetry(bytes("doomed"));
    await publisher.publishRetry(bytes("spared"));
    expect(store.counts().pending).toBe(1);
  } finally {
    await store.close();
  }
});
