// The broker's Prometheus metrics, one registry, named once here so every
// component counts into the same series. Exposed by the admin server (/metrics).
//
// Statsd side: Sentry's taskbroker reports to statsd under its own names and
// tags, which existing dashboards and alerts are built on. Where the same
// event exists here, its Prometheus counter or histogram is declared with a
// statsd twin (twinCounter / twinHistogram below): each inc() or observe()
// also sends the reference broker's line(s) for it, so both change at the same
// moment (after the commit) and from the same event. The sink that sends them
// over UDP is src/admin/statsd.ts; until broker.ts installs it, twins cost a
// null check. The name table is docs/metrics.md.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { AdminService } from "./gen/taskplatform/v1/admin_pb.ts";
import { ConsumerService, WorkerService } from "./gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { DeliveryService } from "./gen/taskplatform/v1/delivery_pb.ts";
import { Health } from "./gen/grpc/health/v1/health_pb.ts";
import { IngestService } from "./gen/taskplatform/v1/ingest_pb.ts";

/** Tags of one statsd line, in the order they are written (after the default tags). */
export type StatsdTags = ReadonlyArray<readonly [string, string]>;

/** One statsd series (name, type and tags fixed): counters sum up, gauges keep the last value, histograms send each sample. */
export interface StatsdSeries {
  add(value: number): void;
}

/** Where twins and direct statsd calls go (src/admin/statsd.ts implements it over UDP). */
export interface StatsdSink {
  /** The series of this type, name and tags (the same object for the same arguments). */
  series(type: "c" | "g" | "h", name: string, tags?: StatsdTags): StatsdSeries;
}

let sink: StatsdSink | null = null;

/** Installs (or, with null, removes) the statsd sink; broker.ts does this at start-up. */
export function setStatsdSink(next: StatsdSink | null): void {
  sink = next;
}

/** Direct statsd calls for events without a Prometheus twin of their own (kill switch, demotion). */
export const statsd = {
  get enabled(): boolean {
    return sink !== null;
  },
  count(name: string, value: number, tags?: StatsdTags): void {
    sink?.series("c", name, tags).add(value);
  },
  gauge(name: string, value: number, tags?: StatsdTags): void {
    sink?.series("g", name, tags).add(value);
  },
  /** A histogram sample (`|h`); durations in seconds, as the reference broker records them. */
  histogram(name: string, value: number, tags?: StatsdTags): void {
    sink?.series("h", name, tags).add(value);
  },
};

type LabelSet = Record<string, string | number | undefined>;
/** The statsd series (name and tags) one Prometheus label set stands for. */
type TwinPlan = (labels: LabelSet) => Array<readonly [string, StatsdTags]>;

/**
 * The statsd series of a label set, resolved once per label object and sink:
 * prom-client children (labels(...)) pass the same object on every call, so
 * the hot paths cost one WeakMap lookup, not a string build per event.
 */
function resolver(type: "c" | "h", plan: TwinPlan) {
  const cache = new WeakMap<object, { sink: StatsdSink; series: StatsdSeries[] }>();
  const none = {};
  return (labels: LabelSet | undefined): StatsdSeries[] => {
    const s = sink!;
    const key = labels ?? none;
    let hit = cache.get(key);
    if (hit === undefined || hit.sink !== s) {
      hit = { sink: s, series: plan(labels ?? {}).map(([name, tags]) => s.series(type, name, tags)) };
      cache.set(key, hit);
    }
    return hit.series;
  };
}

/** Every inc() of `counter` (direct or through a labels() child) also adds to the statsd counters `plan` names. */
export function twinCounter<T extends string>(counter: Counter<T>, plan: TwinPlan): Counter<T> {
  const base = counter.inc.bind(counter) as (labels?: unknown, value?: number) => void;
  const seriesOf = resolver("c", plan);
  // prom-client's labels() binds `this.inc` when called, so children take this one too.
  (counter as unknown as { inc: (labels?: unknown, value?: number) => void }).inc = (
    labels?: unknown,
    value?: number,
  ) => {
    base(labels, value);
    if (sink === null) return;
    const withLabels = typeof labels === "object" && labels !== null;
    const n = withLabels ? (value ?? 1) : ((labels as number | undefined) ?? 1);
    for (const series of seriesOf(withLabels ? (labels as LabelSet) : undefined)) series.add(n);
  };
  return counter;
}

/** Every observe() of `histogram` (direct or through a labels() child) also sends a sample to the statsd histograms `plan` names. */
export function twinHistogram<T extends string>(histogram: Histogram<T>, plan: TwinPlan): Histogram<T> {
  const h = histogram as unknown as {
    observe: (labels: unknown, value?: number) => void;
    labels: (...args: unknown[]) => { observe(value: number): void; startTimer(): () => number };
    labelNames: string[];
  };
  const seriesOf = resolver("h", plan);
  const baseObserve = h.observe.bind(histogram);
  h.observe = (labels: unknown, value?: number) => {
    baseObserve(labels, value);
    if (sink === null) return;
    const withLabels = typeof labels === "object" && labels !== null;
    const v = withLabels ? value! : (labels as number);
    for (const series of seriesOf(withLabels ? (labels as LabelSet) : undefined)) series.add(v);
  };
  // A labels() child observes through a closure of its own, not this.observe: wrap it too.
  const baseLabels = h.labels.bind(histogram);
  h.labels = (...args: unknown[]) => {
    const child = baseLabels(...args);
    const set: LabelSet =
      typeof args[0] === "object" && args[0] !== null
        ? (args[0] as LabelSet)
        : Object.fromEntries(h.labelNames.map((name, i) => [name, args[i] as string]));
    return {
      ...child,
      observe(value: number) {
        child.observe(value);
        if (sink === null) return;
        for (const series of seriesOf(set)) series.add(value);
      },
    };
  };
  return histogram;
}

/** The request path the reference broker tags grpc.request with, from a method's short name. */
const RPC_PATHS = new Map<string, string>();
for (const service of [ConsumerService, WorkerService, IngestService, AdminService, DeliveryService, Health]) {
  for (const method of service.methods) {
    // First service wins: ConsumerService's names are the ones its dashboards use.
    if (!RPC_PATHS.has(method.name)) RPC_PATHS.set(method.name, `/${service.typeName}/${method.name}`);
  }
}
export const rpcPath = (method: string): string => RPC_PATHS.get(method) ?? method;

/** The reference broker's per-method timers, by our method name. */
const RPC_TIMERS: Record<string, string> = {
  GetTask: "grpc_server.get_task.duration",
  SetTaskStatus: "grpc_server.set_status.duration",
  SetBatchActivationStatus: "grpc_server.set_batch_activation_status.duration",
};

/** Its status names (the Debug form of its enum). */
const STATUS_NAME: Record<string, string> = { complete: "Complete", retry: "Retry", failure: "Failure" };

/** Our upkeep actions as its upkeep.cleanup_action kinds and upkeep.task.state_transition states. */
const UPKEEP_TWINS: Record<string, Array<readonly [string, StatsdTags]>> = {
  retried: [["upkeep.task.state_transition", [["state", "retried"]]]],
  deleted: [["upkeep.task.state_transition", [["state", "completed"]]]],
  discarded: [
    ["upkeep.task.state_transition", [["state", "failed"]]],
    ["upkeep.cleanup_action", [["kind", "delete_discarded"]]],
  ],
  deadlettered: [
    ["upkeep.task.state_transition", [["state", "failed"]]],
    ["upkeep.cleanup_action", [["kind", "publish_deadlettered"]]],
  ],
  expired: [["upkeep.cleanup_action", [["kind", "removed_expired"]]]],
  attempts_exceeded: [["upkeep.cleanup_action", [["kind", "mark_processing_attempts_exceeded_as_failure"]]]],
  claim_expired: [["upkeep.cleanup_action", [["kind", "claim_expiration_exceeded"]]]],
  deadline_reset: [["upkeep.cleanup_action", [["kind", "processing_deadline_exceeded"]]]],
  deadline_failed: [["upkeep.cleanup_action", [["kind", "processing_deadline_exceeded"]]]],
  undelayed: [["upkeep.cleanup_action", [["kind", "mark_delay_elapsed_as_pending"]]]],
};

export const registry = new Registry();

// Namespaces come from producers, so a label per namespace is a label per
// whatever a producer sends: 100,000 distinct ones kept 190 MB of series
// alive with an empty store and made /metrics 5 MB. The first
// metrics_max_namespaces distinct namespaces get their own label value; later
// ones are counted under "_other" (and taskbroker_metrics_namespaces_capped
// turns 1). One set for every namespace-labelled metric of the broker.
export const OTHER_NAMESPACE = "_other";
let namespaceCap = 1000;
const namespaceLabels = new Set<string>();

/** Sets metrics_max_namespaces (the broker does at start-up). */
export function setNamespaceLabelCap(max: number): void {
  namespaceCap = max;
}

/** The label value metrics use for `namespace`. */
export function namespaceLabel(namespace: string): string {
  if (namespaceLabels.has(namespace)) return namespace;
  if (namespaceLabels.size >= namespaceCap) {
    namespacesCapped.set(1);
    return OTHER_NAMESPACE;
  }
  namespaceLabels.add(namespace);
  return namespace;
}

export const ingestTotal = new Counter({
  name: "taskbroker_ingest_total",
  help: "Activations offered to ingest, by source (rpc, kafka) and result (accepted, duplicate, duplicate_key, expired, invalid, rejected, killed)",
  labelNames: ["source", "result"] as const,
  registers: [registry],
});

export const eventLoopDelayMax = new Gauge({
  name: "taskbroker_event_loop_delay_max_seconds",
  help: "Longest the event loop was held (a 50 ms timer fired this much late) within the last runtime_metrics_interval",
  registers: [registry],
});

export const eventLoopStalls = new Counter({
  name: "taskbroker_event_loop_stalls_total",
  help: "Times the event loop was held for 100 ms or more (each one of 250 ms or more is also logged as event_loop_stalled)",
  registers: [registry],
});

export const namespacesCapped = new Gauge({
  name: "taskbroker_metrics_namespaces_capped",
  help: 'Set to 1 once more distinct namespaces were seen than metrics_max_namespaces: later ones are counted as namespace="_other"',
  registers: [registry],
});

export const dispatchTotal = new Counter({
  name: "taskbroker_dispatch_total",
  help: "Activations handed to workers (GetTask and fetch_next)",
  labelNames: ["namespace"] as const,
  registers: [registry],
});

export const completionTotal = twinCounter(
  new Counter({
    name: "taskbroker_status_total",
    help: "Worker-reported outcomes, by status (complete, retry, failure, unknown_id)",
    labelNames: ["status"] as const,
    registers: [registry],
  }),
  ({ status }) => {
    if (status === "unknown_id") return [["grpc_server.set_status", [["result", "not_found"]]]];
    const ok = [
      "grpc_server.set_status",
      [
        ["result", "ok"],
        ["status", STATUS_NAME[String(status)] ?? String(status)],
      ],
    ] as const;
    return status === "failure" ? [["grpc_server.set_status.failure", []], ok] : [ok];
  },
);

export const upkeepTotal = twinCounter(
  new Counter({
    name: "taskbroker_upkeep_transitions_total",
    help: "Rows moved by upkeep, by action (retried, deadline_reset, deadline_failed, claim_expired, attempts_exceeded, expired, undelayed, discarded, deadlettered, deleted)",
    labelNames: ["action"] as const,
    registers: [registry],
  }),
  ({ action }) => UPKEEP_TWINS[String(action)] ?? [],
);

export const upkeepDuration = twinHistogram(
  new Histogram({
    name: "taskbroker_upkeep_duration_seconds",
    help: "Duration of one upkeep pass",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  }),
  () => [["upkeep.duration", []]],
);

/** Upkeep's full VACUUM (full_vacuum_on_upkeep), as the reference's upkeep.full_vacuum and its failure counter. */
export const fullVacuumDuration = twinHistogram(
  new Histogram({
    name: "taskbroker_full_vacuum_duration_seconds",
    help: "Duration of one full VACUUM run by upkeep (every write waits for it)",
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  }),
  () => [["upkeep.full_vacuum", []]],
);

export const fullVacuumFailures = twinCounter(
  new Counter({
    name: "taskbroker_full_vacuum_failures_total",
    help: "Full VACUUM runs by upkeep that failed, by SQLite error code (SQLITE_FULL, SQLITE_BUSY, ...)",
    labelNames: ["error"] as const,
    registers: [registry],
  }),
  ({ error }) => [["upkeep.full_vacuum.failure", [["error", String(error)]]]],
);

export const rpcTotal = twinCounter(
  new Counter({
    name: "taskbroker_rpc_requests_total",
    help: "RPCs answered, by method and status code name",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  }),
  ({ method }) => [["grpc.request", [["path", rpcPath(String(method))]]]],
);

export const rpcDuration = twinHistogram(
  new Histogram({
    name: "taskbroker_rpc_duration_seconds",
    help: "RPC latency by method",
    labelNames: ["method"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  }),
  ({ method }) => {
    const timer = RPC_TIMERS[String(method)];
    const request = ["grpc.request.duration", [["path", rpcPath(String(method))]]] as const;
    return timer ? [request, [timer, []]] : [request];
  },
);

export const storeDepth = new Gauge({
  name: "taskbroker_store_depth",
  help: "Rows in the inflight store by state",
  labelNames: ["state"] as const,
  registers: [registry],
});

// --- Operating the broker: gauges refreshed at scrape time
// from the store (src/admin/server.ts), the Kafka lag and paused gauges set by
// src/kafka/pipeline.ts (Kafka message counters live in src/kafka/metrics.ts),
// and the runtime kill switch.

export const storeDepthByNamespace = new Gauge({
  name: "taskbroker_store_namespace_depth",
  help: "Rows in the inflight store by namespace and state",
  labelNames: ["namespace", "state"] as const,
  registers: [registry],
});

export const oldestPendingAge = new Gauge({
  name: "taskbroker_store_oldest_pending_age_seconds",
  help: "Age of the oldest Pending row (0 when none)",
  registers: [registry],
});

export const storeSizeBytes = new Gauge({
  name: "taskbroker_store_size_bytes",
  help: "On-disk size of the inflight store, by file (db, wal)",
  labelNames: ["file"] as const,
  registers: [registry],
});

export const rpcConnections = new Gauge({
  name: "taskbroker_rpc_connections",
  help: "Open connections on the RPC port",
  registers: [registry],
});

export const rpcRefusedTotal = new Counter({
  name: "taskbroker_rpc_refused_total",
  help: "Connections and RPCs the RPC port refused or cut, by reason (per_client, total, evicted_unestablished, evicted_fair_share, handshake_timeout, inflight_rpcs, health_watchers, request_read_timeout)",
  labelNames: ["reason"] as const,
  registers: [registry],
});

export const storeDiskFreeBytes = new Gauge({
  name: "taskbroker_store_disk_free_bytes",
  help: "Free bytes on the filesystem holding the inflight store (ingest pauses below store.min_free_bytes)",
  registers: [registry],
});

export const storeWritable = new Gauge({
  name: "taskbroker_store_writable",
  help: "1 while the inflight store commits, 0 while its commits fail on the disk (health reports NOT_SERVING)",
  registers: [registry],
});

export const kafkaLag = new Gauge({
  name: "taskbroker_kafka_consumer_lag",
  help: "Messages between the committed offset and the high watermark, by topic and partition",
  labelNames: ["topic", "partition"] as const,
  registers: [registry],
});

export const kafkaPaused = new Gauge({
  name: "taskbroker_kafka_paused",
  help: "1 while the topic's consumer is paused because ingest refused a batch (backpressure), else 0",
  labelNames: ["topic"] as const,
  registers: [registry],
});

export const runtimeKillTotal = new Counter({
  name: "taskbroker_runtime_killswitch_total",
  help: "Kill switch decisions, by stage (ingest, stored, retry) and decision (killed, undecodable_kept)",
  labelNames: ["stage", "decision"] as const,
  registers: [registry],
});

export const runtimeConfigReloadTotal = new Counter({
  name: "taskbroker_runtime_config_reload_total",
  help: "Runtime configuration reads, by outcome (loaded, unchanged, invalid, unreadable)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

export const deliveryStreams = new Gauge({
  name: "taskbroker_delivery_streams",
  help: "Streaming delivery (taskplatform.v1.DeliveryService/Deliver) streams open now",
  registers: [registry],
});

export const deliveryStreamsEnded = new Counter({
  name: "taskbroker_delivery_streams_ended_total",
  help: "Streaming delivery streams ended, by status code name (CANCELLED: the worker or its connection went away)",
  labelNames: ["code"] as const,
  registers: [registry],
});

export const runtimeForwardTotal = new Counter({
  name: "taskbroker_runtime_demoted_forward_total",
  help: "Stored activations of demoted namespaces (runtime config) published to their demotion topic, by namespace, topic and result (ok, error)",
  labelNames: ["namespace", "topic", "result"] as const,
  registers: [registry],
});
