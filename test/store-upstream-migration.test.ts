// The reference broker's SQLite file (table inflight_taskactivations, built
// with its migrations' layout in a real file) taken over by a broker process
// started on it: every row is moved into our store at start-up and then served
// or upkept as its state says (pending served, an expired claim and a past
// deadline back to pending, a future deadline still running, a due delay
// released, a retry re-queued, a dead-letter failure dead-lettered, discards
// and completes removed, old rows' missing columns read from the activation);
// a restart moves nothing twice; a status it cannot map stops start-up with one
// line and moves nothing; kill -9 mid-migration loses and duplicates nothing.
import { afterAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { brokerClients } from "./support/activations.ts";
import { runCli } from "./support/cli-process.ts";
import { createUpstreamStore, nowSec, type UpstreamRow } from "./upstream-store.fixture.ts";

const live: BrokerProcess[] = [];
afterAll(async () => {
  await Promise.all(live.map((b) => b.stop("SIGKILL")));
});

async function start(dbPath: string, env: Record<string, string> = {}) {
  const b = await spawnBroker(
    {
      TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100ms",
      TASKBROKER_UPKEEP_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: "0",
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_ADMIN_HOST: "127.0.0.1",
      ...env,
    },
    { dbPath },
  );
  live.push(b);
  return b;
}

function count(dbPath: string, sql: string): number {
  const db = new Database(dbPath, { readonly: true });
  try {
    return (db.query(sql).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

const id = (tag: string) => `${tag.padEnd(8, "0")}${"a".repeat(24)}`;

test("every upstream state is moved, then served or upkept as that state says; a restart moves nothing twice", async () => {
  const dbPath = join(tempDir("upstream-"), "taskbroker-activations.sqlite");
  const t = nowSec();
  const rows: UpstreamRow[] = [
    { id: id("p1"), status: "Pending" },
    { id: id("p2"), status: "Pending", processingAttempts: 1 },
    { id: id("c1"), status: "Claimed", claimExpiresAt: t - 10 },
    { id: id("x1"), status: "Processing", processingDeadline: t - 10 },
    { id: id("x2"), status: "Processing", processingDeadline: t + 600 },
    { id: id("d1"), status: "Delay", delayUntil: t - 5 },
    { id: id("d2"), status: "Delay", delayUntil: t + 600 },
    { id: id("r1"), status: "Retry", taskname: "tests.retried" },
    { id: id("f1"), status: "Failure", onAttemptsExceeded: 2 },
    { id: id("f2"), status: "Failure", onAttemptsExceeded: 1 },
    { id: id("k1"), status: "Complete" },
    { id: id("o1"), status: "Pending", oldStyle: true },
  ];
  createUpstreamStore(dbPath, rows);

  const b = await start(dbPath);
  const admin = `http://127.0.0.1:${b.adminPort}`;
  expect(b.logs()).toMatch(/upstream_store_migrated .*rows=12/);
  const view = async (tag: string) => {
    const res = await fetch(`${admin}/api/activations/${id(tag)}`);
    return res.status === 200
      ? ((await res.json()) as {
          state: string;
          processingAttempts: number;
          namespace: string;
          taskname: string;
          application: string;
        })
      : null;
  };

  // Upkeep: finished rows go, the due ones are released, the dead letter is kept locally.
  const until = async (what: string, cond: () => Promise<boolean>) => {
    const deadline = Date.now() + 10_000;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`not within 10 s: ${what}\n${b.logs()}`);
      await Bun.sleep(50);
    }
  };
  await until("upkeep settled", async () =>
    (await Promise.all(["r1", "f1", "f2", "k1"].map(view))).every((v) => v === null),
  );
  expect((await view("x1"))!).toMatchObject({ state: "pending", processingAttempts: 1 });
  expect((await view("c1"))!.state).toBe("pending");
  expect((await view("d1"))!.state).toBe("pending");
  expect((await view("x2"))!.state).toBe("processing");
  expect((await view("d2"))!.state).toBe("delay");
  expect((await view("o1"))!).toMatchObject({
    namespace: "upstream.ns",
    taskname: "tests.upstream",
    application: "tests",
  });
  const deadLetters = (await (await fetch(`${admin}/api/deadletters?limit=10`)).json()) as {
    items: Array<{ id: string }>;
  };
  expect(deadLetters.items.map((d) => d.id)).toEqual([id("f1")]);

  // Served: every pending row once (the retry as a new activation of its task).
  const { consumer } = brokerClients(b.port);
  const served: Array<{ id: string; taskname: string }> = [];
  for (;;) {
    try {
      const res = await consumer.getTask({});
      if (!res.task) break;
      served.push({ id: res.task.id, taskname: res.task.taskname });
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) break;
      throw err;
    }
  }
  const known = ["p1", "p2", "c1", "x1", "d1", "o1"].map(id);
  expect(
    served
      .filter((s) => known.includes(s.id))
      .map((s) => s.id)
      .sort(),
  ).toEqual(known.sort());
  const others = served.filter((s) => !known.includes(s.id));
  expect(others.map((s) => s.taskname)).toEqual(["tests.retried"]);
  // The row that was running under the old broker still takes its worker's result.
  await consumer.setTaskStatus({ id: id("x2"), status: 5 });
  await until("x2 completed and removed", async () => (await view("x2")) === null);
  expect(await b.stop()).toBe(0);

  // The old table stays, empty; a restart moves nothing and changes nothing.
  expect(count(dbPath, "SELECT count(*) AS n FROM inflight_taskactivations")).toBe(0);
  const before = count(dbPath, "SELECT count(*) AS n FROM inflight");
  const again = await start(dbPath);
  expect(again.logs()).not.toContain("upstream_store_migrated");
  expect(await again.stop()).toBe(0);
  expect(count(dbPath, "SELECT count(*) AS n FROM inflight")).toBe(before);
}, 60_000);

test("a status it cannot map stops start-up with one line naming it, and nothing is moved", async () => {
  const dbPath = join(tempDir("upstream-"), "taskbroker-activations.sqlite");
  createUpstreamStore(dbPath, [
    { id: id("ok1"), status: "Pending" },
    { id: id("bad1"), status: "Unspecified" },
  ]);
  // Self-hosted's own variable for the file.
  const res = await runCli(["broker"], {
    TASKBROKER_DB_PATH: dbPath,
    TASKBROKER_GRPC_PORT: "0",
    TASKBROKER_LOG_FORMAT: "text",
  });
  expect(res.code).toBe(1);
  const line = (res.stdout + res.stderr).split("\n").find((l) => l.includes("broker_start_failed"))!;
  expect(line).toContain("1 row with status 'Unspecified'");
  expect(line).toContain("nothing was moved");
  expect(count(dbPath, "SELECT count(*) AS n FROM inflight_taskactivations")).toBe(2);
}, 30_000);

test("kill -9 in the middle of a migration loses nothing and duplicates nothing", async () => {
  const dbPath = join(tempDir("upstream-"), "taskbroker-activations.sqlite");
  const total = 3000;
  createUpstreamStore(
    dbPath,
    Array.from({ length: total }, (_, i) => ({
      id: `${i.toString(16).padStart(8, "0")}${"b".repeat(24)}`,
      status: "Pending",
    })),
  );
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "upstream-store.fixture.ts"), dbPath, "100", "30"], {
    stdout: "pipe",
    stderr: "inherit",
  });
  let batches = 0;
  let text = "";
  for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
    text += new TextDecoder().decode(chunk);
    batches = text.split("\n").filter((l) => l.startsWith("batch ")).length;
    if (batches >= 3) break;
  }
  proc.kill(9);
  await proc.exited;
  expect(text).not.toContain("done");
  // Part moved, part not, each row in exactly one table.
  const moved = count(dbPath, "SELECT count(*) AS n FROM inflight");
  const left = count(dbPath, "SELECT count(*) AS n FROM inflight_taskactivations");
  expect(moved).toBeGreaterThanOrEqual(300);
  expect(left).toBeGreaterThan(0);
  expect(moved + left).toBe(total);
  expect(
    count(dbPath, "SELECT count(*) AS n FROM inflight WHERE id IN (SELECT id FROM inflight_taskactivations)"),
  ).toBe(0);

  // The broker carries on from there at start-up.
  const b = await start(dbPath);
  expect(b.logs()).toMatch(new RegExp(`upstream_store_migrated .*rows=${left}\\b`));
  expect(await b.stop()).toBe(0);
  expect(count(dbPath, "SELECT count(DISTINCT id) AS n FROM inflight")).toBe(total);
  expect(count(dbPath, "SELECT count(*) AS n FROM inflight")).toBe(total);
  expect(count(dbPath, "SELECT count(*) AS n FROM inflight_taskactivations")).toBe(0);
}, 30_000);
