// Worker pieces in-process: the activation decoder against @bufbuild, the
// expiry check, broker balancing, the at-most-once store on a real SQLite
// file, configuration errors, and the task pool's deadline enforcement on
// real threads (collateral runs restarted, at-most-once ones not).
import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  OnAttemptsExceeded,
  RetryStateSchema,
  TaskActivationSchema,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { silentLogger } from "../src/log.ts";
import { decodeWireActivation } from "../src/activation/wire.ts";
import { openAtMostOnceStore } from "../src/worker/at-most-once.ts";
import { createBalancer } from "../src/worker/balancer.ts";
import { resolveWorkerConfig } from "../src/config/worker.ts";
import { isExpired } from "../src/worker/loop.ts";
import { createTaskPool } from "../src/worker/pool.ts";
import { tempDir } from "./support/broker-process.ts";

describe("activation decoder", () => {
  test("reads every field the worker uses, like @bufbuild does", () => {
    const msg = create(TaskActivationSchema, {
      id: "a".repeat(32),
      namespace: "ns",
      taskname: "tn",
      parameters: '{"args":[]}',
      headers: { "compression-type": "zstd", traceparent: "00-x" },
      receivedAt: timestampFromMs(1_700_000_000_123),
      retryState: create(RetryStateSchema, {
        attempts: 2,
        maxAttempts: 5,
        onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER,
        atMostOnce: true,
        delayOnRetry: 7n,
      }),
      processingDeadlineDuration: 30n,
      expires: 600n,
      delay: 5n,
      application: "app",
      parametersBytes: new Uint8Array([1, 2, 3]),
    });
    const a = decodeWireActivation(toBinary(TaskActivationSchema, msg));
    expect(a).toEqual({
      id: "a".repeat(32),
      namespace: "ns",
      taskname: "tn",
      parameters: '{"args":[]}',
      headers: { "compression-type": "zstd", traceparent: "00-x" },
      receivedAtMs: 1_700_000_000_123,
      attempts: 2,
      maxAttempts: 5,
      onAttemptsExceeded: 2,
      atMostOnce: true,
      delayOnRetry: 7,
      processingDeadlineS: 30,
      expiresS: 600,
      delayS: 5,
      application: "app",
      parametersBytes: new Uint8Array([1, 2, 3]),
    });
    const empty = decodeWireActivation(toBinary(TaskActivationSchema, create(TaskActivationSchema, { id: "x" })));
    expect(empty.expiresS).toBeUndefined();
    expect(empty.application).toBeUndefined();
    expect(() => decodeWireActivation(new Uint8Array([0x0a, 0x05, 0x61]))).toThrow(/truncated/);
  });

  test("expiry: received_at + expires in the past", () => {
    expect(isExpired({ receivedAtMs: 1000, expiresS: 1 }, 2001)).toBe(true);
    expect(isExpired({ receivedAtMs: 1000, expiresS: 1 }, 1999)).toBe(false);
    expect(isExpired({ receivedAtMs: 1000, expiresS: undefined }, 1e12)).toBe(false);
  });
});

describe("balancer", () => {
  test("random start, move after N tasks, skip a broker after 3 UNAVAILABLE for 20 s", () => {
    let now = 0;
    let r = 0.9;
    const b = createBalancer({ brokers: ["a:1", "b:1", "c:1"], rebalanceAfter: 2, now: () => now, random: () => r });
    const c = b.cursor();
    expect(c.current()).toBe("c:1"); // random 0.9 of three
    expect(c.fetched()).toBe(false);
    expect(c.fetched()).toBe(true);
    r = 0;
    expect(c.move()).toBe("a:1"); // never the same broker when others exist
    b.unavailable("a:1");
    b.unavailable("a:1");
    expect(b.isSkipped("a:1")).toBe(false);
    b.succeeded("a:1"); // consecutive only
    b.unavailable("a:1");
    b.unavailable("a:1");
    b.unavailable("a:1");
    expect(b.isSkipped("a:1")).toBe(true);
    expect(c.current()).not.toBe("a:1");
    now += 20_001;
    expect(b.isSkipped("a:1")).toBe(false);
  });
});

describe("at-most-once store", () => {
  test("atomic add across handles on one file; an expired entry can be taken again", () => {
    let now = 1_000_000;
    const path = join(tempDir("amo-"), "amo.sqlite");
    const s1 = openAtMostOnceStore(path, () => now);
    const s2 = openAtMostOnceStore(path, () => now);
    expect(s1.add("id1", 10)).toBe(true);
    expect(s2.add("id1", 10)).toBe(false);
    expect(s1.add("id1", 10)).toBe(false);
    now += 10_001;
    expect(s2.add("id1", 10)).toBe(true);
    s1.close();
    s2.close();
  });
});

describe("configuration", () => {
  test("flags over environment, defaults, one-line errors", () => {
    const r = resolveWorkerConfig(["--concurrency", "8", "--tasks=a.ts,b.ts"], {
      TASKWORKER_CONCURRENCY: "2",
      TASKWORKER_NAMESPACE: "ns",
    });
    if (r.help) throw new Error("unexpected help");
    expect(r.config.concurrency).toBe(8);
    expect(r.config.tasks).toEqual(["a.ts", "b.ts"]);
    expect(r.config.namespace).toBe("ns");
    expect(r.config.rpcHostList).toEqual(["127.0.0.1:50051"]);
    expect(() => resolveWorkerConfig(["--concurrency", "0"], {})).toThrow(
      /^--concurrency="0" is invalid: expected an integer >= 1$/,
    );
    expect(() => resolveWorkerConfig([], { TASKWORKER_RPC_HOST_LIST: "nohost" })).toThrow(/TASKWORKER_RPC_HOST_LIST/);
    expect(() => resolveWorkerConfig([], { TASKWORKER_GRPC_SHARED_SECRET: "[1]" })).toThrow(/JSON array/);
    expect(() => resolveWorkerConfig(["--bogus"], {})).toThrow(/unknown option --bogus/);
    expect(resolveWorkerConfig(["--help"], {}).help).toBe(true);
  });
});

describe("task pool", () => {
  const modules = [join(import.meta.dir, "worker-tasks.fixture.ts")];
  const req = (id: string, taskname: string, deadlineMs: number) => ({
    id,
    application: "wt",
    namespace: "wt",
    taskname,
    headers: {},
    parametersBytes: new Uint8Array([
      0x82, 0xa4, 0x61, 0x72, 0x67, 0x73, 0x91, 0xa1, 0x78, 0xa6, 0x6b, 0x77, 0x61, 0x72, 0x67, 0x73, 0x80,
    ]),
    parameters: "",
    attempts: 0,
    maxAttempts: 1,
    deadlineAtMs: Date.now() + deadlineMs,
  });

  test("a spinning run is stopped at its deadline; runs sharing its thread are restarted elsewhere", async () => {
    const pool = createTaskPool({
      threads: 1,
      log: silentLogger,
      init: { modules, env: { WT_OUT: "/dev/null" } },
      deadlineTickMs: 20,
    });
    const tasks = await pool.ready;
    expect(tasks.some((t) => t.taskname === "spin")).toBe(true);
    const spin = pool.run({ req: req("s", "spin", 300), atMostOnce: false });
    const slow = pool.run({ req: req("w", "slow", 10_000), atMostOnce: false });
    const once = pool.run({ req: req("o", "once", 10_000), atMostOnce: true });
    expect((await spin).outcome).toBe("deadline");
    expect((await once).outcome).toBe("failure"); // may have had effects: not run again
    expect((await slow).outcome).toBe("complete"); // restarted on the replacement thread
    const after = await pool.run({ req: req("h", "hello", 5000), atMostOnce: false });
    expect(after.outcome).toBe("complete");
    await pool.close();
  }, 20_000);

  test("recycling: a thread is replaced after N runs; with min concurrency it works on until the replacement is up", async () => {
    const out = join(tempDir("recycle-"), "who.out");
    const logged: string[] = [];
    const log = { ...silentLogger, info: (event: string) => void logged.push(event), child: () => log };
    const pool = createTaskPool({ threads: 1, log, init: { modules, env: { WT_OUT: out } }, maxTasksPerThread: 3 });
    await pool.ready;
    for (let i = 0; i < 7; i++) {
      expect((await pool.run({ req: req(`r${i}`, "whoami", 5000), atMostOnce: false })).outcome).toBe("complete");
      // Without a minimum, the thread due for recycling takes nothing new: runs wait for the replacement.
      if (i === 2) expect(pool.readyThreads()).toBe(0);
    }
    const ids = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[2]);
    expect(ids).toHaveLength(7);
    expect(new Set(ids.slice(0, 3)).size).toBe(1);
    expect(new Set(ids.slice(3, 6)).size).toBe(1);
    expect(new Set([ids[0], ids[3], ids[6]]).size).toBe(3);
    expect(logged.filter((e) => e === "task_thread_recycled")).toHaveLength(2);
    await pool.close();

    const kept = createTaskPool({
      threads: 1,
      log: silentLogger,
      init: { modules, env: { WT_OUT: "/dev/null" } },
      maxTasksPerThread: 2,
      minReadyThreads: 1,
    });
    await kept.ready;
    for (let i = 0; i < 2; i++) await kept.run({ req: req(`k${i}`, "whoami", 5000), atMostOnce: false });
    // Due for recycling, but the only ready thread: it keeps taking runs while the replacement loads.
    expect(kept.readyThreads()).toBe(1);
    expect((await kept.run({ req: req("k2", "whoami", 5000), atMostOnce: false })).outcome).toBe("complete");
    await kept.close();
  }, 20_000);
});
