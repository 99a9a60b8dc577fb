// Two scheduler replicas as separate processes sharing one SQLite run store,
// racing for the same slots (a clock running 50x real time, so a 1 s interval
// comes due every 20 ms for both): no slot is ever fired twice.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "scheduler-replicas-"));
const procs: Bun.Subprocess[] = [];
afterAll(() => {
  for (const p of procs) p.kill(9);
  rmSync(dir, { recursive: true, force: true });
});

const SPEED = 50;
const RUN_FOR_MS = 3_000;
const schedules = {
  fast: { task: "ns:fast", intervalSec: 1 },
  odd: { task: "ns:odd", intervalSec: 3 },
  cron: { task: "ns:cron", crontab: "* * * * *" },
};

test("two replica processes never fire the same slot twice", async () => {
  const db = join(dir, "runs.sqlite");
  const realOrigin = Date.now() + 300; // both start before the clock's origin passes
  const spawnReplica = (id: string) => {
    const proc = Bun.spawn([process.execPath, "test/support/scheduler-replica.ts"], {
      cwd: join(import.meta.dir, ".."),
      env: {
        ...process.env,
        DB_PATH: db,
        ORIGIN_MS: String(Date.parse("2024-03-01T12:00:00Z")),
        REAL_ORIGIN_MS: String(realOrigin),
        SPEED: String(SPEED),
        SCHEDULES: JSON.stringify(schedules),
        REPLICA_ID: id,
        RUN_FOR_MS: String(RUN_FOR_MS),
      },
      stdout: "pipe",
      stderr: "inherit",
    });
    procs.push(proc);
    return proc;
  };
  const replicas = [spawnReplica("a"), spawnReplica("b")];
  const outputs = await Promise.all(replicas.map((p) => new Response(p.stdout).text()));
  expect(await Promise.all(replicas.map((p) => p.exited))).toEqual([0, 0]);

  const fired = outputs.flatMap((out, i) =>
    out
      .split("\n")
      .filter((l) => l.startsWith("FIRED "))
      .map((l) => {
        const [, schedule, slot] = l.split(" ");
        return { replica: i, key: `${schedule}@${slot}` };
      }),
  );
  expect(outputs.every((o) => o.includes("DONE"))).toBe(true);
  const keys = fired.map((f) => f.key);
  const twice = keys.filter((k, i) => keys.indexOf(k) !== i);
  expect(twice).toEqual([]);
  // ~3 s at 50x is ~150 slots of `fast`; on a loaded machine some come late and are skipped as missed.
  const fast = keys.filter((k) => k.startsWith("fast@")).length;
  expect(fast).toBeGreaterThan(30);
  // Both replicas won some of the races, so they really did compete for the same slots.
  expect(new Set(fired.map((f) => f.replica)).size).toBe(2);
}, 30_000);
