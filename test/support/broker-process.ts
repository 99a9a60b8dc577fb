// Test fixture: runs `bun src/main.ts broker` as a separate process with a
// fresh SQLite file and an ephemeral port, and resolves once the broker logs
// `broker_started grpc_port=<n>`. Every test that talks to a broker uses it,
// so tests exercise the real binary over real sockets.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = process.execPath;

export interface SpawnBrokerOptions {
  /** Database file to use (e.g. to restart on the same data); default a fresh temp file. */
  dbPath?: string;
  /** Extra CLI arguments after `broker` (e.g. ["-c", "broker.yaml"]). */
  args?: string[];
  /** Longest wait for `broker_started`, ms. Default 20000. */
  startTimeoutMs?: number;
  /** Echo the broker's log lines to this process's stderr (debugging). */
  echo?: boolean;
  /** Bun options before the script (benches: --cpu-prof-md, ...). */
  bunArgs?: string[];
  /** A command the broker runs under, e.g. ["prlimit", "--nofile=1024:1024", "--"] (it must exec the broker). */
  command?: string[];
}

export interface BrokerProcess {
  port: number;
  adminPort?: number;
  proc: Subprocess;
  dbPath: string;
  /** "127.0.0.1:<port>" */
  address: string;
  /** Sends the signal (default SIGTERM) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
  kill9(): void;
  /** Everything the broker wrote to stdout and stderr so far. */
  logs(): string;
  /** Resolves when a log line matching `pattern` appears (or rejects after timeoutMs). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

let runRoot: string | undefined;

/**
 * A fresh directory for one test's (or bench's) files, inside one directory per
 * process under the OS temp dir that removeTempDirs() deletes (bun test calls it
 * after the last file, from test/support/preload.ts; a bench at its exit): a full
 * suite or compare.ts run used to leave a few hundred database folders behind.
 */
export function tempDir(prefix = "taskplatform-"): string {
  if (runRoot === undefined) {
    runRoot = mkdtempSync(join(tmpdir(), "taskplatform-run-"));
    process.once("exit", removeTempDirs); // bun test does not emit "exit"; benches and scripts do
  }
  return mkdtempSync(join(runRoot, prefix));
}

/** Deletes every directory tempDir() made in this process. */
export function removeTempDirs(): void {
  if (runRoot === undefined) return;
  try {
    rmSync(runRoot, { recursive: true, force: true });
  } catch {
    // A mount point or a file still held by a leaked child: left to the OS's temp cleanup.
  }
  runRoot = undefined;
}

export async function spawnBroker(
  env: Record<string, string> = {},
  opts: SpawnBrokerOptions = {},
): Promise<BrokerProcess> {
  if (env.TASKBROKER_LOG_FILTER === "warn" || env.TASKBROKER_LOG_FILTER === "error") {
    throw new Error(
      "spawnBroker waits for the info-level broker_started line; TASKBROKER_LOG_FILTER must be info or lower",
    );
  }
  const dbPath = opts.dbPath ?? join(tempDir("taskbroker-"), "inflight.sqlite");
  // Start from the parent's environment without its TASKBROKER_* settings, so a
  // developer's shell cannot change what a test runs against.
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("TASKBROKER_")) base[k] = v;
  }
  const childEnv = {
    ...base,
    TASKBROKER_GRPC_PORT: "0",
    TASKBROKER_GRPC_HOST: "127.0.0.1",
    TASKBROKER_STORE__SQLITE__PATH: dbPath,
    TASKBROKER_LOG_FORMAT: "text",
    ...env,
  };
  const proc = Bun.spawn(
    [...(opts.command ?? []), BUN, ...(opts.bunArgs ?? []), "src/main.ts", "broker", ...(opts.args ?? [])],
    {
      cwd: ROOT,
      env: childEnv,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );

  let output = "";
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const onText = (text: string) => {
    if (opts.echo) process.stderr.write(text);
    const before = output.length;
    output += text;
    // Check waiters against complete lines that arrived with this chunk.
    const start = output.lastIndexOf("\n", before - 1) + 1;
    const lines = output.slice(start).split("\n");
    lines.pop(); // the unterminated tail is checked again with the next chunk
    for (const line of lines) {
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pattern.test(line)) {
          waiters[i]!.resolve(line);
          waiters.splice(i, 1);
        }
      }
    }
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) onText(decoder.decode(chunk, { stream: true }));
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);

  const waitForLog = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const existing = output.split("\n").find((l) => pattern.test(l));
      if (existing !== undefined && output.includes(existing + "\n")) return resolve(existing);
      const timer = setTimeout(() => {
        const i = waiters.indexOf(entry);
        if (i >= 0) waiters.splice(i, 1);
        reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; broker output:\n${output}`));
      }, timeoutMs);
      const entry = {
        pattern,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      waiters.push(entry);
    });

  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const started = await Promise.race([
    waitForLog(/\bbroker_started\b.*\bgrpc_port=\d+/, startTimeoutMs),
    proc.exited.then(async (code) => {
      await Bun.sleep(50); // let the pipes flush the reason
      throw new Error(`broker exited with code ${code} before broker_started; output:\n${output}`);
    }),
  ]).catch((err) => {
    proc.kill(9);
    throw err;
  });
  const port = Number(/\bgrpc_port=(\d+)/.exec(started)![1]);
  const adminMatch = /\badmin_port=(\d+)/.exec(started);
  const adminPort = adminMatch && Number(adminMatch[1]) > 0 ? Number(adminMatch[1]) : undefined;

  const result: BrokerProcess = {
    port,
    proc,
    dbPath,
    address: `127.0.0.1:${port}`,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return await proc.exited;
    },
    kill9() {
      proc.kill(9);
    },
    logs: () => output,
    waitForLog,
  };
  if (adminPort !== undefined) result.adminPort = adminPort;
  return result;
}
