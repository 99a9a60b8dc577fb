// The compiled `taskplatform` binary (`npm run build`'s command) on a machine
// without Bun: copied alone into an empty directory (no node_modules) and run
// with a PATH that has no bun, it prints help, rejects bad config with exit 2,
// and serves as a broker that answers a real gRPC client and stops on SIGTERM.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.ts";

const ROOT = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "taskplatform-bin-"));
const binary = join(dir, "taskplatform");
// Only system directories: no node_modules/.bin, no ~/.bun.
const ENV = { PATH: "/usr/bin:/bin", HOME: dir };

beforeAll(() => {
  const pkg = (require(join(ROOT, "package.json")) as { scripts: { build: string } }).scripts.build;
  // The package's own build command, pointed at the temp dir.
  const args = pkg
    .split(/\s+/)
    .slice(1)
    .map((a, i, all) => (all[i - 1] === "--outfile" ? binary : a));
  const r = Bun.spawnSync([process.execPath, ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`build failed: ${r.stderr.toString()}`);
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("compiled binary without bun", () => {
  test("--help, --version, and a bad variable (exit 2, one line)", () => {
    const help = Bun.spawnSync([binary, "--help"], { cwd: dir, env: ENV });
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toContain("TASKBROKER_GRPC_PORT  default: 50051");
    const version = Bun.spawnSync([binary, "--version"], { cwd: dir, env: ENV });
    expect(version.stdout.toString()).toMatch(/^taskplatform \d+\.\d+\.\d+\n$/);
    const bad = Bun.spawnSync([binary, "broker"], { cwd: dir, env: { ...ENV, TASKBROKER_STORE__MAX_SIZE: "big" } });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toBe(
      'taskplatform broker: TASKBROKER_STORE__MAX_SIZE="big" is invalid: expected an integer >= 1\n',
    );
  });

  test("runs a broker that answers health checks and exits 0 on SIGTERM", async () => {
    const proc = Bun.spawn([binary, "broker"], {
      cwd: dir,
      env: {
        ...ENV,
        TASKBROKER_GRPC_PORT: "0",
        TASKBROKER_GRPC_HOST: "127.0.0.1",
        TASKBROKER_STORE__SQLITE__PATH: join(dir, "db.sqlite"),
      },
      stdout: "ignore",
      stderr: "pipe",
    });
    try {
      // Keep reading stderr to the end: a closed pipe would make the broker's later log writes fail.
      let text = "";
      let onText = () => {};
      const pump = (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of proc.stderr) {
          text += decoder.decode(chunk, { stream: true });
          onText();
        }
      })();
      const port = await new Promise<number>((resolvePort, reject) => {
        onText = () => {
          const m = /broker_started grpc_port=(\d+)/.exec(text);
          if (m) resolvePort(Number(m[1]));
        };
        void proc.exited.then(() => reject(new Error(`broker exited before starting:\n${text}`)));
      });
      expect(port).toBeGreaterThan(0);
      const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      const res = await health.check({ service: "" });
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await pump;
      expect(text).toContain("broker_stopped");
    } finally {
      proc.kill("SIGKILL");
    }
  }, 60_000);
});
