// Test fixture: runs `bun src/main.ts <args>` to completion as a user would,
// with the parent's TASKBROKER_* settings removed so a developer's shell
// cannot change what a test runs against.
import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");

/** The parent's environment without TASKBROKER_* variables, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("TASKBROKER_")) base[k] = v;
  return { ...base, ...extra };
}

/** Runs the CLI with `args` and resolves with its exit code and output. */
export async function runCli(args: string[], env: Record<string, string> = {}, cwd = ROOT) {
  const proc = Bun.spawn([process.execPath, resolve(ROOT, "src/main.ts"), ...args], {
    cwd,
    env: cleanEnv(env),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}
