// `npm start` (taskplatform demo) as a user runs it: a child process that
// brings up broker, worker, webhook endpoint and scheduler, plays the example
// tasks, prints a summary and exits 0 by itself.
import { expect, test } from "bun:test";
import { resolve } from "node:path";

test("the demo runs every example to its expected outcome and exits 0", async () => {
  const root = resolve(import.meta.dir, "..");
  const proc = Bun.spawn([process.execPath, "src/main.ts", "demo", "--seconds", "40"], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  if (code !== 0 || !out.includes("request 3 (attempt 2) -> 200")) console.log(out); // the story, when it went wrong
  expect(code).toBe(0);
  const row = (task: string) =>
    out
      .split("\n")
      .find((l) => l.startsWith(task + " "))
      ?.trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
  // columns: runs, complete, retry, failure, deadline, unknown_task, expired
  expect(row("demo.greet")?.slice(0, 2)).toEqual([4, 4]);
  expect(row("demo.deliver_webhook")?.slice(0, 3)).toEqual([3, 1, 2]);
  expect(row("demo.slow_report")?.[4]).toBe(1);
  expect(row("demo.start_chain")?.[1]).toBe(1);
  expect(row("demo.heartbeat")?.[1]).toBeGreaterThanOrEqual(2);
  expect(out).toContain("webhook endpoint: request 3 (attempt 2) -> 200");
}, 60_000);
