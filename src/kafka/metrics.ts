// Kafka-side Prometheus counters, on the shared registry (src/metrics.ts);
// the ones with a statsd twin also send the reference broker's name for the
// same event (docs/metrics.md).
import { Counter } from "prom-client";
import { registry, twinCounter } from "../metrics.ts";

/** Consumer results that the reference broker counts, by its statsd name. */
const CONSUMER_TWINS: Record<string, string> = {
  stored: "consumer.inflight_activation_writer.stored",
  expired: "filter.expired_at_consumer",
};

export const kafkaMessagesTotal = twinCounter(
  new Counter({
    name: "taskbroker_kafka_messages_total",
    help: "Consumed Kafka messages by topic and result (stored, duplicate, expired, invalid, revoked, demoted, reconsumed_elsewhere)",
    labelNames: ["topic", "result"] as const,
    registers: [registry],
  }),
  ({ topic, result }) => {
    const name = CONSUMER_TWINS[String(result)];
    return name ? [[name, [["topic", String(topic)]]]] : [];
  },
);

export const kafkaHeaderDispatchTotal = new Counter({
  name: "taskbroker_kafka_header_dispatch_total",
  help: "Header-mapped raw messages by topic and the path that built their kwargs (headers, payload, failed)",
  labelNames: ["topic", "path"] as const,
  registers: [registry],
});

export const kafkaUndecodableBatchesTotal = new Counter({
  name: "taskbroker_kafka_undecodable_batches_total",
  help: "Fetched record batches that could not be decoded (unknown codec, corrupt compressed data, unparsable records), dead-lettered whole and skipped, by topic and codec",
  labelNames: ["topic", "codec"] as const,
  registers: [registry],
});

export const kafkaPublishTotal = new Counter({
  name: "taskbroker_kafka_publish_total",
  help: "Messages published by kind (retry, deadletter, undecodable, demoted) and result (ok, error, too_large: above max_message_size, never sent)",
  labelNames: ["kind", "result"] as const,
  registers: [registry],
});

export const kafkaDemotedTotal = twinCounter(
  new Counter({
    name: "taskbroker_kafka_demoted_total",
    help: "Activations of demoted namespaces (runtime config) forwarded instead of stored, by consumed topic (from) and destination topic (to)",
    labelNames: ["from", "to"] as const,
    registers: [registry],
  }),
  ({ from }) => [["filter.forward_task_demoted_namespace", [["topic", String(from)]]]],
);

// Paused state and consumer lag are in src/metrics.ts (kafkaPaused, kafkaLag),
// next to the other operator-facing gauges.
