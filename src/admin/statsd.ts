// Optional statsd output: every interval, the broker's Prometheus registry is
// flattened into statsd lines over UDP, for deployments that collect with
// statsd/DogStatsD instead of scraping. Counters are sent as deltas since the
// last flush (`|c`), gauges as values (`|g`); labels become DogStatsD tags.
// Histograms send their _sum and _count as counters. Lost datagrams are fine.
import { createSocket } from "node:dgram";
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { Logger } from "../log.ts";
import { registry } from "../metrics.ts";

export interface StatsdOptions {
  /** host:port of the statsd daemon. */
  address: string;
  /** Metric name prefix (config statsd_prefix, default "taskbroker"). */
  prefix: string;
  /** Flush period, ms (config statsd_interval_ms, default 10 000). */
  intervalMs: number;
  log: Logger;
}

type Metric = MetricObjectWithValues<MetricValue<string>>;

function tagsOf(labels: Record<string, string | number>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}:${String(v).replace(/[|,#\n]/g, "_")}`);
  return parts.length ? `|#${parts.join(",")}` : "";
}

/** Pure: statsd lines for one snapshot of the registry, given the previous counter totals. */
export function statsdLines(metrics: Metric[], prefix: string, previous: Map<string, number>): string[] {
  const lines: string[] = [];
  for (const m of metrics) {
    // prom-client declares `type` as an enum but hands out the strings "counter", "gauge", ...
    const type = String(m.type);
    const base = m.name.replace(/^taskbroker_/, "");
    for (const v of m.values) {
      const name = (v as { metricName?: string }).metricName ?? m.name;
      if (type === "histogram" && !/_(sum|count)$/.test(name)) continue; // buckets do not map to statsd
      const statName = `${prefix}.${type === "histogram" ? name.replace(/^taskbroker_/, "") : base}`;
      const tags = tagsOf(v.labels as Record<string, string | number>);
      if (type === "counter" || type === "histogram") {
        const key = `${name}${tags}`;
        const delta = v.value - (previous.get(key) ?? 0);
        previous.set(key, v.value);
        if (delta > 0) lines.push(`${statName}:${delta}|c${tags}`);
      } else if (type === "gauge") {
        lines.push(`${statName}:${v.value}|g${tags}`);
      }
    }
  }
  return lines;
}

export function startStatsdExporter(options: StatsdOptions): { flush(): Promise<void>; stop(): void } {
  const i = options.address.lastIndexOf(":");
  const host = options.address.slice(0, i);
  const port = Number(options.address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0) throw new Error(`statsd_address ${options.address}: expected host:port`);
  const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.unref();
  const previous = new Map<string, number>();
  let warned = false;
  const flush = async () => {
    const lines = statsdLines((await registry.getMetricsAsJSON()) as Metric[], options.prefix, previous);
    // Datagrams of at most ~1400 bytes so they survive a typical MTU.
    let batch = "";
    const send = (payload: string) =>
      socket.send(payload, port, host, (err) => {
        if (err && !warned) {
          warned = true;
          options.log.warn("statsd_send_failed", { address: options.address, error: err });
        }
      });
    for (const line of lines) {
      if (batch.length + line.length + 1 > 1400 && batch) {
        send(batch);
        batch = "";
      }
      batch += (batch ? "\n" : "") + line;
    }
    if (batch) send(batch);
  };
  const timer = setInterval(() => void flush(), options.intervalMs);
  timer.unref?.();
  options.log.info("statsd_enabled", { address: options.address, prefix: options.prefix, interval_ms: options.intervalMs });
  return {
    flush,
    stop() {
      clearInterval(timer);
      socket.close();
    },
  };
}
