// The broker's configuration: one zod schema, fully defaulted, whose keys are
// exactly the documented names (snake_case, `__` nesting in the environment),
// so TASKBROKER_STORE__SQLITE__PATH is `store.sqlite.path` and there is no
// rename table to keep in step. Loading (env, YAML, flat aliases) is in load.ts.
import { z } from "zod";

/** "250ms", "5s", "2m", "1h" or a bare number in the field's own unit. */
export function duration(unitMs: number) {
  return z.union([z.number(), z.string()]).transform((value, ctx) => {
    if (typeof value === "number") return value * unitMs;
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
    if (!m) {
      ctx.addIssue({ code: "custom", message: 'a duration such as "250ms", "5s", "2m" or a number' });
      return z.NEVER;
    }
    const n = Number(m[1]);
    const scale = m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : m[2] === "m" ? 60_000 : m[2] === "h" ? 3_600_000 : unitMs;
    return n * scale;
  });
}

const port = z.coerce.number().int().min(0).max(65535);
const count = z.coerce.number().int().min(1);
const bool = z.union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"])]).transform((v) =>
  typeof v === "boolean" ? v : v === "true" || v === "1" || v === "yes",
);
/** A list given as a JSON array string (`["a","b"]`), a comma list, or a YAML list. */
const stringList = z.union([z.array(z.string()), z.string()]).transform((v, ctx) => {
  if (Array.isArray(v)) return v;
  const s = v.trim();
  if (s === "") return [];
  if (s.startsWith("[")) {
    try {
      const parsed: unknown = JSON.parse(s);
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === "string")) return parsed as string[];
    } catch {}
    ctx.addIssue({ code: "custom", message: 'a JSON array of strings such as ["a","b"]' });
    return z.NEVER;
  }
  return s.split(",").map((x) => x.trim()).filter(Boolean);
});

export const kafkaClusterSchema = z.object({
  /** Bootstrap servers, comma separated host:port. */
  address: z.string().min(1),
  security_protocol: z.enum(["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]).default("plaintext"),
  sasl_mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"]).optional(),
  sasl_username: z.string().optional(),
  /** Secret: never logged. */
  sasl_password: z.string().optional(),
  ssl_ca_location: z.string().optional(),
  ssl_certificate_location: z.string().optional(),
  ssl_key_location: z.string().optional(),
});

export const kafkaTopicSchema = z.object({
  cluster: z.string().default("default"),
  /** Consumer group; default "taskbroker-<topic>". */
  consumer_group: z.string().optional(),
  /** Whether this broker consumes the topic (false: produce-only, e.g. retry/DLQ on another pool). */
  consume: bool.default(true),
  session_timeout_ms: duration(1).optional(),
  auto_offset_reset: z.enum(["earliest", "latest"]).optional(),
  partitions: count.default(1),
  /** Raw topic: messages are not TaskActivations; see broker.md "Raw topics". */
  raw: z
    .object({
      application: z.string().min(1),
      namespace: z.string().min(1),
      taskname: z.string().min(1),
      processing_deadline_duration: z.coerce.number().int().min(0).default(10),
      expires: z.coerce.number().int().min(0).optional(),
      /** "payload" (msgpack bin of the payload) or "headers" (header-mapped kwargs). */
      mode: z.enum(["payload", "headers"]).default("payload"),
    })
    .optional(),
});

export const brokerConfigSchema = z.object({
  grpc_port: port.default(50051),
  grpc_host: z.string().default("0.0.0.0"),
  /** Secrets for request signing; the first signs outbound calls. Never logged. */
  grpc_shared_secret: stringList.default([]),
  /** Largest accepted request or response message, bytes. */
  grpc_max_message_bytes: count.default(16 * 1024 * 1024),
  /** Admin HTTP (metrics, health, dashboard); 0 disables. */
  admin_port: port.default(0),
  admin_token: z.string().optional(),
  /** "pull" (GetTask) or "push" (broker calls WorkerService.PushTask). */
  delivery_mode: z.enum(["pull", "push"]).default("pull"),
  store: z
    .object({
      sqlite: z
        .object({
          path: z.string().default("./taskbroker-inflight.sqlite"),
          /** "normal" survives kill -9 (WAL); "full" also survives power loss. */
          synchronous: z.enum(["normal", "full"]).default("normal"),
        })
        .prefault({}),
      max_pending_count: count.default(2048),
      max_delay_count: count.default(8192),
      max_processing_count: count.default(2048),
      /** Bytes; ingest stops when the database reaches it. */
      max_size: count.default(3_000_000_000),
      processing_deadline_grace_sec: z.coerce.number().int().min(0).default(3),
      max_processing_attempts: count.default(5),
      /** Push mode: how long a Claimed row may wait for delivery. */
      claim_lease_ms: duration(1).default(5000),
      /** Longest a claim/status waits to share a transaction with others. */
      group_commit_window_ms: duration(1).default(0),
    })
    .prefault({}),
  max_delayed_task_allowed_sec: z.coerce.number().int().min(0).default(3600),
  upkeep_task_interval_ms: duration(1).default(1000),
  upkeep_deadline_reset_skip_after_startup_sec: z.coerce.number().min(0).default(60),
  /** Named health service goes NOT_SERVING when upkeep has not completed for this long. */
  upkeep_unhealthy_after_ms: duration(1).default(5000),
  /** Graceful shutdown: longest wait for in-flight RPCs to drain. */
  shutdown_drain_ms: duration(1).default(10_000),
  kafka_clusters: z.record(z.string(), kafkaClusterSchema).default({}),
  kafka_topics: z.record(z.string(), kafkaTopicSchema).default({}),
  kafka_deadletter_topic: z.string().default("taskworker-dlq"),
  kafka_retry_topic: z.string().optional(),
  kafka_create_missing_topics: bool.default(false),
  kafka_batch_max_rows: count.default(256),
  kafka_batch_max_bytes: count.default(16 * 1024 * 1024),
  kafka_batch_max_ms: duration(1).default(1000),
  runtime_config_path: z.string().optional(),
  runtime_config_reload_ms: duration(1).default(60_000),
  log_format: z.enum(["text", "json"]).default("text"),
  /** Minimum level: trace, debug, info, warn, error. */
  log_filter: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
});

export type BrokerConfig = z.output<typeof brokerConfigSchema>;
export type KafkaTopicConfig = z.output<typeof kafkaTopicSchema>;
export type KafkaClusterConfig = z.output<typeof kafkaClusterSchema>;
