// Pure parts of the admin server: the rate ring buffer, statsd line building,
// the admin token check, and the Prometheus text parser the other tests use.
import { describe, expect, test } from "bun:test";
import { isAuthorized, isCorrectToken, sessionValue } from "../src/admin/auth.ts";
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
    expect(formatStatsdLine("taskbroker", "grpc.request", 1, "c", [], [["path", "/a.B/C"]])).toBe("taskbroker.grpc.request:1|c|#path:/a.B/C");
    expect(formatStatsdLine("taskbroker", "upkeep.duration", 0.0125, "h", [["env", "prod"]])).toBe("taskbroker.upkeep.duration:0.0125|h|#env:prod");
    expect(formatStatsdLine("taskbroker", "x", 3, "g", [["a", "1"], ["z", "2"]], [["k", "v"]])).toBe("taskbroker.x:3|g|#a:1,z:2,k:v");
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

describe("admin token", () => {
  test("bearer or session cookie, never the raw token as cookie", () => {
    expect(isAuthorized("t0k", "Bearer t0k", undefined)).toBe(true);
    expect(isAuthorized("t0k", "bearer t0k", undefined)).toBe(true);
    expect(isAuthorized("t0k", "Bearer t0", undefined)).toBe(false);
    expect(isAuthorized("t0k", "Basic t0k", undefined)).toBe(false);
    expect(isAuthorized("t0k", undefined, sessionValue("t0k"))).toBe(true);
    expect(isAuthorized("t0k", undefined, "t0k")).toBe(false);
    expect(isAuthorized("t0k", undefined, sessionValue("other"))).toBe(false);
    expect(isCorrectToken("t0k", "t0k")).toBe(true);
    expect(isCorrectToken("t0k", "")).toBe(false);
  });
});

describe("Prometheus text parser", () => {
  test("labels with escapes, special values, timestamps, types", () => {
    const exp = parsePrometheusText(
      [
        "# HELP a_total Things.",
        "# TYPE a_total counter",
        'a_total{x="1",y="q\\"uote\\\\ and\\nnewline"} 3',
        "a_total{x=\"2\"} 4 1700000000000",
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
