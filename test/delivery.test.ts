// Streaming delivery (taskplatform.v1.DeliveryService/Deliver) against real
// broker processes over real HTTP/2 sockets: credit flow control, batching,
// wake-up on new activations, filters, fairness between workers, what a
// broken stream gives back (unsent rows at once, sent ones after their
// deadline, at-most-once ones never), signing of the opening message, the
// status codes that end a stream, and a broker killed mid-stream losing
// nothing it acknowledged.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { RetryStateSchema, TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { adminClient, createBrokerClient, type BrokerClient } from "../src/connect/client.ts";
import { openDeliveryStream } from "../src/connect/delivery-client.ts";
import { DELIVER_PATH } from "../src/connect/delivery.ts";
import { encodeWorkerMessage } from "../src/protocol/delivery-messages.ts";
import { activation } from "./support/activations.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { recordStream, type RecordedStream } from "./support/delivery-stream.ts";
import { frame, rawCall } from "./support/rpc-clients.ts";
import { join } from "node:path";

/** Fast upkeep and short deadlines, so rows of a broken stream come back within about a second. */
const FAST_UPKEEP = {
  TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
  TASKBROKER_UPKEEP_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: "0",
  TASKBROKER_STORE__PROCESSING_DEADLINE_GRACE_SEC: "0",
  TASKBROKER_STORE__MAX_PENDING_COUNT: "100000",
  TASKBROKER_STORE__MAX_PROCESSING_COUNT: "100000",
};

function bytesOf(n: number, opts: Parameters<typeof activation>[0] & { atMostOnce?: boolean } = {}): Uint8Array[] {
  return Array.from({ length: n }, () => {
    const a = activation(opts);
    if (opts.atMostOnce)
      a.retryState = create(RetryStateSchema, { attempts: 0, maxAttempts: 1, onAttemptsExceeded: 1, atMostOnce: true });
    return toBinary(TaskActivationSchema, a);
  });
}

async function produce(client: BrokerClient, n: number, opts: Parameters<typeof bytesOf>[1] = {}): Promise<string[]> {
  const bytes = bytesOf(n, opts);
  const r = await client.produce(bytes);
  expect(r.accepted).toBe(n);
  return bytes.map((b) => fromBinary(TaskActivationSchema, b).id);
}

const streams: RecordedStream[] = [];
function open(o: Parameters<typeof recordStream>[0]): RecordedStream {
  const s = recordStream(o);
  streams.push(s);
  return s;
}

describe("delivery stream", () => {
  let broker: BrokerProcess;
  let client: BrokerClient;
  beforeAll(async () => {
    broker = await spawnBroker(FAST_UPKEEP);
    client = createBrokerClient({ address: broker.address });
  });
  afterAll(async () => {
    for (const s of streams) s.stream.destroy();
    await client.close();
    await broker.stop();
  });

  test("the broker never sends more than the credit; each result returns one; activations come in batches", async () => {
    await produce(client, 40, { application: "credit" });
    const s = open({ address: broker.address, credit: 4, application: "credit" });
    await s.stream.opened;
    await s.until(() => s.received.length === 4, "the first 4");
    s.report(s.received.slice(0, 2).map((a) => a.id));
    await s.until(() => s.received.length === 6, "2 more for 2 results");
    s.send({ credit: 10 });
    await s.until(() => s.received.length === 16, "10 more for 10 credits");
    // Report whatever arrives until everything is done.
    const drain = () => s.report([...s.inHand.keys()]);
    drain();
    const timer = setInterval(drain, 5);
    await s.until(() => s.received.length === 40 && s.inHand.size === 0, "all 40").finally(() => clearInterval(timer));
    await s.until(() => s.committed() === 40, "every result acknowledged");
    expect(s.overdrawn()).toBe(0);
    expect(new Set(s.received.map((a) => a.id)).size).toBe(40);
    // Oldest first within the stream.
    expect(s.messages()).toBeLessThan(40 + 40);
  });

  test("results are acknowledged only once committed, and a repeated result is harmless", async () => {
    const [id] = await produce(client, 1, { application: "ack" });
    const s = open({ address: broker.address, credit: 1, application: "ack" });
    await s.until(() => s.received.length === 1, "the activation");
    s.report([id!]);
    await s.until(() => s.committed() === 1, "the acknowledgement");
    const row = await adminClient(broker.address)
      .getActivation({ id: id! })
      .catch((e: unknown) => e);
    // Complete (or already deleted by upkeep): either way not Processing any more.
    if (!(row instanceof ConnectError)) expect((row as { state: string }).state).toBe("complete");
    else expect(row.code).toBe(Code.NotFound);
    s.report([id!]);
    await s.until(() => s.committed() === 2, "the repeat acknowledged");
    expect(s.ended()).toBeUndefined();
  });

  test("a waiting stream is woken by a new activation at once", async () => {
    const s = open({ address: broker.address, credit: 8, application: "wake" });
    await s.stream.opened;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const [id] = await produce(client, 1, { application: "wake" });
      await s.until(() => s.received.some((a) => a.id === id), "the new activation", 2000);
      const ms = performance.now() - t0;
      // Produce's round trip plus one group commit; far below any poll interval.
      expect(ms).toBeLessThan(1000);
      s.report([id!]);
    }
  });

  test("new activations go straight to waiting streams, never beyond their credit, committed as processing first", async () => {
    const admin = adminClient(broker.address);
    const s = open({ address: broker.address, credit: 3, application: "handoff" });
    await s.stream.opened;
    // One Produce of 10 while the stream waits: its 3 credits take 3 rows inside the insert, the rest stay pending.
    const ids = await produce(client, 10, { application: "handoff" });
    await s.until(() => s.received.length === 3, "3 for 3 credits");
    for (const a of s.received) expect((await admin.getActivation({ id: a.id })).state).toBe("processing");
    expect(s.received.map((a) => a.id)).toEqual(ids.slice(0, 3));
    s.report(s.received.map((a) => a.id));
    await s.until(() => s.received.length === 6, "3 more for 3 results");
    s.report(s.received.slice(3).map((a) => a.id));
    await s.until(() => s.received.length === 9, "3 more");
    s.report(s.received.slice(6).map((a) => a.id));
    await s.until(() => s.received.length === 10, "the last");
    expect(s.received.map((a) => a.id)).toEqual(ids);
    expect(s.overdrawn()).toBe(0);
    s.report([ids[9]!]);
    await s.until(() => s.committed() === 10, "all committed");
  });

  test("new activations one at a time alternate between the streams waiting for them", async () => {
    const a = open({ address: broker.address, credit: 5, application: "spread" });
    const b = open({ address: broker.address, credit: 5, application: "spread" });
    await Promise.all([a.stream.opened, b.stream.opened]);
    const holder = (id: string) => (a.received.some((x) => x.id === id) ? "a" : "b");
    const arrived = (id: string) => (x: { id: string }[]) => x.some((y) => y.id === id);
    const sendOne = async () => {
      const [id] = await produce(client, 1, { application: "spread" });
      const here = () => arrived(id!)(a.received) || arrived(id!)(b.received);
      await Promise.any([a.until(here, "the new activation", 5000), b.until(here, "the new activation", 5000)]);
      return holder(id!);
    };
    // Until each stream got one, a stream's first claim may still have been running (not yet waiting).
    const first: string[] = [];
    while (a.received.length === 0 || b.received.length === 0) first.push(await sendOne());
    expect(first.length).toBeLessThanOrEqual(4);
    // Both wait now: each new activation goes to the one that waited longest.
    const next: string[] = [];
    for (let i = 0; i < 4; i++) next.push(await sendOne());
    for (let i = 1; i < next.length; i++) expect(next[i]).not.toBe(next[i - 1]);
    expect(a.overdrawn() + b.overdrawn()).toBe(0);
    a.report(a.received.map((x) => x.id));
    b.report(b.received.map((x) => x.id));
    await a.until(() => a.committed() === a.received.length, "a's results committed");
    await b.until(() => b.committed() === b.received.length, "b's results committed");
  });

  test("an activation handed to a waiting stream that then breaks comes back after its deadline", async () => {
    const a = open({ address: broker.address, credit: 2, application: "handoff-broken" });
    await a.stream.opened;
    const ids = await produce(client, 2, { application: "handoff-broken", processingDeadlineS: 1 });
    await a.until(() => a.received.length === 2, "both handed to the waiting stream");
    a.stream.destroy();
    const b = open({
      address: broker.address,
      credit: 10,
      application: "handoff-broken",
      onBatch: (batch, rec) => rec.report(batch.map((x) => x.id)),
    });
    const t0 = performance.now();
    await b.until(() => b.received.length === 2, "the 2 after their deadline", 8000);
    expect(performance.now() - t0).toBeGreaterThan(200); // not before the deadline
    expect(b.received.map((x) => x.id).sort()).toEqual([...ids].sort());
    await b.until(() => b.committed() === 2, "both committed");
  });

  test("namespace and application filters as in GetTask", async () => {
    const xa = open({ address: broker.address, credit: 100, application: "fx", namespace: "a" });
    const y = open({ address: broker.address, credit: 100, application: "fy" });
    const nsOnly = open({ address: broker.address, credit: 100, namespace: "a" });
    await Promise.all([xa.stream.opened, y.stream.opened, nsOnly.stream.opened]);
    const idsXa = await produce(client, 5, { application: "fx", namespace: "a" });
    const idsXb = await produce(client, 4, { application: "fx", namespace: "b" });
    const idsY = await produce(client, 3, { application: "fy", namespace: "a" });
    await xa.until(() => xa.received.length === 5, "fx/a rows");
    await y.until(() => y.received.length === 3, "fy rows");
    expect(xa.received.map((a) => a.id).sort()).toEqual([...idsXa].sort());
    expect(y.received.map((a) => a.id).sort()).toEqual([...idsY].sort());
    // fx/b waited for a stream that takes it.
    const x = open({ address: broker.address, credit: 100, application: "fx" });
    await x.until(() => x.received.length === 4, "fx/b rows");
    expect(x.received.map((a) => a.id).sort()).toEqual([...idsXb].sort());
    // A namespace without an application matches nothing.
    expect(nsOnly.received.length).toBe(0);
    expect(nsOnly.ended()).toBeUndefined();
  });

  test("a slow worker holds only its credit; the others get the rest", async () => {
    const slow = open({ address: broker.address, credit: 2, application: "fair" });
    const fast = open({
      address: broker.address,
      credit: 16,
      application: "fair",
      onBatch: (batch, rec) => setImmediate(() => rec.report(batch.map((a) => a.id))),
    });
    await Promise.all([slow.stream.opened, fast.stream.opened]);
    await produce(client, 200, { application: "fair" });
    await fast.until(() => fast.received.length === 198, "198 for the fast worker");
    expect(slow.received.length).toBe(2);
    expect(slow.overdrawn()).toBe(0);
    expect(fast.overdrawn()).toBe(0);
    slow.report(slow.received.map((a) => a.id));
  });

  test("a broken stream: what it was sent comes back after the deadline, to another worker", async () => {
    const ids = await produce(client, 12, { application: "broken", processingDeadlineS: 1 });
    const a = open({ address: broker.address, credit: 8, application: "broken" });
    await a.until(() => a.received.length === 8, "8 for the first worker");
    a.stream.destroy(); // as when the worker process dies: the connection goes away mid-batch
    const b = open({
      address: broker.address,
      credit: 100,
      application: "broken",
      onBatch: (batch, rec) => rec.report(batch.map((x) => x.id)),
    });
    await b.until(() => b.received.length === 4, "the 4 never sent");
    const t0 = performance.now();
    await b.until(() => b.received.length === 12, "the 8 after their deadline", 8000);
    expect(performance.now() - t0).toBeGreaterThan(200); // not before the deadline
    expect(b.received.map((x) => x.id).sort()).toEqual([...ids].sort());
    await b.until(() => b.committed() === 12, "all committed");
  });

  test("at-most-once: sent once on a stream that broke, never sent again", async () => {
    const [id] = await produce(client, 1, { application: "amo", processingDeadlineS: 1, atMostOnce: true });
    const a = open({ address: broker.address, credit: 4, application: "amo" });
    await a.until(() => a.received.length === 1, "the at-most-once activation");
    a.stream.destroy();
    const b = open({ address: broker.address, credit: 4, application: "amo" });
    await b.stream.opened;
    const admin = adminClient(broker.address);
    const until = Date.now() + 8000;
    let state = "processing";
    while (state === "processing" && Date.now() < until) {
      // Failed at the deadline, then discarded and deleted by upkeep (NOT_FOUND).
      state = await admin.getActivation({ id: id! }).then(
        (r) => r.state,
        (e: ConnectError) => (e.code === Code.NotFound ? "gone" : Promise.reject(e)),
      );
      if (state === "processing") await Bun.sleep(50); // upkeep has no event to await
    }
    expect(["failure", "complete", "gone"]).toContain(state);
    const [next] = await produce(client, 1, { application: "amo" });
    await b.until(() => b.received.length === 1, "the next activation");
    expect(b.received[0]!.id).toBe(next!);
  });

  test("status codes that end a stream", async () => {
    // First message without `open`.
    let r = await rawCall(broker.address, DELIVER_PATH, frame(encodeWorkerMessage({ credit: 5 })));
    expect(r.grpcStatus).toBe(Code.InvalidArgument);
    // Undecodable message.
    r = await rawCall(broker.address, DELIVER_PATH, frame(Buffer.from([0x0a, 0x05, 0x01])));
    expect(r.grpcStatus).toBe(Code.Internal);
    // A result with a status other than FAILURE, RETRY, COMPLETE.
    const s = open({ address: broker.address, credit: 1, application: "codes" });
    await s.stream.opened;
    s.send({ results: [{ id: "x", status: 2 }] });
    await s.until(() => s.ended() !== undefined, "the end of the stream");
    expect(s.ended()?.code).toBe(Code.InvalidArgument);
    expect(s.ended()?.rawMessage).toContain("invalid status 2");
    // Too large.
    const big = open({ address: broker.address, credit: 1, application: "codes" });
    await big.stream.opened;
    big.send({ results: [{ id: "y".repeat(17 * 1024 * 1024), status: 5 }] });
    await big.until(() => big.ended() !== undefined, "the end of the stream");
    expect(big.ended()?.code).toBe(Code.ResourceExhausted);
    // The Connect protocol cannot carry it: UNIMPLEMENTED (HTTP 501), as for any unknown method.
    r = await rawCall(broker.address, DELIVER_PATH, frame(encodeWorkerMessage({ open: {} })), {
      "content-type": "application/connect+proto",
    });
    expect(r.httpStatus).toBe(501);
  });
});

describe("delivery stream with request signing", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({ TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify(["new key", "old key"]) });
  });
  afterAll(async () => {
    await broker.stop();
  });

  const opened = (secrets?: string[]) => {
    const s = openDeliveryStream({
      address: broker.address,
      secrets,
      open: { application: "sig" },
      credit: 1,
      keepaliveMs: 0,
      onMessage() {},
      onEnd() {},
    });
    return s.opened.then(
      () => (s.destroy(), "accepted"),
      (e: ConnectError) => Code[e.code],
    );
  };

  test("the opening message is signed like a unary request; any configured secret is accepted", async () => {
    expect(await opened()).toBe("Unauthenticated");
    expect(await opened(["wrong"])).toBe("Unauthenticated");
    expect(await opened(["new key"])).toBe("accepted");
    expect(await opened(["old key"])).toBe("accepted");
  });

  test("a signed stream delivers; a tampered opening message does not", async () => {
    const producer = createBrokerClient({ address: broker.address, secrets: ["new key"] });
    await produce(producer, 3, { application: "sig" });
    const s = open({ address: broker.address, credit: 10, application: "sig", secrets: ["old key"] });
    await s.until(() => s.received.length === 3, "3 activations");
    s.stream.destroy();
    // Signature of one opening message, sent with another.
    const { signRequest } = await import("../src/connect/signing.ts");
    const good = encodeWorkerMessage({ open: { application: "sig" }, credit: 1 });
    const forged = encodeWorkerMessage({ open: { application: "sig" }, credit: 1000 });
    const r = await rawCall(broker.address, DELIVER_PATH, frame(forged), {
      "sentry-signature": signRequest("new key", DELIVER_PATH, good),
    });
    expect(r.grpcStatus).toBe(Code.Unauthenticated);
    await producer.close();
  });
});

describe("delivery stream: broker killed mid-stream, restarted", () => {
  test("nothing acknowledged is lost: every activation runs, none acknowledged runs again", async () => {
    const dbPath = join(tempDir("tp-delivery-kill-"), "inflight.sqlite");
    let broker = await spawnBroker(FAST_UPKEEP, { dbPath });
    const producer = createBrokerClient({ address: broker.address });
    const ids = await produce(producer, 300, { application: "crash", processingDeadlineS: 1 });
    await producer.close();
    const acked = new Set<string>();
    const sentUnacked: string[] = [];
    const s = open({
      address: broker.address,
      credit: 32,
      application: "crash",
      onBatch: (batch, rec) =>
        setImmediate(() => {
          rec.report(batch.map((a) => a.id));
          sentUnacked.push(...batch.map((a) => a.id));
        }),
    });
    // Acknowledgements cover results in the order they were sent.
    let ackedCount = 0;
    const trackAcks = () => {
      while (ackedCount < s.committed() && sentUnacked.length > 0) {
        acked.add(sentUnacked.shift()!);
        ackedCount++;
      }
      return false;
    };
    void s.until(trackAcks, "never", 60_000).catch(() => {});
    await s.until(() => s.committed() >= 100, "100 acknowledged");
    broker.kill9();
    await broker.proc.exited;
    await s.until(() => s.ended() !== undefined, "the stream to break");
    trackAcks();
    expect(acked.size).toBeGreaterThanOrEqual(100);
    const firstRun = new Set(s.received.map((a) => a.id));

    broker = await spawnBroker(FAST_UPKEEP, { dbPath });
    try {
      const again: string[] = [];
      const s2 = open({
        address: broker.address,
        credit: 64,
        application: "crash",
        onBatch: (batch, rec) => {
          again.push(...batch.map((a) => a.id));
          rec.report(batch.map((a) => a.id));
        },
      });
      // Results the first broker never acknowledged are sent again (harmless if it had stored them).
      const resent = sentUnacked.splice(0);
      s2.report(resent);
      const missing = () => ids.filter((id) => !firstRun.has(id) && !again.includes(id));
      await s2.until(() => missing().length === 0 && s2.inHand.size === 0, "every activation to have run", 15_000);
      await s2.until(() => s2.committed() === resent.length + again.length, "every result acknowledged");
      for (const id of again) expect(acked.has(id)).toBe(false);
      const admin = adminClient(broker.address);
      const depths = await admin.getDepths({});
      const live = depths.totals.filter((t) => ["pending", "processing", "delay", "claimed"].includes(t.state));
      expect(live.reduce((n, t) => n + Number(t.count), 0)).toBe(0);
      s2.stream.destroy();
    } finally {
      await broker.stop();
    }
  });
});

/** The status a broker at `address` refuses a delivery stream with (undefined: it accepted it). */
async function refusalOf(address: string): Promise<Code | undefined> {
  const s = openDeliveryStream({ address, open: {}, credit: 1, keepaliveMs: 0, onMessage() {}, onEnd() {} });
  return s.opened.then(
    () => (s.destroy(), undefined),
    (e: ConnectError) => e.code,
  );
}

describe("delivery stream: graceful stop and push mode", () => {
  test("on SIGTERM the broker stops sending, takes the results of what it sent, then ends the stream UNAVAILABLE", async () => {
    const broker = await spawnBroker({ ...FAST_UPKEEP, TASKBROKER_SHUTDOWN_DRAIN_MS: "5000" });
    const producer = createBrokerClient({ address: broker.address });
    await produce(producer, 10, { application: "stop" });
    await producer.close();
    const s = open({ address: broker.address, credit: 4, application: "stop" });
    await s.until(() => s.received.length === 4, "4 in hand");
    const exited = broker.stop();
    await broker.waitForLog(/rpc_closed|closing|shutdown|stopping/i).catch(() => {});
    s.report([...s.inHand.keys()]);
    await s.until(() => s.ended() !== undefined, "the end of the stream");
    expect(s.ended()?.code).toBe(Code.Unavailable);
    expect(s.committed()).toBe(4);
    expect(s.received.length).toBe(4);
    expect(await exited).toBe(0);
  });

  test("a broker in push mode refuses the stream with PERMISSION_DENIED", async () => {
    const broker = await spawnBroker({
      TASKBROKER_DELIVERY_MODE: "push",
      TASKBROKER_PUSH_WORKER_ADDRESSES: '["127.0.0.1:9"]',
    });
    try {
      expect(await refusalOf(broker.address)).toBe(Code.PermissionDenied);
    } finally {
      await broker.stop();
    }
  });

  test("a gRPC server without the service (as Sentry's taskbroker) answers UNIMPLEMENTED, which the client reports", async () => {
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    try {
      expect(await refusalOf(`127.0.0.1:${port}`)).toBe(Code.Unimplemented);
    } finally {
      server.forceShutdown();
    }
  });
});
