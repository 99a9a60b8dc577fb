// `taskplatform demo` (npm start): the platform on one machine with no other
// service. Starts the embedded broker on a free port with a temporary
// database, a worker, a local HTTP endpoint that plays a flaky webhook
// receiver, and the scheduler; dispatches the tasks in examples/tasks.ts,
// prints each outcome as it happens and a summary table, then shuts down.
// Ctrl-C shuts everything down cleanly at any point.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { startBroker } from "../broker.ts";
import { loadCommand } from "../config/command.ts";
import { DEMO_COMMAND } from "../config/commands.ts";
import { commandHelp } from "../config/help.ts";
import { loadBrokerConfig } from "../config/load.ts";
import { ConfigError } from "../config/source.ts";
import { resolveWorkerConfig } from "../config/worker.ts";
import { createLogger } from "../log.ts";
import { createRpcProducer } from "../sdk/rpc-producer.ts";
import { createRouter } from "../sdk/routing.ts";
import { findTask, findTaskTemplate, type Task } from "../sdk/index.ts";
import type { Outcome } from "../sdk/execute.ts";
import { buildScheduledActivation, normalizeSchedules, openRunStore, startScheduler } from "../scheduler/index.ts";
import type { WireActivation } from "../activation/wire.ts";
import { loadTaskModules } from "../worker/modules.ts";
import { startWorker } from "../worker.ts";

export function demoHelp(): string {
  return commandHelp(
    DEMO_COMMAND,
    "taskplatform demo [--examples DIR] [--seconds N]",
    "Runs a broker, a worker, the scheduler and the example tasks in examples/tasks.ts\non this machine, shows each task outcome, and exits with a summary.",
  );
}

interface Row {
  runs: number;
  outcomes: Map<string, number>;
}

function findExamples(flag: string | undefined): string | null {
  const candidates = flag
    ? [resolve(flag)]
    : [join(process.cwd(), "examples"), join(dirname(dirname(import.meta.dir)), "examples")];
  for (const dir of candidates) if (existsSync(join(dir, "tasks.ts"))) return join(dir, "tasks.ts");
  return null;
}

export async function demoCommand(argv: string[]): Promise<number> {
  let options;
  try {
    const loaded = loadCommand(DEMO_COMMAND, argv, {});
    if (loaded.help) {
      process.stdout.write(demoHelp());
      return 0;
    }
    options = loaded.config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`taskplatform demo: ${err.message}\n`);
    return 2;
  }
  const tasksFile = findExamples(options.examples);
  if (!tasksFile) {
    process.stderr.write(
      "taskplatform demo: examples/tasks.ts not found (run from the project directory or pass --examples DIR)\n",
    );
    return 2;
  }
  const limitMs = options.seconds * 1000;
  const t0 = Date.now();
  const say = (line: string) =>
    process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s] ${line}\n`);
  const quiet = createLogger({ format: "text", level: "error" });
  const dir = mkdtempSync(join(tmpdir(), "taskplatform-demo-"));
  const cleanups: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  let interrupted = false;
  let wake = () => {};
  const onSignal = () => {
    interrupted = true;
    say("interrupted: shutting down");
    wake();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    // 1. The broker, embedded, on a free port with a temporary database.
    const config = loadBrokerConfig({
      TASKBROKER_GRPC_PORT: "0",
      TASKBROKER_GRPC_HOST: "127.0.0.1",
      TASKBROKER_STORE__SQLITE__PATH: join(dir, "inflight.sqlite"),
      TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "200",
      TASKBROKER_STORE__PROCESSING_DEADLINE_GRACE_SEC: "0",
    });
    const broker = await startBroker(config, quiet);
    cleanups.push(() => broker.stop());
    const address = `127.0.0.1:${broker.port}`;
    say(`broker listening on ${address} (database ${join(dir, "inflight.sqlite")})`);

    // 2. A webhook receiver that is down for its first two requests.
    let hits = 0;
    const endpoint = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(req) {
        // Only the example's deliveries count: a stray connection to this port (a port scan, a
        // client of an earlier process that had the same port) must not use up the two failures.
        const path = new URL(req.url).pathname;
        if (req.method !== "POST" || path !== "/hooks/issue" || !req.headers.has("x-attempt")) {
          say(`webhook endpoint: ignored ${req.method} ${path} (not a delivery)`);
          return new Response("not found", { status: 404 });
        }
        hits++;
        const status = hits <= 2 ? 503 : 200;
        say(`webhook endpoint: request ${hits} (attempt ${req.headers.get("x-attempt")}) -> ${status}`);
        return new Response(status === 200 ? "ok" : "unavailable", { status });
      },
    });
    cleanups.push(() => void endpoint.stop(true));

    // 3. The worker, with the example tasks loaded in its threads.
    const outcomes = new Map<string, Row>();
    let changed = () => {};
    const onResult = (a: WireActivation, outcome: Outcome, _status: unknown, error?: string) => {
      const key = a.taskname;
      const row = outcomes.get(key) ?? { runs: 0, outcomes: new Map() };
      row.runs++;
      row.outcomes.set(outcome, (row.outcomes.get(outcome) ?? 0) + 1);
      outcomes.set(key, row);
      const why = error ? `  (${error.split("\n")[0]})` : "";
      say(`${`${a.namespace}:${a.taskname}`.padEnd(28)} attempt ${a.attempts}  ${outcome}${why}`);
      changed();
    };
    const parsed = resolveWorkerConfig(
      // One thread per slot: stopping the slow report at its deadline terminates
      // its thread, and no other example should share it (and be re-run).
      [
        "--tasks",
        tasksFile,
        "--rpc-host-list",
        address,
        "--concurrency",
        "4",
        "--threads",
        "4",
        "--at-most-once-path",
        join(dir, "amo.sqlite"),
        "--max-backoff-ms",
        "250",
      ],
      {},
    );
    if (parsed.help) return 0;
    const worker = await startWorker(parsed.config, {
      log: quiet,
      onResult,
      env: { ...process.env, TASKWORKER_PRODUCE_ADDRESS: address },
    });
    cleanups.push(() => worker.stop(2000));
    say(`worker started: concurrency 4 (one thread each), tasks from ${tasksFile}`);

    // 4. Dispatch the examples from here (the same module, loaded in this thread too).
    await loadTaskModules([tasksFile]);
    const producer = createRpcProducer({ address });
    cleanups.push(() => producer.close());
    const task = (name: string): Task => {
      const t = findTask("demo", "demo", name);
      if (!t) throw new Error(`examples/tasks.ts does not define demo:${name}`);
      t.app.setProducer(producer);
      t.app.setRouter(createRouter());
      return t;
    };
    for (const who of ["Ada", "Grace", "Linus"]) await task("demo.greet").delay(who);
    await task("demo.deliver_webhook").delay(`http://127.0.0.1:${endpoint.port}/hooks/issue`, {
      event: "issue.created",
      id: 42,
    });
    await task("demo.slow_report").delay();
    await task("demo.start_chain").delay("Barbara");
    say("dispatched: 3 greetings, 1 webhook delivery, 1 slow report, 1 chain");

    // 5. The scheduler fires the heartbeat every 2 seconds.
    const scheduler = startScheduler({
      schedules: normalizeSchedules({
        heartbeat: { task: "demo:demo.heartbeat", intervalSec: 2, application: "demo" },
      }),
      runs: openRunStore({ path: join(dir, "schedules.sqlite") }),
      log: quiet,
      fire: async (schedule, slotMs) => {
        const built = buildScheduledActivation(schedule, slotMs, Date.now(), findTaskTemplate);
        await producer.send("taskworker", built.activation, built.bytes);
        say(`scheduler fired ${schedule.key}`);
      },
    });
    cleanups.push(() => scheduler.stop());

    // 6. Wait until every example has played out (or the time limit / Ctrl-C).
    const count = (task: string, outcome: string) => outcomes.get(task)?.outcomes.get(outcome) ?? 0;
    const finished = () =>
      count("demo.greet", "complete") >= 4 &&
      count("demo.deliver_webhook", "complete") >= 1 &&
      count("demo.slow_report", "deadline") >= 1 &&
      count("demo.start_chain", "complete") >= 1 &&
      count("demo.heartbeat", "complete") >= 2;
    await new Promise<void>((resolveWait) => {
      const timer = setTimeout(resolveWait, limitMs);
      const check = () => {
        if (finished() || interrupted) {
          clearTimeout(timer);
          resolveWait();
        }
      };
      changed = check;
      wake = check;
      check();
    });
    if (!interrupted && !finished()) say(`time limit of ${limitMs / 1000}s reached`);

    // 7. Summary.
    const columns = ["complete", "retry", "failure", "deadline", "unknown_task", "expired"];
    process.stdout.write(`\n${"task".padEnd(24)}${"runs".padStart(6)}${columns.map((c) => c.padStart(14)).join("")}\n`);
    for (const [name, row] of [...outcomes].sort()) {
      process.stdout.write(
        `${name.padEnd(24)}${String(row.runs).padStart(6)}${columns.map((c) => String(row.outcomes.get(c) ?? 0).padStart(14)).join("")}\n`,
      );
    }
    process.stdout.write("\n");
    return finished() || interrupted ? 0 : 1;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    say("demo stopped");
  }
}
