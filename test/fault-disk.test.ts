// Fault suite: a full disk, on a real small filesystem (a loop-mounted ext4
// image, or tmpfs with size= where loop devices are unavailable), under a
// broker process speaking gRPC to an independent client (grpc-js).
// What must hold: the WAL stays bounded while ingest fills the volume; Produce
// answers a retryable code (RESOURCE_EXHAUSTED), never INTERNAL; claims and
// completions keep committing on a full disk so workers can drain; a broker
// restarted on a full disk opens in its reserve file's room; a disk that
// fails every write turns health NOT_SERVING and /ready 503, and both recover
// by themselves once writes work again.
// Needs root to mount; skips with the reason when mounting is impossible.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../src/gen/grpc/health/v1/health_pb.ts";
import {
  GetTaskResponseSchema,
  SetTaskStatusRequestSchema,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import {
  GET_TASK,
  HEALTH_CHECK,
  PRODUCE,
  SET_STATUS,
  activation,
  encode,
  grpcJsClient,
  produceRequest,
  unary,
} from "./support/rpc-clients.ts";

setDefaultTimeout(30_000);

const VOLUME_MIB = 24;
const WAL_MAX = 2 * 1024 * 1024;
const MIN_FREE = 4 * 1024 * 1024;

/** Mounts a small filesystem; returns how, or why it could not. */
function mountSmallVolume(dir: string, image: string): { ok: true; kind: string } | { ok: false; reason: string } {
  if (process.getuid?.() !== 0)
    return { ok: false, reason: "not running as root (mounting a small filesystem needs it)" };
  const errors: string[] = [];
  try {
    execFileSync("truncate", ["-s", `${VOLUME_MIB}M`, image]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", image], { stdio: "pipe" });
    execFileSync("mount", ["-o", "loop", image, dir], { stdio: "pipe" });
    return { ok: true, kind: "ext4 (loop)" };
  } catch (err) {
    errors.push(`ext4 loop: ${(err as Error).message.split("\n")[0]}`);
  }
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${VOLUME_MIB}m`, "tmpfs", dir], { stdio: "pipe" });
    return { ok: true, kind: "tmpfs" };
  } catch (err) {
    errors.push(`tmpfs: ${(err as Error).message.split("\n")[0]}`);
  }
  return { ok: false, reason: errors.join("; ") };
}

const root = tempDir("taskbroker-disk-");
const dir = join(root, "vol");
mkdirSync(dir);
const mounted = mountSmallVolume(dir, join(root, "vol.img"));
if (!mounted.ok) console.warn(`fault-disk: SKIPPED, cannot mount a small filesystem: ${mounted.reason}`);

const brokerEnv = {
  TASKBROKER_ADMIN_ENABLED: "true",
  TASKBROKER_ADMIN_HOST: "127.0.0.1",
  TASKBROKER_STORE__MAX_PENDING_COUNT: "1000000",
  TASKBROKER_STORE__WAL_MAX_BYTES: String(WAL_MAX),
  TASKBROKER_STORE__MIN_FREE_BYTES: String(MIN_FREE),
};
let broker: BrokerProcess;
let client: grpc.Client;
let adminUrl: string;

const payload = new Uint8Array(2000).fill(7);
let n = 0;
const batch = (size: number) =>
  produceRequest(
    Array.from({ length: size }, () =>
      activation(`disk${(n++).toString().padStart(28, "0")}`, { parametersBytes: payload }),
    ),
  );

const walBytes = () => {
  try {
    return statSync(join(dir, "inflight.sqlite-wal")).size;
  } catch {
    return 0;
  }
};

/** Writes a filler file until the filesystem refuses (ENOSPC). */
function fillVolume(name: string): number {
  const fd = openSync(join(dir, name), "a");
  const chunk = Buffer.alloc(64 * 1024, 1);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, chunk);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    closeSync(fd);
  }
  // Top off what a 64 KiB write could not use.
  const fd2 = openSync(join(dir, name), "a");
  try {
    for (;;) written += writeSync(fd2, Buffer.alloc(1024, 1));
  } catch {
    // full
  } finally {
    closeSync(fd2);
  }
  return written;
}

async function health(): Promise<number | null> {
  const r = await unary(client, HEALTH_CHECK, encode(HealthCheckRequestSchema, { service: "" }));
  return r.response ? fromBinary(HealthCheckResponseSchema, r.response).status : null;
}

/** Claims and completes up to `max` activations; returns how many, and the error codes seen. */
async function drain(max: number, ms: number) {
  const codes: number[] = [];
  let done = 0;
  const until = Date.now() + ms;
  while (done < max && Date.now() < until) {
    const got = await unary(client, GET_TASK, Buffer.alloc(0));
    if (got.code !== 0) {
      codes.push(got.code);
      if (got.code === 5) break; // NOT_FOUND: empty
      await Bun.sleep(20);
      continue;
    }
    const id = fromBinary(GetTaskResponseSchema, got.response!).task!.id;
    const set = await unary(client, SET_STATUS, encode(SetTaskStatusRequestSchema, { id, status: 5 }));
    if (set.code !== 0) codes.push(set.code);
    else done++;
  }
  return { done, codes };
}

describe.skipIf(!mounted.ok)(`full disk on a ${VOLUME_MIB} MiB filesystem`, () => {
  beforeAll(async () => {
    broker = await spawnBroker(brokerEnv, {
      dbPath: join(dir, "inflight.sqlite"),
      echo: process.env.FAULT_ECHO === "1",
    });
    client = grpcJsClient(broker.address);
    adminUrl = `http://127.0.0.1:${broker.adminPort}`;
  });
  afterAll(async () => {
    client?.close();
    await broker?.stop();
    try {
      execFileSync("umount", [dir], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", dir], { stdio: "pipe" });
    }
    rmSync(root, { recursive: true, force: true });
  });

  // chattr +i makes every write to the store's files fail (EPERM, an I/O error
  // to SQLite): a disk that cannot be written, reversibly. ext4 only.
  test.skipIf(mounted.ok && mounted.kind !== "ext4 (loop)")(
    "a disk that fails every write: claims UNAVAILABLE, health NOT_SERVING, /ready 503; all recover when it writes again",
    async () => {
      expect((await unary(client, PRODUCE, batch(50))).code).toBe(0);
      const files = ["inflight.sqlite", "inflight.sqlite-wal"].map((f) => join(dir, f));
      execFileSync("chattr", ["+i", ...files]);
      let immutable = true;
      try {
        const { done, codes } = await drain(5, 1000);
        expect(done).toBe(0);
        expect(codes.length).toBeGreaterThan(0);
        for (const c of codes) expect(c).toBe(14); // UNAVAILABLE, never INTERNAL
        expect(await health()).toBe(2); // NOT_SERVING
        expect((await unary(client, PRODUCE, batch(5))).code).toBe(8);
        const ready = await fetch(`${adminUrl}/ready`);
        expect(ready.status).toBe(503);
        expect(((await ready.json()) as { checks: { store: { ok: boolean } } }).checks.store.ok).toBe(false);

        execFileSync("chattr", ["-i", ...files]);
        immutable = false;
        const t0 = Date.now();
        while ((await health()) !== 1) {
          if (Date.now() - t0 > 5000) throw new Error("health did not recover within 5 s");
          await Bun.sleep(25);
        }
        const recoveredMs = Date.now() - t0;
        const after = await drain(100, 5000);
        expect(after.codes.filter((c) => c !== 5)).toEqual([]);
        expect(after.done).toBeGreaterThan(0);
        expect((await unary(client, PRODUCE, batch(5))).code).toBe(0);
        expect((await fetch(`${adminUrl}/ready`)).status).toBe(200);
        console.log(`fault-disk: health SERVING ${recoveredMs} ms after writes work again; drained ${after.done} more`);
      } finally {
        if (immutable) execFileSync("chattr", ["-i", ...files]);
      }
    },
  );

  let stored = 0;
  test("ingest fills the volume: the WAL stays bounded, Produce ends in RESOURCE_EXHAUSTED, never INTERNAL", async () => {
    let maxWal = 0;
    let walWaits = 0;
    let last = { code: 0, details: "" };
    for (let i = 0; i < 400; i++) {
      last = await unary(client, PRODUCE, batch(50));
      maxWal = Math.max(maxWal, walBytes());
      if (last.code === 8 && last.details.includes("waiting for the checkpointer")) {
        // Backpressure that lifts by itself within a checkpoint: a client backs off and retries.
        walWaits++;
        await Bun.sleep(20);
        continue;
      }
      if (last.code !== 0) break;
      stored += 50;
    }
    console.log(
      `fault-disk[${mounted.ok && mounted.kind}]: stored ${stored} activations; largest WAL ${maxWal} bytes; ${walWaits} waits for the checkpointer; then ${last.code} ${last.details}`,
    );
    expect(last.code).toBe(8); // RESOURCE_EXHAUSTED
    expect(last.details).toContain("min_free_bytes");
    expect(stored).toBeGreaterThan(500);
    // The bound plus what the commits of one checkpointer pass add; before the fix the WAL took the volume.
    expect(maxWal).toBeLessThan(4 * WAL_MAX);
    expect(await health()).toBe(1); // SERVING: ingest pausing is backpressure, not a fault
  });

  test("with the volume full, Produce stays RESOURCE_EXHAUSTED and workers still drain", async () => {
    fillVolume("filler-1");
    const produced = await unary(client, PRODUCE, batch(5));
    expect(produced.code).toBe(8);
    const { done, codes } = await drain(200, 10_000);
    console.log(`fault-disk: drained ${done} on a full volume; errors ${JSON.stringify(codes)}`);
    expect(done).toBe(200);
    // Claims and completions rewrite pages inside the WAL's bounded file; a commit
    // that needs more is retryable UNAVAILABLE while the reserve makes room.
    for (const c of codes) expect(c).toBe(14);
    expect(codes.length).toBeLessThan(10);
  });

  test("restarted on a full disk, the broker opens in the reserve's room and serves claims", async () => {
    // Space back: the reserve is written again (it is tended every 500 ms, below 1 GiB free).
    for (const f of readdirSync(dir)) if (f.startsWith("filler-")) rmSync(join(dir, f));
    const t0 = Date.now();
    while (!readdirSync(dir).includes("inflight.sqlite-reserve")) {
      if (Date.now() - t0 > 5000) throw new Error("reserve not rewritten within 5 s of freeing space");
      await Bun.sleep(25);
    }
    // A clean stop checkpoints and truncates the WAL: reopening needs new blocks.
    expect(await broker.stop()).toBe(0);
    client.close();
    fillVolume("filler-2");
    broker = await spawnBroker(brokerEnv, {
      dbPath: join(dir, "inflight.sqlite"),
      echo: process.env.FAULT_ECHO === "1",
    });
    client = grpcJsClient(broker.address);
    adminUrl = `http://127.0.0.1:${broker.adminPort}`;
    expect(broker.logs()).toContain("store_reserve_released");
    const { done, codes } = await drain(100, 5000);
    expect(done).toBe(100);
    for (const c of codes) expect(c).toBe(14);
    expect((await unary(client, PRODUCE, batch(5))).code).toBe(8);
  });
});
