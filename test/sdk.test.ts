// The task SDK in-process: the interoperability vectors (msgpack and zstd,
// byte-exact both ways), activation building, retry decisions, routing, and
// eager mode running tasks through a real encode/decode.
import { describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { OnAttemptsExceeded, TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import {
  createApp,
  currentTask,
  decodeParameters,
  EagerTaskFailed,
  encodeParameters,
  ProcessingDeadlineExceeded,
  retry,
  RetryTaskError,
  shouldRetry,
  stringifyHeaders,
} from "../src/sdk/index.ts";
import { retriesOnDeadline } from "../src/sdk/retry.ts";
import { createRouter, parseRoutes, RoutingError } from "../src/sdk/routing.ts";

const MSGPACK = "82a4617267739501a161c4020001c0cb4004000000000000a66b776172677382a66f72675f696407a4666c6167c3";
const ZSTD =
  "28b52ffd202e71010082a4617267739501a161c4020001c0cb4004000000000000a66b776172677382a66f72675f696407a4666c6167c3";
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const VALUES = { args: [1, "a", new Uint8Array([0, 1]), null, 2.5], kwargs: { org_id: 7, flag: true } };

describe("interoperability vectors", () => {
  test("encoding matches the Python msgpack bytes exactly", () => {
    const enc = encodeParameters(VALUES, "none");
    expect(enc.compression).toBeNull();
    expect(hex(enc.bytes)).toBe(MSGPACK);
  });
  test("forced zstd matches the Python zstd frame exactly", () => {
    const enc = encodeParameters(VALUES, "zstd");
    expect(enc.compression).toBe("zstd");
    expect(hex(enc.bytes)).toBe(ZSTD);
  });
  test("Python's bytes decode to the expected TypeScript values, plain and compressed", () => {
    for (const [b, header] of [
      [MSGPACK, undefined],
      [ZSTD, "zstd"],
    ] as const) {
      const p = decodeParameters(bytes(b), header);
      expect(p.args[0]).toBe(1);
      expect(p.args[1]).toBe("a");
      expect(p.args[2]).toBeInstanceOf(Uint8Array);
      expect([...(p.args[2] as Uint8Array)]).toEqual([0, 1]);
      expect(p.args[3]).toBeNull();
      expect(p.args[4]).toBe(2.5);
      expect(p.kwargs).toEqual({ org_id: 7, flag: true });
    }
  });
  test("auto compression kicks in only above 3,000,000 bytes", () => {
    expect(encodeParameters({ args: ["x".repeat(1000)], kwargs: {} }).compression).toBeNull();
    const big = encodeParameters({ args: ["x".repeat(3_000_100)], kwargs: {} });
    expect(big.compression).toBe("zstd");
    expect((decodeParameters(big.bytes, "zstd").args[0] as string).length).toBe(3_000_100);
  });
});

describe("headers", () => {
  test("scalars become strings the way Python writes them", () => {
    expect(stringifyHeaders({ a: true, b: false, c: null, d: 7, e: "x", f: 2.5 })).toEqual({
      a: "True",
      b: "False",
      c: "None",
      d: "7",
      e: "x",
      f: "2.5",
    });
    expect(() => stringifyHeaders({ bad: { x: 1 } as never })).toThrow(/scalar/);
  });
});

describe("activations", () => {
  const app = createApp({ name: "sdktest" });
  const ns = app.namespace("sdk.ns", {
    retry: retry({ times: 3, delay: 5, onAttemptsExceeded: "deadletter" }),
    expires: 60,
  });
  const t = ns.register({ name: "sdk.add", handler: (a: number, b: number) => a + b });

  test("carry id, params, retry state, deadline, expiry, delay, application and headers", () => {
    const built = t.buildActivation({ args: [1, 2], kwargs: { k: "v" }, countdown: 30, headers: { flag: true } });
    const a = fromBinary(TaskActivationSchema, built.bytes);
    expect(a.id).toMatch(/^[0-9a-f]{32}$/);
    expect(a.application).toBe("sdktest");
    expect(a.namespace).toBe("sdk.ns");
    expect(a.taskname).toBe("sdk.add");
    expect(a.processingDeadlineDuration).toBe(10n);
    expect(a.expires).toBe(60n);
    expect(a.delay).toBe(30n);
    expect(a.headers).toEqual({ flag: "True" });
    expect(a.retryState?.attempts).toBe(0);
    expect(a.retryState?.maxAttempts).toBe(3);
    expect(a.retryState?.onAttemptsExceeded).toBe(OnAttemptsExceeded.DEADLETTER);
    expect(a.retryState?.delayOnRetry).toBe(5n);
    expect(decodeParameters(a.parametersBytes, undefined)).toEqual({ args: [1, 2], kwargs: { k: "v" } });
    expect(Math.abs(Number(a.receivedAt!.seconds) * 1000 - Date.now())).toBeLessThan(2000);
  });

  test("without retries: max_attempts 1, DISCARD; at-most-once sets the flag", () => {
    const once = ns.register({
      name: "sdk.once",
      handler: () => 0,
      atMostOnce: true,
      retry: retry({ times: 1 }),
      processingDeadlineS: 3,
    });
    const a = fromBinary(TaskActivationSchema, once.buildActivation().bytes);
    expect(a.retryState?.maxAttempts).toBe(1);
    expect(a.retryState?.onAttemptsExceeded).toBe(OnAttemptsExceeded.DISCARD);
    expect(a.retryState?.atMostOnce).toBe(true);
    expect(a.processingDeadlineDuration).toBe(3n);
    expect(() =>
      ns.register({ name: "sdk.bad", handler: () => 0, atMostOnce: true, retry: retry({ times: 2 }) }),
    ).toThrow(/atMostOnce/);
  });

  test("the internal namespace is reserved and holds the canary", () => {
    expect(() => app.namespace("internal")).toThrow(/reserved/);
    expect(app.lookup("internal", "canary_task")).toBeDefined();
  });
});

describe("retry policy", () => {
  class Transient extends Error {}
  class Subtransient extends Transient {}
  class Fatal extends Transient {}
  const first = { attempts: 0, maxAttempts: 3 };
  test("on / ignore (ignore wins, subclasses match), attempts limit", () => {
    const p = retry({ times: 3, on: [Transient], ignore: [Fatal] });
    expect(shouldRetry(p, first, new Subtransient())).toBe(true);
    expect(shouldRetry(p, first, new Fatal())).toBe(false);
    expect(shouldRetry(p, first, new TypeError())).toBe(false);
    expect(shouldRetry(p, { attempts: 2, maxAttempts: 3 }, new Transient())).toBe(false);
  });
  test("explicit retry needs attempts left, deadline retries only when listed", () => {
    const p = retry({ times: 2, on: [TypeError] });
    expect(shouldRetry(p, { attempts: 0, maxAttempts: 2 }, new RetryTaskError())).toBe(true);
    expect(shouldRetry(p, { attempts: 1, maxAttempts: 2 }, new RetryTaskError())).toBe(false);
    expect(shouldRetry(retry({ times: 3 }), first, new ProcessingDeadlineExceeded())).toBe(false);
    expect(retriesOnDeadline(retry({ times: 3 }))).toBe(false);
    expect(retriesOnDeadline(retry({ times: 3, on: [ProcessingDeadlineExceeded] }))).toBe(true);
    // Like upstream, where the deadline error is no Exception: retrying every error does not retry the deadline.
    expect(retriesOnDeadline(retry({ times: 3, on: [Error] }))).toBe(false);
    expect(shouldRetry(retry({ times: 3, on: [Error] }), first, new ProcessingDeadlineExceeded())).toBe(false);
  });
  test("the default policy retries only RetryTaskError and timeouts, as Sentry's Retry does", () => {
    const p = retry({ times: 3 });
    expect(shouldRetry(p, first, new Error("boom"))).toBe(false);
    expect(shouldRetry(p, first, new TypeError("x"))).toBe(false);
    expect(shouldRetry(p, first, new RetryTaskError())).toBe(true);
    expect(shouldRetry(p, first, new DOMException("timed out", "TimeoutError"))).toBe(true);
    // `ignore` wins over timeouts, not over an explicit RetryTaskError.
    class Slow extends Error {
      override name = "TimeoutError";
    }
    const q = retry({ times: 3, ignore: [Slow] });
    expect(shouldRetry(q, first, new Slow())).toBe(false);
    expect(shouldRetry(q, first, new RetryTaskError())).toBe(true);
    expect(shouldRetry(retry({ times: 3, on: [Error] }), first, new TypeError())).toBe(true);
  });
});

describe("context hooks", () => {
  test("onDispatch adds headers after the caller's; onExecute hooks nest around the run, the first outermost", async () => {
    const order: string[] = [];
    const app = createApp({
      name: "hookstest",
      eager: true,
      contextHooks: [
        {
          onDispatch: (h) => void (h["x-a"] = `a(${h["x-caller"] ?? "-"})`),
          onExecute: async (h, next) => (
            order.push(`a-in ${h["x-a"]}`), await next().finally(() => order.push("a-out"))
          ),
        },
        {
          onExecute: async (h, next) => (
            order.push(`b-in ${h["x-caller"]}`), await next().finally(() => order.push("b-out"))
          ),
        },
      ],
    });
    const t = app.namespace("hooks").register({ name: "hooks.run", handler: () => void order.push("run") });
    expect(t.buildActivation({ headers: { "x-caller": "c" } }).activation.headers).toMatchObject({
      "x-caller": "c",
      "x-a": "a(c)",
    });
    await t.applyAsync({ headers: { "x-caller": "c" } });
    expect(order).toEqual(["a-in a(c)", "b-in c", "run", "b-out", "a-out"]);
    await app.close();
  });
});

describe("eager mode", () => {
  test("runs through encode/decode with kwargs, context and retries", async () => {
    const app = createApp({ name: "eagertest", eager: true });
    const ns = app.namespace("eager", { retry: retry({ times: 3, on: [Error] }) });
    const seen: unknown[] = [];
    const t = ns.register({
      name: "eager.flaky",
      handler: (x: Uint8Array, kw: { n: number }) => {
        const ctx = currentTask()!;
        seen.push([[...x], kw.n, ctx.attempts, ctx.isLastAttempt()]);
        if (!ctx.isLastAttempt()) throw new Error("not yet");
      },
    });
    await t.applyAsync({ args: [new Uint8Array([9])] as never, kwargs: { n: 4 } });
    expect(seen).toEqual([
      [[9], 4, 0, false],
      [[9], 4, 1, false],
      [[9], 4, 2, true],
    ]);
    const bad = ns.register({ name: "eager.bad", handler: () => ({ fn: () => 1 }), retry: retry({ times: 1 }) });
    await bad.delay();
    const unserialisable = ns.register({ name: "eager.params", handler: (_f: unknown) => 1 });
    await expect(unserialisable.delay(Symbol("x"))).rejects.toThrow(/serialis/);
    const fails = ns.register({
      name: "eager.fails",
      handler: () => {
        throw new Error("boom");
      },
      retry: retry({ times: 1 }),
    });
    await expect(fails.delay()).rejects.toBeInstanceOf(EagerTaskFailed);
    await app.close();
  });
});

describe("routing", () => {
  test("default topic, configured routes, overrides, validation", () => {
    const r = createRouter({ routes: parseRoutes('{"ingest.errors":"taskworker-ingest"}') });
    expect(r.topicFor("other")).toBe("taskworker");
    expect(r.topicFor("ingest.errors")).toBe("taskworker-ingest");
    r.override("other", "taskworker-ingest");
    expect(r.topicFor("other")).toBe("taskworker-ingest");
    r.clearOverride("other");
    expect(r.topicFor("other")).toBe("taskworker");
    expect(() => r.override("x", "bad topic")).toThrow(RoutingError);
    expect(() => parseRoutes("[1]")).toThrow(/object/);
    expect(() => createRouter({ routes: { a: "t2" }, declaredTopics: ["taskworker", "t1"] })).toThrow(/declared/);
  });
});

describe("trace headers", () => {
  test("carried into follow-up tasks, unless the activation turned propagation off", async () => {
    const app = createApp({ name: "tracetest", eager: true });
    const ns = app.namespace("trace");
    const seen: Array<string | undefined> = [];
    const child = ns.register({ name: "child", handler: () => void seen.push(currentTask()!.headers.traceparent) });
    const parent = ns.register({ name: "parent", handler: async () => void (await child.delay()) });
    await parent.applyAsync({ headers: { traceparent: "00-trace-span-01" } });
    await parent.applyAsync({ headers: { traceparent: "00-trace-span-01", "sentry-propagate-traces": false } });
    expect(seen).toEqual(["00-trace-span-01", undefined]);
    await app.close();
  });
});
