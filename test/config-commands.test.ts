// One configuration system for every command: the worker, scheduler and small
// commands load flags, their environment and a -c file through the same
// schema-driven loader as the broker, with the same one-line errors, and
// accept Sentry's worker flag names. In-process: loading is pure apart from
// reading the YAML file.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { splitCommand } from "../src/config/args.ts";
import { loadCommand } from "../src/config/command.ts";
import { DEADLETTERS_COMMAND, INSPECT_COMMAND } from "../src/config/commands.ts";
import { resolveSchedulerConfig } from "../src/config/scheduler.ts";
import { settings } from "../src/config/walk.ts";
import { brokerHosts, resolveWorkerConfig, workerSchema, type WorkerConfig } from "../src/config/worker.ts";
import { configErrorOf } from "./support/config-errors.ts";

const dir = mkdtempSync(join(tmpdir(), "config-commands-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function worker(argv: string[], env: Record<string, string> = {}): WorkerConfig {
  const r = resolveWorkerConfig(argv, env);
  if (r.help) throw new Error("unexpected help");
  return r.config;
}

describe("worker", () => {
  test("Sentry's flag names set the same settings as ours", () => {
    const c = worker([
      "--app-module",
      "./tasks.ts",
      "--rpc-host",
      "taskbroker:50051",
      "--health-check-file-path",
      "/tmp/health.txt",
      "--max-child-task-count",
      "10000",
      "--processing-pool-name",
      "pool-a",
      "--concurrency=3",
      "--namespace",
      "ingest",
      "--prometheus-port",
      "0",
      "--loglevel",
      "WARNING",
      "--logformat",
      "machine",
    ]);
    expect(c.tasks).toEqual(["./tasks.ts"]);
    expect(c.rpcHostList).toEqual(["taskbroker:50051"]);
    expect(c.healthCheckFile).toBe("/tmp/health.txt");
    expect(c.maxChildTaskCount).toBe(10000);
    expect(c.processingPoolName).toBe("pool-a");
    expect(c.concurrency).toBe(3);
    expect(c.namespace).toBe("ingest");
    expect(c.metricsPort).toBe(0);
    expect(c.logLevel).toBe("warn");
    expect(c.logFormat).toBe("json");
  });

  test("broker hosts as Sentry builds them: the list wins, else <host>-<i> for --num-brokers", () => {
    expect(worker(["--tasks", "t.ts", "--rpc-host", "tb:50051", "--num-brokers", "3"]).rpcHostList).toEqual([
      "tb-0:50051",
      "tb-1:50051",
      "tb-2:50051",
    ]);
    expect(worker(["--tasks", "t.ts", "--rpc-host-list", "a:1, b:2", "--num-brokers", "3"]).rpcHostList).toEqual([
      "a:1",
      "b:2",
    ]);
    expect(worker(["--tasks", "t.ts", "--broker-host", "a:1", "--broker-host", "b:2"]).rpcHostList).toEqual([
      "a:1",
      "b:2",
    ]);
    expect(worker(["--tasks", "a.ts", "--tasks", "b.ts,c.ts"]).tasks).toEqual(["a.ts", "b.ts", "c.ts"]);
    expect(brokerHosts("127.0.0.1:50051", undefined, undefined)).toEqual(["127.0.0.1:50051"]);
  });

  test("flags win over variables, variables over the -c file", () => {
    const file = join(dir, "worker.yaml");
    writeFileSync(file, "tasks: [from-file.ts]\nconcurrency: 7\nnamespace: file-ns\nrebalance_after: 9\n");
    const c = worker(["-c", file, "--concurrency", "2"], {
      TASKWORKER_CONCURRENCY: "5",
      TASKWORKER_NAMESPACE: "env-ns",
    });
    expect(c.tasks).toEqual(["from-file.ts"]);
    expect(c.concurrency).toBe(2);
    expect(c.namespace).toBe("env-ns");
    expect(c.rebalanceAfter).toBe(9);
  });

  test("one-line errors name the flag or variable, the value and the expectation", () => {
    expect(configErrorOf(() => worker(["--tasks", "t.ts", "--concurrency", "x"]))).toBe(
      '--concurrency="x" is invalid: expected an integer >= 1',
    );
    expect(configErrorOf(() => worker(["--tasks", "t.ts"], { TASKWORKER_CONCURRENCY: "-1" }))).toBe(
      'TASKWORKER_CONCURRENCY="-1" is invalid: expected an integer >= 1',
    );
    expect(configErrorOf(() => worker(["--tasks", "t.ts", "--rpc-host", "nohost"]))).toBe(
      '--rpc-host="nohost" is invalid: expected host:port',
    );
    expect(configErrorOf(() => worker(["--tasks", "t.ts", "--concurrency"]))).toBe(
      "option --concurrency needs a value",
    );
    expect(configErrorOf(() => worker(["--tasks", "t.ts", "--concurency", "2"]))).toBe(
      "unknown option --concurency (did you mean --concurrency?) (taskplatform worker --help lists every option)",
    );
    expect(configErrorOf(() => worker(["--tasks", "t.ts"], { TASKWORKER_CONCURENCY: "2" }))).toBe(
      "unknown variable TASKWORKER_CONCURENCY (did you mean TASKWORKER_CONCURRENCY?); taskplatform worker --help lists every variable",
    );
    expect(configErrorOf(() => worker(["--tasks", "t.ts", "stray"]))).toBe('unexpected argument "stray"');
    expect(configErrorOf(() => worker(["--tasks", "t.ts"], { TASKWORKER_GRPC_SHARED_SECRET: '["leak' }))).toBe(
      'TASKWORKER_GRPC_SHARED_SECRET=*** is invalid: expected a JSON array of non-empty strings such as ["new","old"], or one secret',
    );
  });

  test("no task module is an error, not a worker polling forever", () => {
    expect(configErrorOf(() => worker([]))).toBe(
      "no task module given: expected --tasks <module> (or TASKWORKER_TASKS), e.g. --tasks ./tasks.ts",
    );
  });

  test("Python-only settings are accepted and reported as without effect", () => {
    const r = resolveWorkerConfig(
      ["--tasks", "t.ts", "--process-type", "fork", "--no-skip-awaiting-futures", "--autoreload"],
      {},
    );
    if (r.help) throw new Error("unexpected help");
    expect(r.ignored.map((x) => x.split(" ")[0])).toEqual([
      "--process-type",
      "--no-skip-awaiting-futures",
      "--autoreload",
    ]);
    expect(configErrorOf(() => worker(["--tasks", "t.ts", "--autoreload=yes"]))).toBe(
      "option --autoreload takes no value (got --autoreload=yes)",
    );
  });

  test("every setting is documented and every flag is unique", () => {
    const all = settings(workerSchema);
    expect(all.filter((s) => !s.info.description).map((s) => s.path.join("."))).toEqual([]);
    const flags = all.flatMap((s) => [...(s.info.flags ?? []), ...(s.info.negations ?? [])]);
    expect(new Set(flags).size).toBe(flags.length);
  });
});

describe("scheduler and small commands", () => {
  test("the scheduler reads flags and TASKSCHEDULER_* through the same loader", () => {
    const r = resolveSchedulerConfig(["--schedules", "s.yaml", "--grace-ms", "2s"], {
      TASKSCHEDULER_DB_PATH: "/x.sqlite",
      TASKSCHEDULER_LOG_FILTER: "debug",
    });
    if (r.help) throw new Error("unexpected help");
    expect(r.config).toMatchObject({
      schedules: "s.yaml",
      db_path: "/x.sqlite",
      grace_ms: 2000,
      log_filter: "debug",
      log_format: "text",
    });
    expect(configErrorOf(() => resolveSchedulerConfig([], {}))).toBe(
      "no schedules given: expected --schedules <module-or-file> (or TASKSCHEDULER_SCHEDULES)",
    );
    expect(configErrorOf(() => resolveSchedulerConfig(["--schedules", "s", "--log-level", "loud"], {}))).toBe(
      '--log-level="loud" is invalid: expected one of trace, debug, info, warn, error (Sentry\'s WARNING, CRITICAL, FATAL accepted)',
    );
  });

  test("deadletters and inspect options: typed values and positionals", () => {
    const d = loadCommand(DEADLETTERS_COMMAND, ["list", "--limit", "5", "--json"], {});
    if (d.help) throw new Error("unexpected help");
    expect(d.config).toMatchObject({ limit: 5, json: true });
    expect(d.positional).toEqual(["list"]);
    expect(configErrorOf(() => loadCommand(INSPECT_COMMAND, ["deadletters", "--limit", "0"], {}))).toBe(
      '--limit="0" is invalid: expected an integer >= 1',
    );
    expect(
      configErrorOf(() => loadCommand(INSPECT_COMMAND, ["get", "--token", "sekrit", "--admin", "nota url"], {})),
    ).toBe('--admin="nota url" is invalid: expected a URL such as http://127.0.0.1:9090');
  });
});

describe("the top-level command line", () => {
  test("-c before the command moves behind it; the reference broker's `-c file` alone runs the broker", () => {
    expect(splitCommand(["-c", "f.yml", "broker"])).toMatchObject({ command: "broker", rest: ["--config", "f.yml"] });
    expect(splitCommand(["worker", "--tasks", "t.ts"])).toMatchObject({ command: "worker", rest: ["--tasks", "t.ts"] });
    expect(splitCommand(["-c", "f.yml"])).toMatchObject({ command: undefined, config: "f.yml" });
    expect(splitCommand(["--run", "broker", "--config=f.yml"])).toMatchObject({
      command: undefined,
      run: "broker",
      config: "f.yml",
    });
    expect(splitCommand(["--help"]).help).toBe(true);
    expect(configErrorOf(() => splitCommand(["--bogus", "broker"]))).toBe("unknown option --bogus");
  });
});
