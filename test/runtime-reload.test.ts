// Hot reload of the runtime configuration file: a new file takes effect within
// one reload period, a malformed or missing file keeps the previous rules and
// says why in the log.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../src/log.ts";
import { startRuntimeConfig } from "../src/runtime/index.ts";

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
  const runtime = startRuntimeConfig({ path: undefined, reloadMs: 50, log: createLogger({ format: "text", level: "error", write: () => {} }) });
  expect(runtime.shouldDrop({ taskname: "t", namespace: "n", activation: new Uint8Array() })).toBe(false);
  runtime.stop();
});
