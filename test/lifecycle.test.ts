// Broker lifecycle over real sockets, the broker a separate process: SIGTERM
// drains in-flight RPCs and exits 0 with the database closed cleanly; a
// restart keeps every row; kill -9 in the middle of a stream of Produce calls
// loses no activation whose Produce was answered.
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { activation, brokerClients, drainIds } from "./support/activations.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";

// Backpressure limits out of the way: these tests are about durability, not admission.
const ENV = {
  TASKBROKER_STORE__MAX_PENDING_COUNT: "1000000",
  TASKBROKER_STORE__MAX_PROCESSING_COUNT: "1000000",
  TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "200ms",
};

const brokers: BrokerProcess[] = [];
async function start(opts: { dbPath?: string } = {}, env: Record<string, string> = {}) {
  const b = await spawnBroker({ ...ENV, ...env }, opts);
  brokers.push(b);
  return b;
}
afterAll(async () => {
  for (const b of brokers) await b.stop("SIGKILL");
});

/** The database after the broker exited: intact, and no WAL left to replay (a clean close). */
function expectCleanlyClosed(dbPath: string) {
  const wal = `${dbPath}-wal`;
  expect(!existsSync(wal) || statSync(wal).size === 0).toBe(true);
  const db = new Database(dbPath, { readonly: true });
  try {
    expect(db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()?.integrity_check).toBe("ok");
  } finally {
    db.close();
  }
}

describe("graceful stop", () => {
  test("SIGTERM while Produce and GetTask calls are in flight: they complete, exit 0, database closed cleanly", async () => {
    const b = await start();
    const { ingest, consumer } = brokerClients(b.port);
    // Rows for the concurrent claims to find.
    const seed = Array.from({ length: 200 }, () => activation());
    await ingest.produce({ activations: seed });

    let signalled = false;
    let okAfterSignal = 0;
    const producedOk: string[] = [];
    const claimed: string[] = [];
    const failures: string[] = [];
    const produceCalls = Array.from({ length: 12 }, async () => {
      const batch = Array.from({ length: 400 }, () => activation());
      try {
        await ingest.produce({ activations: batch });
        producedOk.push(...batch.map((a) => a.id));
        if (signalled) okAfterSignal++;
      } catch (err) {
        const code = ConnectError.from(err).code;
        // Calls that reached a closing server are refused, never half-done.
        if (code !== Code.Unavailable) failures.push(`produce: ${Code[code]} ${String(err)}`);
      }
    });
    const claimCalls = Array.from({ length: 50 }, async () => {
      try {
        const res = await consumer.getTask({});
        if (res.task) claimed.push(res.task.id);
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (code !== Code.Unavailable && code !== Code.NotFound) failures.push(`getTask: ${Code[code]}`);
      }
    });
    // Signal as soon as the first large Produce is answered: the others are still being served.
    await Promise.race(produceCalls);
    signalled = true;
    b.proc.kill("SIGTERM");
    await Promise.all([...produceCalls, ...claimCalls]);

    expect(await b.proc.exited).toBe(0);
    expect(failures).toEqual([]);
    expect(okAfterSignal).toBeGreaterThan(0);
    expect(b.logs()).toContain("broker_stopped");
    expectCleanlyClosed(b.dbPath);

    // Everything answered is there after a restart: produced rows either claimed before the stop or still pending.
    const again = await start({ dbPath: b.dbPath });
    const pending = await drainIds(again.port);
    const stored = new Set([...pending, ...claimed]);
    const missing = [...seed.map((a) => a.id), ...producedOk].filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
    // A claimed row is not handed out again after the restart (it is Processing, deadline far away).
    expect(claimed.filter((id) => pending.has(id))).toEqual([]);
    expect(await again.stop("SIGINT")).toBe(0);
  }, 60_000);

  test("a restart keeps every row", async () => {
    const b = await start();
    const { ingest } = brokerClients(b.port);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const batch = Array.from({ length: 60 }, () => activation());
      const res = await ingest.produce({ activations: batch });
      expect(res.accepted).toBe(60);
      ids.push(...batch.map((a) => a.id));
    }
    expect(await b.stop()).toBe(0);
    expectCleanlyClosed(b.dbPath);

    const again = await start({ dbPath: b.dbPath });
    const drained = await drainIds(again.port);
    expect([...drained].sort()).toEqual([...ids].sort());
    expect(await again.stop()).toBe(0);
  }, 60_000);
});

describe("second signal", () => {
  test("a second SIGTERM while draining exits at once (128+15) instead of waiting out the drain", async () => {
    // A GetTask whose body is never finished stays in flight, so the drain would wait the full 60 s.
    const b = await start({}, { TASKBROKER_SHUTDOWN_DRAIN_MS: "60s" });
    const session = http2.connect(`http://127.0.0.1:${b.port}`);
    session.on("error", () => {});
    const held = session.request({
      ":method": "POST",
      ":path": "/sentry_protos.taskbroker.v1.ConsumerService/GetTask",
      "content-type": "application/grpc",
      te: "trailers",
    });
    held.on("error", () => {});
    held.write(Buffer.from([0, 0, 0])); // 3 of the 5 frame-header bytes
    // A PING is answered after the frames before it were processed: the broker has the stream.
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    b.proc.kill("SIGTERM");
    await b.waitForLog(/broker_stopping/);
    b.proc.kill("SIGTERM");
    expect(await b.proc.exited).toBe(143);
    expect(b.logs()).toContain("forced_exit signal=SIGTERM");
    session.destroy();
  }, 30_000);
});

describe("crash", () => {
  test("kill -9 during a stream of Produce calls: every answered activation is present after restart", async () => {
    const b = await start();
    const { ingest } = brokerClients(b.port);
    const answered = new Set<string>();
    const sent = new Set<string>();
    let crashed = false;
    let reached = () => {};
    const enough = new Promise<void>((r) => (reached = r));
    const producer = async () => {
      while (!crashed) {
        const batch = Array.from({ length: 50 }, () => activation());
        for (const a of batch) sent.add(a.id);
        try {
          await ingest.produce({ activations: batch });
          // Only a batch whose answer arrived counts; an in-flight one at the crash may or may not be stored.
          for (const a of batch) answered.add(a.id);
          if (answered.size >= 3000) reached();
        } catch {
          return;
        }
      }
    };
    const producers = Array.from({ length: 4 }, producer);
    // Crash once a good number of batches were answered, with the producers still sending.
    await Promise.race([enough, ...producers]);
    expect(answered.size).toBeGreaterThanOrEqual(3000);
    b.kill9();
    crashed = true;
    await Promise.all(producers);
    await b.proc.exited;

    const again = await start({ dbPath: b.dbPath });
    const drained = await drainIds(again.port);
    const lost = [...answered].filter((id) => !drained.has(id));
    expect(lost).toEqual([]);
    // Nothing appears that was never sent.
    expect([...drained].filter((id) => !sent.has(id))).toEqual([]);
    expect(await again.stop()).toBe(0);
  }, 90_000);
});
