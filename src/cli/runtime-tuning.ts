// Bun runtime settings a command runs with. Bun (JavaScriptCore) reads them
// from the environment only when the process starts, so a command that finds
// them missing re-executes itself once with them added (process.execve: same
// PID, same arguments, the process image replaced before anything else ran).
// A command started with them already set, or with TASKPLATFORM_BUN_TUNING=off,
// runs as it is; a value an operator set keeps winning.
//
// The broker runs without JavaScriptCore's top JIT tier, FTL
// (BUN_JSC_useFTLJIT=0; the DFG tier below it stays). The broker runs only our
// code, whose hot paths are I/O and SQLite, and FTL's compilations (several
// ms each, on a compiler thread, still running 10 s into a steady load) take
// a core from the event loop on a small machine. Measured here (Bun 1.4.5, 2
// cores, bench/e2e.ts at 500 tasks/s, three interleaved pairs): p99
// enqueue-to-start 1.86-2.10 ms without FTL against 2.60-3.20 ms with it,
// and ~10% less CPU per task; the drain rate did not change (docs/operating.md
// "Runtime settings"). The worker keeps FTL: task code is the user's, and
// FTL is what makes CPU-bound task code fast.

const TUNING: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  broker: { BUN_JSC_useFTLJIT: "0" },
};

/**
 * The environment and argv to re-execute with, or null when the process
 * already runs with the tuning (or must not be re-executed). Pure: main.ts
 * calls it with the real process values.
 */
export function tuningReexec(
  command: string,
  env: Readonly<Record<string, string | undefined>>,
  proc: { execPath: string; execArgv: readonly string[]; argv: readonly string[] },
): { env: Record<string, string>; argv: string[] } | null {
  const tuning = TUNING[command];
  if (tuning === undefined || env.TASKPLATFORM_BUN_TUNING === "off") return null;
  const missing = Object.keys(tuning).filter((k) => env[k] === undefined);
  if (missing.length === 0) return null;
  const next: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) next[k] = v;
  for (const k of missing) next[k] = tuning[k]!;
  // A standalone executable (bun build --compile) has its embedded entry as argv[1] and takes the user's
  // arguments right after the executable; under `bun src/main.ts`, Bun's own flags and the script come first.
  const compiled = proc.argv[1]?.startsWith("/$bunfs/") === true;
  const argv = compiled
    ? [proc.execPath, ...proc.argv.slice(2)]
    : [proc.execPath, ...proc.execArgv, ...proc.argv.slice(1)];
  return { env: next, argv };
}

/** The tuning this process runs with, for the start-up log: the variables set, and whether it is off. */
export function runtimeTuning(command: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(TUNING[command] ?? {})) out[k] = process.env[k] ?? "(unset)";
  return out;
}

/** Re-executes this process with the tuning when it lacks it; returns only when it does not. */
export function applyRuntimeTuning(command: string): void {
  const plan = tuningReexec(command, process.env, process);
  if (plan === null || typeof process.execve !== "function") return;
  process.execve(plan.argv[0]!, plan.argv, plan.env);
}
