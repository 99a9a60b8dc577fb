// The `taskplatform` command as an operator runs it: help that lists every
// variable with its default, configuration mistakes that stop start-up with
// exit 2 and one line, a start-up log without secrets, and a YAML file given
// with -c. Each case runs `bun src/main.ts ...` as a separate process.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { schedulerSchema } from "../src/config/scheduler.ts";
import { workerSchema } from "../src/config/worker.ts";
import { envName } from "../src/config/source.ts";
import { settings, showDefault } from "../src/config/walk.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { cleanEnv } from "./support/cli-process.ts";

const ROOT = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "cli-test-"));
const brokers: BrokerProcess[] = [];
afterAll(async () => {
  for (const b of brokers) await b.stop("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI to completion with a clean TASKBROKER_* environment plus `env`. */
function runCli(args: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "src/main.ts"), ...args], {
    cwd: dir,
    env: cleanEnv(env),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("help", () => {
  test.each([[["--help"]], [["broker", "--help"]]])("%p lists every variable with its default", (args) => {
    const r = runCli(args);
    expect(r.code).toBe(0);
    for (const s of settings(brokerConfigSchema)) {
      const dflt = showDefault(s);
      expect(r.stdout).toContain(
        `  ${envName("TASKBROKER_", s.path)}  default: ${s.inMap && dflt === "(required)" ? "(required in each entry)" : dflt}\n`,
      );
    }
    // Spot checks against docs/spec/broker.md, independent of the schema walk.
    expect(r.stdout).toContain("  TASKBROKER_GRPC_PORT  default: 50051\n");
    expect(r.stdout).toContain("  TASKBROKER_STORE__SQLITE__PATH  default: ./taskbroker-inflight.sqlite\n");
    expect(r.stdout).toContain("  TASKBROKER_STORE__MAX_DELAY_COUNT  default: 8192\n");
    expect(r.stdout).toContain("  TASKBROKER_KAFKA_CLUSTERS__<NAME>__ADDRESS  default: (required in each entry)\n");
    expect(r.stdout).toContain("TASKBROKER_DB_PATH -> TASKBROKER_STORE__SQLITE__PATH");
  });

  test("the top-level help names the commands; --version prints the version", () => {
    expect(runCli(["--help"]).stdout).toContain("deadletters replay ID");
    const v = runCli(["--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^taskplatform \d+\.\d+\.\d+\n$/);
  });

  test("an unknown command prints usage and exits 2", () => {
    const r = runCli(["brokr"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "brokr"');
    expect(r.stderr).toContain("Usage: taskplatform <command>");
  });
});

describe("help of the other commands, generated from the same kind of schema", () => {
  test.each([
    ["worker", workerSchema, "TASKWORKER_"],
    ["scheduler", schedulerSchema, "TASKSCHEDULER_"],
  ] as const)("%s --help names every flag and variable with its default and description", (command, schema, prefix) => {
    const r = runCli([command, "--help"]);
    expect(r.code).toBe(0);
    for (const s of settings(schema)) {
      const line = r.stdout
        .split("\n")
        .find((l) => l.includes(`  ${envName(prefix, s.path)}  default: ${showDefault(s)}`));
      expect(line).toBeDefined();
      for (const flag of s.info.flags ?? []) expect(line).toContain(flag);
      const next = r.stdout.split("\n")[r.stdout.split("\n").indexOf(line!) + 1]!;
      expect(next).toContain(s.info.description!);
    }
    expect(r.stdout).toContain(`Usage: taskplatform ${command}`);
  });

  test("deadletters, inspect and demo have generated help too", () => {
    for (const command of ["deadletters", "inspect", "demo"]) {
      const r = runCli([command, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: taskplatform ${command}`);
      expect(r.stdout).toMatch(/--\w+.*default: /);
    }
  });
});

describe("configuration mistakes stop start-up: exit 2, one line", () => {
  test.each([
    [
      ["worker", "--tasks", "t.ts", "--concurrency", "x"],
      'taskplatform worker: --concurrency="x" is invalid: expected an integer >= 1\n',
    ],
    [
      ["worker"],
      "taskplatform worker: no task module given: expected --tasks <module> (or TASKWORKER_TASKS), e.g. --tasks ./tasks.ts\n",
    ],
    [
      ["scheduler", "--schedules", "s.yaml", "--grace-ms", "later"],
      'taskplatform scheduler: --grace-ms="later" is invalid: expected a duration such as "250ms", "5s", "2m" or a number\n',
    ],
    [["demo", "--seconds", "soon"], 'taskplatform demo: --seconds="soon" is invalid: expected a number > 0\n'],
  ])("%p", (args, line) => {
    const r = runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(line);
  });

  test.each([
    [
      { TASKBROKER_GRPC_PORT: "abc" },
      'taskplatform broker: TASKBROKER_GRPC_PORT="abc" is invalid: expected an integer from 0 to 65535\n',
    ],
    [
      { TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "soon" },
      'taskplatform broker: TASKBROKER_UPKEEP_TASK_INTERVAL_MS="soon" is invalid: expected a duration such as "250ms", "5s", "2m" or a number\n',
    ],
    [
      { TASKBROKER_STORE__MAX_PENDNG_COUNT: "5" },
      "taskplatform broker: unknown variable TASKBROKER_STORE__MAX_PENDNG_COUNT (did you mean TASKBROKER_STORE__MAX_PENDING_COUNT?); --help lists every variable\n",
    ],
    [
      { TASKBROKER_KAFKA_TOPIC: "t", TASKBROKER_KAFKA_TOPICS__T__CLUSTER: "default" },
      "taskplatform broker: TASKBROKER_KAFKA_TOPIC (the deprecated single-cluster Kafka form) cannot be combined with TASKBROKER_KAFKA_TOPICS__T__CLUSTER (kafka_clusters / kafka_topics): use one form\n",
    ],
  ])("%o", (env, line) => {
    const r = runCli(["broker"], env as Record<string, string>);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(line);
  });

  test("a bad secret is reported without its value", () => {
    const r = runCli(["broker"], { TASKBROKER_GRPC_SHARED_SECRET: '["hunter2' });
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain("hunter2");
    expect(r.stderr).toContain("TASKBROKER_GRPC_SHARED_SECRET=*** is invalid");
  });

  test("a bad value in the -c file names key and file; -c may come before the command", () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "grpc_port: -1\n");
    const r = runCli(["-c", file, "broker"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `taskplatform broker: grpc_port in ${file}=-1 is invalid: expected an integer from 0 to 65535\n`,
    );
  });

  test("the reference broker's command line: -c file alone (or --run broker) runs the broker; --run migrations has nothing to do", () => {
    const file = join(dir, "ref.yaml");
    writeFileSync(file, "grpc_port: 99999\n");
    for (const args of [
      ["-c", file],
      ["--run", "broker", "--config", file],
    ]) {
      const r = runCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `taskplatform broker: grpc_port in ${file}=99999 is invalid: expected an integer from 0 to 65535\n`,
      );
    }
    const m = runCli(["-r", "migrations", "-c", file]);
    expect(m.code).toBe(0);
    expect(m.stderr).toContain("no standalone migrations");
  });

  test("an unknown option is a usage error", () => {
    const r = runCli(["broker", "--prot", "1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option --prot");
  });
});

describe("start-up", () => {
  test("the effective configuration is logged with secrets redacted; the YAML file applies under the environment", async () => {
    const file = join(dir, "ok.yaml");
    writeFileSync(file, "store:\n  max_pending_count: 77\n  max_delay_count: 78\nadmin_token: yaml-admin-token-xyz\n");
    const b = await spawnBroker(
      {
        TASKBROKER_GRPC_SHARED_SECRET: '["first-secret-abc","second-secret-def"]',
        TASKBROKER_STORE__MAX_DELAY_COUNT: "79",
      },
      { args: ["-c", file] },
    );
    brokers.push(b);
    expect(b.port).toBeGreaterThan(0);
    const logs = b.logs();
    const configLine = logs.split("\n").find((l) => / INFO  config /.test(l)) ?? "";
    expect(configLine).toContain("store.max_pending_count=77");
    expect(configLine).toContain("store.max_delay_count=79");
    expect(configLine).toContain(`grpc_port=0`);
    expect(configLine).toContain("***");
    expect(logs).not.toMatch(/first-secret-abc|second-secret-def|yaml-admin-token-xyz/);
    expect(logs).toMatch(new RegExp(`INFO  broker_started grpc_port=${b.port} admin_port=0`));
    expect(await b.stop()).toBe(0);
    expect(b.logs()).not.toMatch(/first-secret-abc|second-secret-def|yaml-admin-token-xyz/);
  });
});
