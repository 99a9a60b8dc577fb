// The broker's Prometheus metrics, one registry, named once here so every
// component counts into the same series. Exposed by the admin server (/metrics).
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();

export const ingestTotal = new Counter({
  name: "taskbroker_ingest_total",
  help: "Activations offered to ingest, by source (rpc, kafka) and result (accepted, duplicate, expired, invalid, rejected, killed)",
  labelNames: ["source", "result"] as const,
  registers: [registry],
});

export const dispatchTotal = new Counter({
  name: "taskbroker_dispatch_total",
  help: "Activations handed to workers (GetTask and fetch_next)",
  labelNames: ["namespace"] as const,
  registers: [registry],
});

export const completionTotal = new Counter({
  name: "taskbroker_status_total",
  help: "Worker-reported outcomes, by status (complete, retry, failure, unknown_id)",
  labelNames: ["status"] as const,
  registers: [registry],
});

export const upkeepTotal = new Counter({
  name: "taskbroker_upkeep_transitions_total",
  help: "Rows moved by upkeep, by action (retried, deadline_reset, deadline_failed, claim_expired, attempts_exceeded, expired, undelayed, discarded, deadlettered, deleted)",
  labelNames: ["action"] as const,
  registers: [registry],
});

export const upkeepDuration = new Histogram({
  name: "taskbroker_upkeep_duration_seconds",
  help: "Duration of one upkeep pass",
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  registers: [registry],
});

export const rpcTotal = new Counter({
  name: "taskbroker_rpc_requests_total",
  help: "RPCs answered, by method and status code name",
  labelNames: ["method", "code"] as const,
  registers: [registry],
});

export const rpcDuration = new Histogram({
  name: "taskbroker_rpc_duration_seconds",
  help: "RPC latency by method",
  labelNames: ["method"] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
  registers: [registry],
});

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
