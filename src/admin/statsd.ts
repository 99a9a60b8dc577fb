// The statsd output: the reference broker's metric names and tags (the twins
// declared in src/metrics.ts, the kill switch and demotion calls, and the
// gauges sampled here), sent over UDP the way that broker's exporter sends
// them, so dashboards and alerts built on it keep working:
//   <prefix>.<name>:<value>|<type>|#<default tags>,<tags>
// DogStatsD tags; the default tags (default_metrics_tags) first, sorted by
// key; counters `c`, gauges `g`, histograms `h` with durations in seconds;
// lines joined by newlines into datagrams of at most 1024 bytes, sent when
// full and every statsd_interval_ms. A lost datagram is lost (it is UDP); a
// send error is logged once. The name table is docs/metrics.md.
import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../log.ts";
import { setStatsdSink, type StatsdSink, type StatsdTags } from "../metrics.ts";
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
  /** Largest datagram, bytes. Default 1024 (the reference broker's buffer). */
  maxDatagramBytes?: number;
}

export interface Statsd {
  sink: StatsdSink;
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
  const maxBytes = opts.maxDatagramBytes ?? 1024;
  const defaultTags: StatsdTags = Object.entries(opts.defaultTags ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  let socket: Socket | null = null;
  let target: { address: string; family: 4 | 6 } | null = isIP(host) ? { address: host, family: isIP(host) as 4 | 6 } : null;
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

  let buffer = "";
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
  const add = (line: string) => {
    if (buffer.length > 0 && buffer.length + 1 + line.length > maxBytes) {
      send(buffer);
      buffer = "";
    }
    buffer = buffer ? `${buffer}\n${line}` : line;
  };

  const sink: StatsdSink = {
    count: (name, value, tags) => add(formatStatsdLine(opts.prefix, name, value, "c", defaultTags, tags)),
    gauge: (name, value, tags) => add(formatStatsdLine(opts.prefix, name, value, "g", defaultTags, tags)),
    histogram: (name, value, tags) => add(formatStatsdLine(opts.prefix, name, value, "h", defaultTags, tags)),
  };

  const flush = async () => {
    try {
      opts.sample?.(sink);
    } catch (err) {
      opts.log.warn("statsd_sample_failed", { error: err });
    }
    await resolve();
    if (target && queued.length > 0) {
      const pending = queued;
      queued = [];
      for (const p of pending) send(p);
    }
    if (buffer) {
      send(buffer);
      buffer = "";
    }
  };

  const timer = setInterval(() => void flush(), Math.max(10, opts.intervalMs));
  timer.unref?.();
  setStatsdSink(sink);
  void resolve();
  opts.log.info("statsd_enabled", { address: opts.address, prefix: opts.prefix, interval_ms: opts.intervalMs, default_tags: defaultTags.length });
  let stopped = false;
  return {
    sink,
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
  s: StatsdSink,
  store: Pick<InflightStore, "counts" | "oldestPendingReceivedAtMs" | "sizeBytes">,
  upkeepHealth: "healthy" | "unhealthy" | "killswitched",
  nowMs = Date.now(),
): void {
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
