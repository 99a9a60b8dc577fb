// The statsd output: the reference broker's metric names and tags (the twins
// declared in src/metrics.ts, the kill switch and demotion calls, and the
// gauges sampled here), sent over UDP the way that broker's exporter sends
// them, so dashboards and alerts built on it keep working:
//   <prefix>.<name>:<value>|<type>|#<default tags>,<tags>
// DogStatsD tags; the default tags (default_metrics_tags) first, sorted by
// key; counters `c`, gauges `g`, histograms `h` with durations in seconds.
// Histogram samples go out one line each, as there; counters are summed and
// gauges keep their last value until the flush (every statsd_interval_ms),
// which a statsd server aggregates the same way and which keeps the hot path
// cheap (measured: ~1 µs per RPC for its three series, against ~6 µs with a
// line per counter increment). Lines are joined by newlines into datagrams
// of at most 1432 bytes (one Ethernet frame), sent when full and at each
// flush. A lost datagram is lost (it is UDP); a send error is logged once.
// The name table is docs/metrics.md.
import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../log.ts";
import { setStatsdSink, type StatsdSeries, type StatsdSink, type StatsdTags } from "../metrics.ts";
import type { InflightStore } from "../store/types.ts";

export interface StatsdOptions {
  /** host:port of the statsd daemon (config statsd_addr). */
  address: string;
  /** Name prefix (config statsd_prefix; the reference broker's is "taskbroker"). */
  prefix: string;
  /** Tags on every line (config default_metrics_tags). */
  defaultTags?: Record<string, string>;
  /** Flush period, ms (config statsd_interval_ms). */
  intervalMs: number;
  log: Logger;
  /** Called before each flush to emit gauges (store depths, file sizes, health). */
  sample?: (sink: StatsdSink) => void;
  /** Largest datagram, bytes. Default 1432 (fits one Ethernet frame). */
  maxDatagramBytes?: number;
}

export interface Statsd {
  sink: StatsdSink;
  /** Convenience for one line (tests, gauges): the series' add. */
  count(name: string, value: number, tags?: StatsdTags): void;
  gauge(name: string, value: number, tags?: StatsdTags): void;
  /** Samples the gauges and sends what is buffered. */
  flush(): Promise<void>;
  /** Removes the sink and closes the socket (after a last flush). */
  stop(): Promise<void>;
}

/** Numbers as the reference broker writes them: integers bare, fractions in plain decimal (never 1e-7). */
export function formatStatsdNumber(value: number): string {
  if (!Number.isFinite(value)) return "0";
  if (Number.isInteger(value)) return Math.abs(value) < 1e21 ? value.toFixed(0) : BigInt(value).toString();
  const text = String(value);
  if (!text.includes("e")) return text;
  return value.toFixed(20).replace(/0+$/, "").replace(/\.$/, "");
}

/** Tag keys and values must not break the line format. */
const clean = (text: string) => text.replace(/[|,#\n:]/g, "_");

/** One line; pure. */
export function formatStatsdLine(
  prefix: string,
  name: string,
  value: number,
  type: "c" | "g" | "h",
  defaultTags: StatsdTags,
  tags: StatsdTags = [],
): string {
  const all = defaultTags.length === 0 ? tags : [...defaultTags, ...tags];
  const tagText = all.length === 0 ? "" : `|#${all.map(([k, v]) => `${clean(k)}:${clean(v)}`).join(",")}`;
  return `${prefix ? `${prefix}.` : ""}${name}:${formatStatsdNumber(value)}|${type}${tagText}`;
}

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`statsd_addr ${address}: expected host:port`);
  }
  return { host, port };
}

export function startStatsd(opts: StatsdOptions): Statsd {
  const { host, port } = splitAddress(opts.address);
  const maxBytes = opts.maxDatagramBytes ?? 1432;
  const defaultTags: StatsdTags = Object.entries(opts.defaultTags ?? {}).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  let socket: Socket | null = null;
  let target: { address: string; family: 4 | 6 } | null = isIP(host)
    ? { address: host, family: isIP(host) as 4 | 6 }
    : null;
  let warned = false;
  const warnOnce = (event: string, error: unknown) => {
    if (warned) return;
    warned = true;
    opts.log.warn(event, { address: opts.address, error });
  };

  // The name is resolved once (as the reference broker does), again after a failure.
  const resolve = async () => {
    if (target) return target;
    try {
      const r = await lookup(host);
      target = { address: r.address, family: r.family === 6 ? 6 : 4 };
    } catch (err) {
      warnOnce("statsd_resolve_failed", err);
    }
    return target;
  };

  // Lines waiting for the next datagram, and their length with separators.
  let lines: string[] = [];
  let bytes = 0;
  let queued: string[] = [];
  let inFlight = 0;
  const drained: Array<() => void> = [];
  const send = (payload: string) => {
    if (!target) {
      queued.push(payload);
      if (queued.length > 64) queued = queued.slice(-64); // bounded while the name does not resolve
      return;
    }
    if (!socket) {
      socket = createSocket(target.family === 6 ? "udp6" : "udp4");
      socket.unref();
    }
    inFlight++;
    socket.send(payload, port, target.address, (err) => {
      if (err) warnOnce("statsd_send_failed", err);
      if (--inFlight === 0) for (const done of drained.splice(0)) done();
    });
  };
  const sendLines = () => {
    if (lines.length === 0) return;
    send(lines.join("\n"));
    lines = [];
    bytes = 0;
  };
  const add = (line: string) => {
    if (lines.length > 0 && bytes + 1 + line.length > maxBytes) sendLines();
    bytes += (lines.length > 0 ? 1 : 0) + line.length;
    lines.push(line);
  };

  // Every series once: its line's fixed parts built at creation.
  const counters: Array<{ head: string; tail: string; sum: number }> = [];
  const gauges: Array<{ head: string; tail: string; value: number; set: boolean }> = [];
  const byKey = new Map<string, StatsdSeries>();
  const lineParts = (name: string, type: "c" | "g" | "h", tags: StatsdTags | undefined) => {
    const sample = formatStatsdLine(opts.prefix, name, 0, type, defaultTags, tags);
    const colon = sample.indexOf(":", opts.prefix.length + name.length);
    return { head: sample.slice(0, colon + 1), tail: sample.slice(colon + 2) };
  };
  const sink: StatsdSink = {
    series(type, name, tags) {
      const key = `${type}\u0000${name}\u0000${tags ? tags.map(([k, v]) => `${k}\u0001${v}`).join("\u0002") : ""}`;
      let series = byKey.get(key);
      if (series) return series;
      const { head, tail } = lineParts(name, type, tags);
      if (type === "c") {
        const c = { head, tail, sum: 0 };
        counters.push(c);
        series = { add: (n) => void (c.sum += n) };
      } else if (type === "g") {
        const g = { head, tail, value: 0, set: false };
        gauges.push(g);
        series = {
          add: (v) => {
            g.value = v;
            g.set = true;
          },
        };
      } else {
        series = { add: (v) => add(head + formatStatsdNumber(v) + tail) };
      }
      byKey.set(key, series);
      return series;
    },
  };

  const flush = async () => {
    try {
      opts.sample?.(sink);
    } catch (err) {
      opts.log.warn("statsd_sample_failed", { error: err });
    }
    for (const c of counters) {
      if (c.sum === 0) continue;
      add(c.head + formatStatsdNumber(c.sum) + c.tail);
      c.sum = 0;
    }
    for (const g of gauges) {
      if (!g.set) continue;
      add(g.head + formatStatsdNumber(g.value) + g.tail);
      g.set = false;
    }
    await resolve();
    if (target && queued.length > 0) {
      const pending = queued;
      queued = [];
      for (const p of pending) send(p);
    }
    sendLines();
  };

  const timer = setInterval(() => void flush(), Math.max(10, opts.intervalMs));
  timer.unref?.();
  setStatsdSink(sink);
  void resolve();
  opts.log.info("statsd_enabled", {
    address: opts.address,
    prefix: opts.prefix,
    interval_ms: opts.intervalMs,
    default_tags: defaultTags.length,
  });
  let stopped = false;
  return {
    sink,
    count: (name, value, tags) => sink.series("c", name, tags).add(value),
    gauge: (name, value, tags) => sink.series("g", name, tags).add(value),
    flush,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await flush();
      setStatsdSink(null);
      // The last datagrams leave before the socket closes.
      if (inFlight > 0) await new Promise<void>((r) => drained.push(r));
      socket?.close();
    },
  };
}

/**
 * The reference broker's per-pass gauges, sampled at each flush: rows by state
 * (untagged here: this store does not count per Kafka partition), the age of
 * the oldest pending row, the file sizes, and upkeep health as a count
 * (killswitched while health_check_killswitched holds health up).
 */
export function sampleStoreGauges(
  sink: StatsdSink,
  store: Pick<InflightStore, "counts" | "oldestPendingReceivedAtMs" | "sizeBytes">,
  upkeepHealth: "healthy" | "unhealthy" | "killswitched",
  nowMs = Date.now(),
): void {
  const s = {
    gauge: (name: string, value: number) => sink.series("g", name).add(value),
    count: (name: string, value: number, tags: StatsdTags) => sink.series("c", name, tags).add(value),
  };
  const c = store.counts();
  s.gauge("upkeep.current_pending_tasks", c.pending);
  s.gauge("upkeep.current_claimed_tasks", c.claimed);
  s.gauge("upkeep.current_processing_tasks", c.processing);
  s.gauge("upkeep.current_delayed_tasks", c.delay);
  const oldest = store.oldestPendingReceivedAtMs();
  s.gauge("upkeep.pending_activation.max_lag.sec", oldest === null ? 0 : Math.max(0, (nowMs - oldest) / 1000));
  const size = store.sizeBytes();
  s.gauge("upkeep.db_file_size.bytes", size.db);
  s.gauge("upkeep.wal_file_size.bytes", size.wal);
  s.count("upkeep.health", 1, [["status", upkeepHealth]]);
}
