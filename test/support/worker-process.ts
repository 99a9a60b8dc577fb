// Test fixture: `bun src/main.ts worker` as a separate process with the given
// flags and environment; resolves once it logs worker_started (with the
// metrics port when one was asked for). Tests read its /metrics and stop it
// with a signal or kill -9.
import { resolve } from "node:path";
import type { Subprocess } from "bun";
import { parsePrometheusText, sumOf } from "./prom-text.ts";

const ROOT = resolve(import.meta.dir, "../..");

export interface WorkerProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  metricsPort: number | undefined;
  logs(): string;
  /** Sum of taskworker_executions_total over samples matching the labels. */
  executions(labels: Record<string, string>): Promise<number>;
  stop(signal?: NodeJS.Signals): Promise<number>;
  kill9(): void;
  exited: Promise<number>;
}

/** `startedPattern`: the log line to wait for (default worker_started; push_port_listening comes before the task modules load). */
export async function spawnWorker(
  args: string[],
  env: Record<string, string>,
  startTimeoutMs = 20_000,
  startedPattern = /^.*worker_started.*$/m,
): Promise<WorkerProcess> {
  const baseEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("TASKWORKER_")) baseEnv[k] = v;
  const proc = Bun.spawn([process.execPath, resolve(ROOT, "src/main.ts"), "worker", ...args], {
    cwd: ROOT,
    env: { ...baseEnv, TASKWORKER_METRICS_PORT: "0", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let output = "";
  let onText = () => {};
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      onText();
    }
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  const line = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => {
      proc.kill(9);
      rej(new Error(`worker did not start:\n${output}`));
    }, startTimeoutMs);
    onText = () => {
      const m = startedPattern.exec(output);
      if (m) {
        clearTimeout(timer);
        onText = () => {};
        res(m[0]);
      }
    };
    void proc.exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`worker exited with ${code} before starting:\n${output}`));
    });
  });
  const port = /metrics_port(?:=|":)(\d+)/.exec(line); // text or JSON log format
  const metricsPort = port ? Number(port[1]) : undefined;
  return {
    proc,
    metricsPort,
    logs: () => output,
    async executions(labels) {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      return sumOf(parsePrometheusText(await res.text()), "taskworker_executions_total", labels);
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return await proc.exited;
    },
    kill9() {
      proc.kill(9);
    },
    exited: proc.exited,
  };
}

/** Polls `check` until it returns true or the timeout passes (then throws with `what`). */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await Bun.sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}
