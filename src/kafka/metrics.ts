// Kafka-side Prometheus series, on the shared registry (src/metrics.ts).
import { Counter, Gauge } from "prom-client";
import { registry } from "../metrics.ts";

export const kafkaMessagesTotal = new Counter({
  name: "taskbroker_kafka_messages_total",
  help: "Consumed Kafka messages by topic and result (stored, duplicate, expired, invalid, revoked)",
  labelNames: ["topic", "result"] as const,
  registers: [registry],
});

export const kafkaHeaderDispatchTotal = new Counter({
  name: "taskbroker_kafka_header_dispatch_total",
  help: "Header-mapped raw messages by topic and the path that built their kwargs (headers, payload, failed)",
  labelNames: ["topic", "path"] as const,
  registers: [registry],
});

export const kafkaPublishTotal = new Counter({
  name: "taskbroker_kafka_publish_total",
  help: "Messages published by kind (retry, deadletter, undecodable) and result (ok, error)",
  labelNames: ["kind", "result"] as const,
  registers: [registry],
});

export const kafkaBackpressurePaused = new Gauge({
  name: "taskbroker_kafka_backpressure_paused",
  help: "1 while the topic's consumer is paused because ingest refused a batch (backpressure), else 0",
  labelNames: ["topic"] as const,
  registers: [registry],
});
