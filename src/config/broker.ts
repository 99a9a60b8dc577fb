// The broker's configuration: one zod schema, fully defaulted, whose keys are
// exactly the documented names (snake_case, `__` nesting in the environment),
// so TASKBROKER_STORE__SQLITE__PATH is `store.sqlite.path` and there is no
// rename table to keep in step. Loading (env, YAML, flat aliases) is in load.ts;
// the value types shared with the other commands' schemas are in types.ts.
import { z } from "zod";
import { bool, count, duration, port, seconds, stringList } from "./types.ts";

/** Typed header decoders of header-mapped dispatch (the post-process forwarder's decode_* helpers). */
export const headerDecoderNames = ["string", "optional_string", "int", "optional_int", "bool"] as const;
const headerKwargsShape = z.record(z.string(), z.record(z.string(), z.enum(headerDecoderNames)));
/** operation -> kwarg name (= header name) -> decoder; a JSON object string in the environment. */
const headerKwargs = z.union([headerKwargsShape, z.string()]).transform((v, ctx) => {
  if (typeof v !== "string") return v;
  try {
    const parsed = headerKwargsShape.safeParse(JSON.parse(v));
    if (parsed.success) return parsed.data;
  } catch {}
  ctx.addIssue({ code: "custom", message: 'a JSON object such as {"insert":{"event_id":"string","group_id":"optional_int"}}' });
  return z.NEVER;
}).meta({ expect: 'a JSON object such as {"insert":{"event_id":"string","group_id":"optional_int"}}' });

export const kafkaClusterSchema = z.object({
  /** Bootstrap servers, comma separated host:port. */
  address: z.string().min(1).describe('Bootstrap servers, comma separated host:port.'),
  security_protocol: z.enum(["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]).default("plaintext").describe('Kafka security protocol.'),
  sasl_mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"]).optional().describe('SASL mechanism when the protocol uses SASL.'),
  sasl_username: z.string().optional().describe('SASL user name.'),
  /** Secret: never logged. */
  sasl_password: z.string().optional().describe('SASL password (secret, never logged).'),
  ssl_ca_location: z.string().optional().describe('Path of the CA certificate (PEM).'),
  ssl_certificate_location: z.string().optional().describe('Path of the client certificate (PEM).'),
  ssl_key_location: z.string().optional().describe('Path of the client private key (PEM).'),
});

export const kafkaTopicSchema = z.object({
  cluster: z.string().default("default").describe('Name of the cluster (a key of kafka_clusters) holding the topic.'),
  /** Consumer group; default "taskbroker-<topic>". */
  consumer_group: z.string().optional().describe('Consumer group; default taskbroker-<topic>.'),
  /** Whether this broker consumes the topic (false: produce-only, e.g. retry/DLQ on another pool). */
  consume: bool.default(true).describe('Whether this broker consumes the topic (false: produce only).'),
  session_timeout_ms: duration(1).optional().describe('Consumer session timeout.'),
  auto_offset_reset: z.enum(["earliest", "latest"]).optional().describe('Where a new consumer group starts reading.'),
  partitions: count.default(1).describe('Partitions when the topic is created (create_missing_topics).'),
  /** Raw topic: messages are not TaskActivations; see broker.md "Raw topics". */
  raw: z
    .object({
      application: z.string().min(1).describe('Raw topic: application of the activations built from its messages.'),
      namespace: z.string().min(1).describe('Raw topic: namespace of the built activations.'),
      taskname: z.string().min(1).describe('Raw topic: task name of the built activations.'),
      processing_deadline_duration: z.coerce.number().int().min(0).default(10).describe('Raw topic: processing deadline of the built activations, seconds.'),
      expires: z.coerce.number().int().min(0).optional().describe('Raw topic: expiry of the built activations, seconds.'),
      /** "payload" (msgpack bin of the payload) or "headers" (header-mapped kwargs). */
      mode: z.enum(["payload", "headers"]).default("payload").describe('Raw topic: kwargs from the payload or from mapped headers.'),
      /** Header-mapped dispatch: the value of the `version` header this topic understands. */
      header_version: z.coerce.number().int().default(1).describe('Raw topic, headers mode: the expected value of the version header.'),
      header_kwargs: headerKwargs.default({}).describe('Raw topic, headers mode: operation -> kwarg/header name -> string|optional_string|int|optional_int|bool.'),
      /** How the payload is decoded when headers are missing or malformed. */
      payload_fallback: z.enum(["auto", "json", "msgpack"]).default("auto").describe('Raw topic, headers mode: payload decoding when headers fail (auto tries JSON then msgpack).'),
    })
    .optional(),
});

export const brokerConfigSchema = z.object({
  grpc_port: port.default(50051).describe('Port serving gRPC, Connect and gRPC-Web (0 picks a free port).'),
  grpc_host: z.string().default("0.0.0.0").describe('Address the RPC port listens on.'),
  /** Secrets for request signing; the first signs outbound calls. Never logged. */
  grpc_shared_secret: stringList.default([]).describe('Request-signing secrets, e.g. ["new","old"]; the first signs outbound calls (secret).'),
  /** Largest accepted request or response message, bytes. */
  grpc_max_message_bytes: count.default(16 * 1024 * 1024).describe('Largest accepted request or response message, bytes.'),
  /** Admin HTTP (metrics, health, dashboard); 0 disables. */
  admin_port: port.default(0).describe('Admin HTTP port (metrics, health, dashboard); 0 disables.'),
  admin_token: z.string().optional().describe('Bearer token required by the admin HTTP port (secret).'),
  admin_host: z.string().default("0.0.0.0").describe("Address the admin HTTP port listens on."),
  /** With admin_port 0: true serves admin HTTP on a free port (tests); false disables it. */
  admin_enabled: bool.default(false).describe("Serve admin HTTP even with admin_port 0 (then on a free port)."),
  statsd_address: z.string().optional().describe("host:port to send metrics to over UDP statsd; unset disables."),
  statsd_prefix: z.string().default("taskbroker").describe("Prefix of statsd metric names."),
  statsd_interval_ms: duration(1).default(10_000).describe("How often metrics are flushed to statsd."),
  /** "pull" (GetTask) or "push" (broker calls WorkerService.PushTask). */
  delivery_mode: z.enum(["pull", "push"]).default("pull").describe('pull: workers call GetTask; push: broker calls WorkerService.PushTask.'),
  /** Push mode: the workers' push ports (WorkerService.PushTask). */
  push_worker_addresses: stringList
    .meta({ expect: 'a list of worker host:port addresses such as ["127.0.0.1:50052"]' })
    .default([])
    .describe('Push mode: worker push ports as host:port, e.g. ["10.0.0.5:50052"]; required when delivery_mode is push.'),
  push_concurrency: count.default(16).describe('Push mode: most PushTask calls in flight to one worker at a time.'),
  push_callback_address: z
    .string()
    .regex(/^([^\s:]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/, "host:port")
    .optional()
    .describe("Push mode: this broker's host:port as workers reach it, sent with each push so results come back here; default the bound host (or this machine's name) and port."),
  store: z
    .object({
      sqlite: z
        .object({
          path: z.string().default("./taskbroker-inflight.sqlite").describe('SQLite file of the inflight store.'),
          /** "normal" survives kill -9 (WAL); "full" also survives power loss. */
          synchronous: z.enum(["normal", "full"]).default("normal").describe('normal survives kill -9 (WAL); full also survives power loss.'),
        })
        .prefault({}),
      max_pending_count: count.default(2048).describe('Backpressure: most Pending rows before ingest pauses.'),
      max_delay_count: count.default(8192).describe('Backpressure: most Delay rows before ingest pauses.'),
      max_processing_count: count.default(2048).describe('Backpressure: most Processing+Claimed rows before ingest pauses.'),
      /** Bytes; ingest stops when the database reaches it. */
      max_size: count.default(3_000_000_000).describe('Backpressure: database size in bytes at which ingest pauses.'),
      processing_deadline_grace_sec: seconds().default(3).describe('Seconds added to every processing deadline.'),
      max_processing_attempts: count.default(5).describe('Deadline resets after which a Pending row becomes Failure.'),
      /** Push mode: how long a Claimed row may wait for delivery. */
      claim_lease_ms: duration(1).default(5000).describe('Push mode: how long a Claimed row may wait for delivery.'),
      /** Longest a claim/status waits to share a transaction with others. */
      group_commit_window_ms: duration(1).default(0).describe('Longest a claim or status update waits to share a transaction.'),
    })
    .prefault({}),
  max_delayed_task_allowed_sec: seconds().default(3600).describe("Cap on an activation's delay, seconds."),
  upkeep_task_interval_ms: duration(1).default(1000).describe('How often upkeep runs (retries, deadlines, expiry, delays, dead letters).'),
  upkeep_deadline_reset_skip_after_startup_sec: seconds().default(60).describe('Seconds after start-up during which processing deadlines are not reset.'),
  /** Named health service goes NOT_SERVING when upkeep has not completed for this long. */
  upkeep_unhealthy_after_ms: duration(1).default(5000).describe('Health goes NOT_SERVING when upkeep has not completed for this long.'),
  /** Graceful shutdown: longest wait for in-flight RPCs to drain. */
  shutdown_drain_ms: duration(1).default(10_000).describe('On SIGTERM, longest wait for in-flight RPCs to finish.'),
  kafka_clusters: z.record(z.string(), kafkaClusterSchema).default({}),
  kafka_topics: z.record(z.string(), kafkaTopicSchema).default({}),
  kafka_deadletter_topic: z.string().default("taskworker-dlq").describe('Topic receiving dead letters when Kafka is configured.'),
  kafka_retry_topic: z.string().optional().describe('Topic receiving retries; default the single consumed topic, required with several.'),
  kafka_create_missing_topics: bool.default(false).describe('Create declared topics at start-up.'),
  kafka_batch_max_rows: count.default(256).describe('Kafka ingest batch: most activations per durable batch.'),
  kafka_batch_max_bytes: count.default(16 * 1024 * 1024).describe('Kafka ingest batch: most bytes per durable batch.'),
  kafka_batch_max_ms: duration(1).default(1000).describe('Kafka ingest batch: longest a batch waits to fill.'),
  runtime_config_path: z.string().optional().describe('Hot-reloaded YAML with kill switches and demoted namespaces.'),
  runtime_config_reload_ms: duration(1).default(60_000).describe('How often the runtime config file is re-read.'),
  log_format: z.enum(["text", "json"]).default("text").describe('Log line format.'),
  /** Minimum level: trace, debug, info, warn, error. */
  log_filter: z.enum(["trace", "debug", "info", "warn", "error"]).default("info").describe('Minimum log level.'),
}).superRefine((c, ctx) => {
  // Cross-field: push delivery needs somewhere to push to (one-line error through load.ts).
  if (c.delivery_mode !== "push") return;
  if (c.push_worker_addresses.length === 0) {
    ctx.addIssue({ code: "custom", path: ["push_worker_addresses"], message: 'worker host:port addresses such as ["127.0.0.1:50052"] when TASKBROKER_DELIVERY_MODE=push' });
    return;
  }
  const bad = c.push_worker_addresses.find((a) => !/^[^\s:]+:\d{1,5}$/.test(a) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(a));
  if (bad !== undefined) ctx.addIssue({ code: "custom", path: ["push_worker_addresses"], message: `host:port addresses; "${bad}" is not one` });
});

export type BrokerConfig = z.output<typeof brokerConfigSchema>;
export type KafkaTopicConfig = z.output<typeof kafkaTopicSchema>;
export type KafkaClusterConfig = z.output<typeof kafkaClusterSchema>;
