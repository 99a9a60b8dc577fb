// Pure parts of the admin server: the rate ring buffer, statsd line building,
// the admin token check, and the Prometheus text parser the other tests use.
import { describe, expect, test } from "bun:test";
import { adminRpcRefusal, createAdminAuth, isAllowedHost, isSameOrigin } from "../src/admin/auth.ts";
import { createRateHistory } from "../src/admin/rates.ts";
import { formatStatsdLine, formatStatsdNumber } from "../src/admin/statsd.ts";
import { parsePrometheusText, sumOf, valueOf } from "./support/prom-text.ts";

describe("rate history", () => {
  test("per-second rates between samples, ring of fixed size, no negative rates", () => {
    const h = createRateHistory(3);
    expect(h.recent(60_000)).toEqual({});
    h.record(0, { done: 0 });
    h.record(5_000, { done: 50 });
    h.record(10_000, { done: 150 });
    expect(h.series()).toEqual([
      { atMs: 5_000, perSec: { done: 10 } },
      { atMs: 10_000, perSec: { done: 20 } },
    ]);
    expect(h.recent(60_000)).toEqual({ done: 15 }); // whole history when shorter than the window
    expect(h.recent(5_000)).toEqual({ done: 20 });
    h.record(15_000, { done: 10 }); // counter reset (restart): shown as 0, and the oldest sample falls out
    expect(h.series().map((p) => p.atMs)).toEqual([10_000, 15_000]);
    expect(h.series()[1]!.perSec.done).toBe(0);
  });
});

describe("statsd lines", () => {
  test("the reference broker's format: prefix, type, default tags first, then the metric's own", () => {
    expect(formatStatsdLine("taskbroker", "grpc.request", 1, "c", [], [["path", "/a.B/C"]])).toBe(
      "taskbroker.grpc.request:1|c|#path:/a.B/C",
    );
    expect(formatStatsdLine("taskbroker", "upkeep.duration", 0.0125, "h", [["env", "prod"]])).toBe(
      "taskbroker.upkeep.duration:0.0125|h|#env:prod",
    );
    expect(
      formatStatsdLine(
        "taskbroker",
        "x",
        3,
        "g",
        [
          ["a", "1"],
          ["z", "2"],
        ],
        [["k", "v"]],
      ),
    ).toBe("taskbroker.x:3|g|#a:1,z:2,k:v");
    expect(formatStatsdLine("", "x", 1, "c", [], [["bad|key", "v,a:l#"]])).toBe("x:1|c|#bad_key:v_a_l_");
  });
  test("numbers in plain decimal, never in exponent form", () => {
    expect(formatStatsdNumber(3)).toBe("3");
    expect(formatStatsdNumber(0.5)).toBe("0.5");
    expect(formatStatsdNumber(1.5e-7)).toBe("0.00000015");
    expect(formatStatsdNumber(1e21)).toBe("1000000000000000000000");
    expect(formatStatsdNumber(Number.NaN)).toBe("0");
  });
});

describe("admin authentication (auth.ts)", () => {
  test("Bearer token or a live session; the cookie is random, never derived from the token", () => {
    let t = 1_000_000;
    const auth = createAdminAuth({ token: "t0k", sessionTtlMs: 60_000, now: () => t });
    expect(auth.authenticated("Bearer t0k", undefined)).toBe(true);
    expect(auth.authenticated("bearer t0k", undefined)).toBe(true);
    expect(auth.authenticated("Bearer t0", undefined)).toBe(false);
    expect(auth.authenticated("Basic t0k", undefined)).toBe(false);
    expect(auth.authenticated(undefined, "t0k")).toBe(false);
    const a = auth.login("t0k", "10.0.0.1");
    const b = auth.login("t0k", "10.0.0.1");
    expect(a.ok && b.ok).toBe(true);
    expect(a.session).not.toBe(b.session);
    expect(a.session).not.toContain("t0k");
    expect(auth.authenticated(undefined, a.session)).toBe(true);
    t += 60_001; // expired
    expect(auth.authenticated(undefined, a.session)).toBe(false);
    const c = auth.login("t0k", "10.0.0.1");
    auth.logout(c.session);
    expect(auth.authenticated(undefined, c.session)).toBe(false);
  });

  test("failed logins are throttled per client address and overall", () => {
    let t = 0;
    const auth = createAdminAuth({
      token: "right",
      sessionTtlMs: 60_000,
      now: () => t,
      loginBurst: 3,
      loginRefillMs: 10_000,
      loginGlobalPerSec: 5,
    });
    for (let i = 0; i < 3; i++) expect(auth.login("wrong", "10.0.0.1")).toEqual({ ok: false });
    const throttled = auth.login("right", "10.0.0.1"); // even the right token waits
    expect(throttled.ok).toBe(false);
    expect(throttled.retryAfterSec).toBeGreaterThan(0);
    expect(auth.login("right", "10.0.0.2").ok).toBe(true); // another client is not affected
    t += 10_000;
    expect(auth.login("right", "10.0.0.1").ok).toBe(true); // one attempt refilled
    // A guesser spread over many addresses meets the overall limit.
    let refused = 0;
    for (let i = 0; i < 50; i++) if (auth.login("wrong", `10.1.0.${i}`).retryAfterSec !== undefined) refused++;
    expect(refused).toBeGreaterThanOrEqual(45);
  });

  test("without a token AdminService serves loopback peers only; with one, only the Bearer token", () => {
    expect(adminRpcRefusal(undefined, undefined, "127.0.0.1")).toBeNull();
    expect(adminRpcRefusal(undefined, undefined, "::ffff:127.0.0.1")).toBeNull();
    expect(adminRpcRefusal(undefined, undefined, "::1")).toBeNull();
    expect(adminRpcRefusal(undefined, undefined, "10.0.0.7")?.code).toBe("permission_denied");
    expect(adminRpcRefusal("s3", undefined, "127.0.0.1")?.code).toBe("unauthenticated");
    expect(adminRpcRefusal("s3", "Bearer s3", "10.0.0.7")).toBeNull();
  });

  test("Host check: IP literals, localhost and configured names; CSRF: foreign Origin or Sec-Fetch-Site", () => {
    for (const h of ["127.0.0.1:9090", "[::1]:9090", "localhost:9090", "10.2.3.4", "app.localhost"])
      expect(isAllowedHost(h, [])).toBe(true);
    expect(isAllowedHost("evil.example:9090", [])).toBe(false);
    expect(isAllowedHost(undefined, [])).toBe(false);
    expect(isAllowedHost("Broker.Internal:9090", ["broker.internal"])).toBe(true);
    expect(isAllowedHost("anything", ["*"])).toBe(true);
    expect(isSameOrigin("GET", "h:1", "http://evil", "cross-site")).toBe(true);
    expect(isSameOrigin("POST", "127.0.0.1:9090", "http://127.0.0.1:9090", "same-origin")).toBe(true);
    expect(isSameOrigin("POST", "127.0.0.1:9090", undefined, undefined)).toBe(true); // curl, the CLI
    expect(isSameOrigin("POST", "127.0.0.1:9090", "http://evil.example", undefined)).toBe(false);
    expect(isSameOrigin("POST", "127.0.0.1:9090", undefined, "cross-site")).toBe(false);
    expect(isSameOrigin("POST", "127.0.0.1:9090", "null", undefined)).toBe(false);
  });
});

describe("Prometheus text parser", () => {
  test("labels with escapes, special values, timestamps, types", () => {
    const exp = parsePrometheusText(
      [
        "# HELP a_total Things.",
        "# TYPE a_total counter",
        'a_total{x="1",y="q\\"uote\\\\ and\\nnewline"} 3',
        'a_total{x="2"} 4 1700000000000',
        "# TYPE h histogram",
        'h_bucket{le="+Inf"} 5',
        "g NaN",
        "g2 -Inf",
        "",
      ].join("\n"),
    );
    expect(exp.types.get("a_total")).toBe("counter");
    expect(exp.help.get("a_total")).toBe("Things.");
    expect(valueOf(exp, "a_total", { x: "1", y: 'q"uote\\ and\nnewline' })).toBe(3);
    expect(sumOf(exp, "a_total")).toBe(7);
    expect(valueOf(exp, "h_bucket", { le: "+Inf" })).toBe(5);
    expect(Number.isNaN(valueOf(exp, "g")!)).toBe(true);
    expect(valueOf(exp, "g2")).toBe(-Infinity);
  });
  test.each([['a{x="1} 1'], ["a{x=1} 1"], ["a 1 2 3"], ["a notanumber"], ["# TYPE a bogus"]])("rejects %p", (line) => {
    expect(() => parsePrometheusText(line)).toThrow();
  });
  test("parses the real registry output", async () => {
    const { registry } = await import("../src/metrics.ts");
    const exp = parsePrometheusText(await registry.metrics());
    expect(exp.types.get("taskbroker_ingest_total")).toBe("counter");
  });
});
