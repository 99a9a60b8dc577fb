// Pure parts of the admin server: the rate ring buffer, statsd line building,
// the admin token check, and the Prometheus text parser the other tests use.
import { describe, expect, test } from "bun:test";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { isAuthorized, isCorrectToken, sessionValue } from "../src/admin/auth.ts";
import { createRateHistory } from "../src/admin/rates.ts";
import { statsdLines } from "../src/admin/statsd.ts";
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
  test("counters as deltas, gauges as values with tags, histograms as sum/count", async () => {
    const r = new Registry();
    const c = new Counter({ name: "taskbroker_x_total", help: "x", labelNames: ["kind"], registers: [r] });
    const g = new Gauge({ name: "taskbroker_depth", help: "d", labelNames: ["state"], registers: [r] });
    const h = new Histogram({ name: "taskbroker_lat_seconds", help: "l", buckets: [1], registers: [r] });
    const prev = new Map<string, number>();
    c.inc({ kind: "a" }, 3);
    g.set({ state: "pending" }, 7);
    h.observe(0.5);
    const first = statsdLines((await r.getMetricsAsJSON()) as never, "tb", prev);
    expect(first).toContain("tb.x_total:3|c|#kind:a");
    expect(first).toContain("tb.depth:7|g|#state:pending");
    expect(first).toContain("tb.lat_seconds_count:1|c");
    expect(first.some((l) => l.includes("bucket"))).toBe(false);
    c.inc({ kind: "a" }, 2);
    const second = statsdLines((await r.getMetricsAsJSON()) as never, "tb", prev);
    expect(second).toContain("tb.x_total:2|c|#kind:a");
    expect(second.some((l) => l.startsWith("tb.lat_seconds_count"))).toBe(false); // no change, no line
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
