// Upkeep against a real SQLite file: each step of docs/spec/broker.md "Upkeep", the
// start-up skip window, publish-then-complete (a failing publish keeps the
// row), and the loop's own timer and non-overlap. Passes are driven with
// runOnce() after stopping the timer, so each test sees exactly its passes.
import { afterEach, describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { silentLogger } from "../src/log.ts";
import { localPublisher, type UpkeepPublisher } from "../src/upkeep/publisher.ts";
import { startUpkeep, type Upkeep } from "../src/upkeep/loop.ts";
import { row, tempStore, timestampFromMs, type TempStore } from "./store-fixtures.ts";

let t: TempStore;
let upkeep: Upkeep | undefined;
afterEach(async () => {
  await upkeep?.stop();
  upkeep = undefined;
  await t?.cleanup();
});

function config(over: Record<string, unknown> = {}) {
  return brokerConfigSchema.parse({
    upkeep_task_interval_ms: 60_000,
    upkeep_deadline_reset_skip_after_startup_sec: 0,
    ...over,
    store: { max_processing_attempts: 2, ...(over.store as object) },
  });
}

/** Upkeep with its timer stopped: the test drives every pass. */
async function manualUpkeep(over: Record<string, unknown> = {}, publisher?: UpkeepPublisher): Promise<Upkeep> {
  upkeep = startUpkeep({
    store: t.store,
    config: config(over),
    publisher: publisher ?? localPublisher(t.store),
    log: silentLogger,
    startedAtMs: Date.now(),
  });
  await upkeep.stop();
  return upkeep;
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function claimAndSet(id: string, status: "retry" | "failure", extra: { delayOnRetry?: bigint } = {}) {
  const got = await t.store.claim({ application: "app" });
  expect(got!.id).toBe(id);
  await t.store.setStatus({ id, status, ...extra });
}

describe("step 1: retries", () => {
  test("a Retry row is re-inserted as a new activation with attempts + 1; the old row is gone", async () => {
    t = tempStore();
    const r = row({ retryState: { attempts: 0, maxAttempts: 3 }, headers: { trace: "x" } });
    t.store.insert([r]);
    await claimAndSet(r.id, "retry");
    const u = await manualUpkeep();
    const report = await u.runOnce();
    expect(report.retried).toBe(1);
    expect(report.deleted).toBe(1);
    expect(t.store.getActivation(r.id)).toBeNull();
    const next = await t.store.claim({ application: "app" });
    expect(next!.id).not.toBe(r.id);
    expect(next!.id).toMatch(/^[0-9a-f]{32}$/);
    const a = fromBinary(TaskActivationSchema, next!.activation);
    expect(a.retryState!.attempts).toBe(1);
    expect(a.headers).toEqual({ trace: "x" });
    expect(Math.abs(Number(a.receivedAt!.seconds) * 1000 - Date.now())).toBeLessThan(5000);
  });

  test("delay_on_retry (also when set by SetTaskStatus) makes the retry wait in Delay", async () => {
    t = tempStore();
    const r = row({ retryState: { attempts: 1, maxAttempts: 5 } });
    t.store.insert([r]);
    await claimAndSet(r.id, "retry", { delayOnRetry: 30n });
    const u = await manualUpkeep();
    await u.runOnce();
    expect(t.store.counts()).toMatchObject({ delay: 1, pending: 0, retry: 0 });
    expect(await t.store.claim({})).toBeNull();
  });

  test("a failing retry publish keeps the row until a later pass succeeds", async () => {
    t = tempStore();
    const r = row();
    t.store.insert([r]);
    await claimAndSet(r.id, "retry");
    const local = localPublisher(t.store);
    let fail = true;
    const flaky: UpkeepPublisher = {
      publishRetry: (a) => (fail ? Promise.reject(new Error("broker down")) : local.publishRetry(a)),
      publishDeadLetter: (o, row) => local.publishDeadLetter(o, row),
    };
    const u = await manualUpkeep({}, flaky);
    const first = await u.runOnce();
    expect(first.publishFailed).toBe(1);
    expect(t.store.getActivation(r.id)!.state).toBe("retry");
    fail = false;
    const second = await u.runOnce();
    expect(second.retried).toBe(1);
    expect(t.store.getActivation(r.id)).toBeNull();
    expect(t.store.counts().pending).toBe(1);
  });

  test("publishing the same retry twice stores it once (derived retry id)", async () => {
    t = tempStore();
    const r = row();
    t.store.insert([r]);
    await claimAndSet(r.id, "retry");
    const [stored] = t.store.retryRows(10);
    const { buildRetryActivation } = await import("../src/activation/rewrite.ts");
    const pub = localPublisher(t.store);
    await pub.publishRetry(buildRetryActivation(stored!.activation, Date.now()).bytes);
    await pub.publishRetry(buildRetryActivation(stored!.activation, Date.now() + 5).bytes);
    expect(t.store.counts().pending).toBe(1);
  });
});

describe("steps 2-4: deadlines, claim leases, attempts", () => {
  test("past-deadline rows go back to Pending with attempts + 1; at_most_once ones fail", async () => {
    t = tempStore({ processingDeadlineGraceSec: 0 });
    const normal = row({ processingDeadlineDuration: 0n });
    const once = row({ processingDeadlineDuration: 0n, retryState: { atMostOnce: true, onAttemptsExceeded: 2 } });
    t.store.insert([normal, once]);
    await Promise.all([t.store.claim({}), t.store.claim({})]);
    const deadline = Math.max(...[normal, once].map((r) => t.store.getActivation(r.id)!.processingDeadlineMs!));
    await until(() => Date.now() > deadline);
    const u = await manualUpkeep();
    const report = await u.runOnce();
    expect(report).toMatchObject({ deadlineReset: 1, deadlineFailed: 1, deadlettered: 1 });
    const back = t.store.getActivation(normal.id)!;
    expect(back.state).toBe("pending");
    expect(back.processingAttempts).toBe(1);
    expect(back.processingDeadlineMs).toBeNull();
    // The at_most_once row failed and, being DEADLETTER, went to the local table.
    expect(t.store.getDeadLetter(once.id)).not.toBeNull();
  });

  test("deadline resets and claim-lease expiry are skipped during the start-up window", async () => {
    t = tempStore({ processingDeadlineGraceSec: 0 });
    const a = row({ processingDeadlineDuration: 0n });
    const b = row();
    t.store.insert([a, b]);
    await t.store.claim({});
    t.store.claimForPush({}, 0);
    const deadline = t.store.getActivation(a.id)!.processingDeadlineMs!;
    await until(() => Date.now() > deadline + 1);
    const u = await manualUpkeep({ upkeep_deadline_reset_skip_after_startup_sec: 60 });
    const report = await u.runOnce();
    expect(report.startupSkip).toBe(true);
    expect(t.store.counts()).toMatchObject({ processing: 1, claimed: 1, pending: 0 });
  });

  test("an expired push claim lease returns the row to Pending", async () => {
    t = tempStore();
    const a = row();
    t.store.insert([a]);
    const leaseEnd = Date.now();
    t.store.claimForPush({}, 0);
    await until(() => Date.now() > leaseEnd + 1);
    const u = await manualUpkeep();
    expect((await u.runOnce()).claimExpired).toBe(1);
    expect(t.store.getActivation(a.id)!.state).toBe("pending");
  });

  test("Pending rows that reached max processing attempts become Failure (then discarded)", async () => {
    t = tempStore({ processingDeadlineGraceSec: 0 });
    const a = row({ processingDeadlineDuration: 0n });
    t.store.insert([a]);
    const u = await manualUpkeep({ store: { max_processing_attempts: 2 } });
    for (let attempt = 1; attempt <= 2; attempt++) {
      await t.store.claim({});
      const deadline = t.store.getActivation(a.id)!.processingDeadlineMs!;
      await until(() => Date.now() > deadline);
      const report = await u.runOnce();
      expect(report.deadlineReset).toBe(1);
      if (attempt === 1) expect(t.store.getActivation(a.id)!.state).toBe("pending");
      else expect(report).toMatchObject({ attemptsExceeded: 1, discarded: 1, deleted: 1 });
    }
    expect(t.store.getActivation(a.id)).toBeNull();
  });
});

describe("steps 5-8: expiry, delays, failures, cleanup", () => {
  test("Pending rows past expires_at are removed and counted", async () => {
    t = tempStore();
    const gone = row({ receivedAt: timestampFromMs(Date.now() - 10_000), expires: 5n });
    const kept = row({ expires: 600n });
    t.store.insert([gone, kept]);
    const u = await manualUpkeep();
    expect((await u.runOnce()).expired).toBe(1);
    expect(t.store.getActivation(gone.id)).toBeNull();
    expect(t.store.getActivation(kept.id)!.state).toBe("pending");
  });

  test("Delay rows become Pending once delay_until passes", async () => {
    t = tempStore();
    const receivedAt = Date.now() - 950;
    const r = row({ receivedAt: timestampFromMs(receivedAt), delay: 1n });
    t.store.insert([r]);
    expect(t.store.getActivation(r.id)!.state).toBe("delay");
    const u = await manualUpkeep();
    await until(() => Date.now() >= receivedAt + 1000);
    expect((await u.runOnce()).undelayed).toBe(1);
    expect((await t.store.claim({}))!.id).toBe(r.id);
  });

  test("Failure: DISCARD and unspecified are dropped; DEADLETTER keeps the original bytes locally", async () => {
    t = tempStore();
    const discard = row({ retryState: { onAttemptsExceeded: 1 } });
    const unspecified = row();
    const dead = row({ retryState: { onAttemptsExceeded: 2, attempts: 3, maxAttempts: 3 } });
    t.store.insert([discard, unspecified, dead]);
    await Promise.all([1, 2, 3].map(() => t.store.claim({})));
    await t.store.setStatuses([discard, unspecified, dead].map((r) => ({ id: r.id, status: "failure" as const })));
    const u = await manualUpkeep();
    const report = await u.runOnce();
    expect(report).toMatchObject({ discarded: 2, deadlettered: 1, deleted: 3 });
    const dl = t.store.getDeadLetter(dead.id)!;
    expect(Buffer.from(dl.activation).equals(Buffer.from(dead.activation))).toBe(true);
    expect(t.store.recount()).toEqual({
      pending: 0,
      delay: 0,
      processing: 0,
      claimed: 0,
      retry: 0,
      failure: 0,
      complete: 0,
    });
  });

  test("a failing dead-letter publish keeps the Failure row for the next pass", async () => {
    t = tempStore();
    const dead = row({ retryState: { onAttemptsExceeded: 2 } });
    t.store.insert([dead]);
    await claimAndSet(dead.id, "failure");
    const local = localPublisher(t.store);
    let fail = true;
    const flaky: UpkeepPublisher = {
      publishRetry: (a) => local.publishRetry(a),
      publishDeadLetter: (o, r) => (fail ? Promise.reject(new Error("dlq down")) : local.publishDeadLetter(o, r)),
    };
    const u = await manualUpkeep({}, flaky);
    expect((await u.runOnce()).publishFailed).toBe(1);
    expect(t.store.getActivation(dead.id)!.state).toBe("failure");
    fail = false;
    expect((await u.runOnce()).deadlettered).toBe(1);
    expect(t.store.getActivation(dead.id)).toBeNull();
    expect(t.store.getDeadLetter(dead.id)).not.toBeNull();
  });
});

describe("the loop", () => {
  test("deletes more Complete rows than one chunk in a single pass", async () => {
    t = tempStore();
    const rows = Array.from({ length: 4500 }, () => row());
    t.store.insert(rows);
    await Promise.all(rows.map(() => t.store.claim({})));
    await t.store.setStatuses(rows.map((r) => ({ id: r.id, status: "complete" as const })));
    expect(t.store.counts().complete).toBe(4500);
    const u = await manualUpkeep();
    expect((await u.runOnce()).deleted).toBe(4500);
    expect(t.store.recount().complete).toBe(0);
  });

  test("runs by itself every interval and reports its last completion", async () => {
    t = tempStore();
    const r = row({ receivedAt: timestampFromMs(Date.now() - 10_000), expires: 1n });
    t.store.insert([r]);
    upkeep = startUpkeep({
      store: t.store,
      config: config({ upkeep_task_interval_ms: 10 }),
      publisher: localPublisher(t.store),
      log: silentLogger,
      startedAtMs: Date.now(),
    });
    const first = Date.now();
    await until(() => upkeep!.lastCompletedAtMs() >= first && t.store.getActivation(r.id) === null);
    const seen = upkeep.lastCompletedAtMs();
    await until(() => upkeep!.lastCompletedAtMs() > seen);
  });

  test("passes never overlap", async () => {
    t = tempStore();
    const rows = Array.from({ length: 3 }, () => row());
    t.store.insert(rows);
    await Promise.all(rows.map(() => t.store.claim({})));
    await t.store.setStatuses(rows.map((r) => ({ id: r.id, status: "retry" as const })));
    let active = 0;
    let maxActive = 0;
    const local = localPublisher(t.store);
    const slow: UpkeepPublisher = {
      async publishRetry(a) {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 20));
        active--;
        await local.publishRetry(a);
      },
      publishDeadLetter: (o, r) => local.publishDeadLetter(o, r),
    };
    const u = await manualUpkeep({}, slow);
    // Rows of one pass publish concurrently (3), but a second pass must not join them.
    const reports = await Promise.all([u.runOnce(), u.runOnce()]);
    expect(maxActive).toBe(3);
    expect(reports[0]!.retried + reports[1]!.retried).toBe(3);
  });
});
