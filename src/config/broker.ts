// The broker's configuration: one zod schema, fully defaulted, whose keys are
// exactly the documented names (snake_case, `__` nesting in the environment),
// so TASKBROKER_STORE__SQLITE__PATH is `store.sqlite.path`. Every setting of
// the reference broker (taskbroker 0.20.20) is here under its own name with
// its default; settings that cannot have an effect here say why (meta
// `ignored`, listed in --help, docs/configuration.md and the start-up log).
// Our own settings keep their names. Loading (env, YAML, the reference's
// deprecated flat names, the legacy Kafka form) is in load.ts; the resolved
// Kafka plan (groups, retry and dead-letter routing) is in kafka.ts; the value
// types shared with the other commands' schemas are in types.ts.
import { z } from "zod";
import { parseLogFilter } from "../log.ts";
import { ADDRESS, bool, count, duration, port, seconds, stringList, stringMap } from "./types.ts";

/** Typed header decoders of header-mapped dispatch (the post-process forwarder's decode_* helpers). */
export const headerDecoderNames = ["string", "optional_string", "int", "optional_int", "bool"] as const;
const headerKwargsShape = z.record(z.string(), z.record(z.string(), z.enum(headerDecoderNames)));
/** operation -> kwarg name (= header name) -> decoder; a JSON object string in the environment. */
const headerKwargs = z
  .union([headerKwargsShape, z.string()])
  .transform((v, ctx) => {
    if (typeof v !== "string") return v;
    try {
      const parsed = headerKwargsShape.safeParse(JSON.parse(v));
      if (parsed.success) return parsed.data;
    } catch {}
    ctx.addIssue({
      code: "custom",
      message: 'a JSON object such as {"insert":{"event_id":"string","group_id":"optional_int"}}',
    });
    return z.NEVER;
  })
  .meta({ expect: 'a JSON object such as {"insert":{"event_id":"string","group_id":"optional_int"}}' });

/** An enum spelled in any case (`SASL_SSL`, `sasl_ssl`), with synonyms; the output is the lower-case canonical value. */
function anyCase<const T extends string>(values: readonly T[], synonyms: Record<string, T> = {}) {
  const expect = `one of ${values.join(", ")} (any case)`;
  return z
    .string()
    .transform((v, ctx) => {
      const s = v.trim().toLowerCase();
      const hit = (values as readonly string[]).includes(s) ? (s as T) : synonyms[s];
      if (hit !== undefined) return hit;
      ctx.addIssue({ code: "custom", message: expect });
      return z.NEVER;
    })
    .meta({ expect });
}

const nonNegative = z.coerce.number().int().min(0);
const NOT_POSTGRES = "the store is SQLite; the Postgres adapter does not exist here";
const NO_TOKIO = "there is no Tokio runtime here; the event loop's health shows in the RPC latency metrics";

export const kafkaClusterSchema = z.object({
  address: z.string().min(1).describe("Bootstrap servers, comma separated host:port."),
  security_protocol: anyCase(["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])
    .default("plaintext")
    .describe("Kafka security protocol (librdkafka's security.protocol; PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)."),
  sasl_mechanism: anyCase(["plain", "scram-sha-256", "scram-sha-512"])
    .optional()
    .describe("SASL mechanism when the protocol uses SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)."),
  sasl_username: z.string().optional().describe("SASL user name."),
  sasl_password: z.string().optional().describe("SASL password."),
  ssl_ca_location: z.string().optional().describe("Path of the CA certificate (PEM)."),
  ssl_certificate_location: z.string().optional().describe("Path of the client certificate (PEM)."),
  ssl_key_location: z.string().optional().describe("Path of the client private key (PEM)."),
});

export const kafkaTopicSchema = z.object({
  cluster: z.string().default("default").describe("Name of the cluster (a key of kafka_clusters) holding the topic."),
  consumer_group: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Consumer group; several topics may share one (one consumer reads them all); default taskbroker-<topic>.",
    ),
  produce_only: bool
    .default(false)
    .describe("Only produced to (retry or dead-letter topic), never consumed; its consumer_group is not used."),
  consumer_disabled: bool
    .default(false)
    .describe(
      "Counts as a consumed topic, but no consumer joins its group: the broker checks the topic exists and reads nothing.",
    ),
  consume: bool.optional().describe("Older name of ours: consume: false is produce_only: true."),
  session_timeout_ms: duration(1)
    .optional()
    .describe("Consumer session timeout, ms; default kafka_session_timeout_ms."),
  auto_commit_interval_ms: duration(1)
    .optional()
    .describe("How often consumed offsets are committed, ms; default kafka_auto_commit_interval_ms."),
  auto_offset_reset: anyCase(["earliest", "latest"], {
    smallest: "earliest",
    beginning: "earliest",
    largest: "latest",
    end: "latest",
  })
    .optional()
    .describe("Where a consumer group without a committed offset starts; default kafka_auto_offset_reset."),
  partitions: count
    .optional()
    .describe("Partitions when create_missing_topics creates the topic; default default_topic_partitions."),
  /** Ours (upstream's producer never compresses): codec of the batches this broker produces to the topic. */
  compression_type: anyCase(["none", "gzip", "snappy", "lz4", "zstd"], {})
    .default("none")
    .describe(
      "Ours: compression of the batches the broker produces to this topic (retries, dead letters, demoted namespaces): none, gzip, snappy, lz4 or zstd, as librdkafka's compression.type; default none, as the reference broker's producer. Consumed batches may use any codec.",
    ),
  /** Raw topic: messages are not TaskActivations; see docs/spec/broker.md "Raw topics". */
  raw: z
    .object({
      application: z.string().min(1).describe("Raw topic: application of the activations built from its messages."),
      namespace: z.string().min(1).describe("Raw topic: namespace of the built activations."),
      taskname: z.string().min(1).describe("Raw topic: task name of the built activations."),
      processing_deadline_duration: z.coerce
        .number()
        .int()
        .min(0)
        .max(65535)
        .default(10)
        .describe("Raw topic: processing deadline of the built activations, seconds."),
      compression_level: z.coerce
        .number()
        .int()
        .min(-1)
        .max(22)
        .default(3)
        .describe("Raw topic: zstd level of the built activations' parameters; -1 leaves them uncompressed."),
      expires: z.coerce
        .number()
        .int()
        .min(0)
        .optional()
        .describe("Raw topic: expiry of the built activations, seconds."),
      mode: z
        .enum(["payload", "headers"])
        .default("payload")
        .describe("Raw topic: kwargs from the payload or from mapped headers."),
      header_version: z.coerce
        .number()
        .int()
        .default(1)
        .describe("Raw topic, headers mode: the expected value of the version header."),
      header_kwargs: headerKwargs
        .default({})
        .describe(
          "Raw topic, headers mode: operation -> kwarg/header name -> string|optional_string|int|optional_int|bool.",
        ),
      payload_fallback: z
        .enum(["auto", "json", "msgpack"])
        .default("auto")
        .describe("Raw topic, headers mode: payload decoding when headers fail (auto tries JSON then msgpack)."),
    })
    .optional(),
});

const logFilter = z
  .string()
  .transform((v, ctx) => {
    const parsed = parseLogFilter(v);
    if (!("problem" in parsed)) return v;
    ctx.addIssue({ code: "custom", message: `directives such as "info,librdkafka=warn,h2=off" (${parsed.problem})` });
    return z.NEVER;
  })
  .meta({ expect: 'directives such as "info,librdkafka=warn,h2=off": a level, then target=level pairs' });

const pgSchema = z.object({
  run_migrations: bool.default(false).describe("Postgres: run migrations at start-up.").meta({ ignored: NOT_POSTGRES }),
  host: z.string().default("sentry-postgres-1").describe("Postgres: host.").meta({ ignored: NOT_POSTGRES }),
  port: port.default(5432).describe("Postgres: port.").meta({ ignored: NOT_POSTGRES }),
  ddl_username: z.string().default("postgres").describe("Postgres: user running DDL.").meta({ ignored: NOT_POSTGRES }),
  username: z.string().default("postgres").describe("Postgres: user.").meta({ ignored: NOT_POSTGRES }),
  password: z.string().default("password").describe("Postgres: password.").meta({ ignored: NOT_POSTGRES }),
  ddl_password: z
    .string()
    .default("password")
    .describe("Postgres: password of the DDL user.")
    .meta({ ignored: NOT_POSTGRES }),
  database_name: z.string().default("default").describe("Postgres: database.").meta({ ignored: NOT_POSTGRES }),
  default_database_name: z
    .string()
    .default("postgres")
    .describe("Postgres: database used for migrations.")
    .meta({ ignored: NOT_POSTGRES }),
  query_params: z
    .string()
    .optional()
    .describe("Postgres: extra connection query parameters (key=value&...).")
    .meta({ ignored: NOT_POSTGRES }),
});

export const brokerConfigSchema = z.object({
  sentry_dsn: z
    .string()
    .optional()
    .describe("Sentry DSN for error reporting.")
    .meta({ ignored: "no Sentry SDK here: errors are logged (log_format json for collection)" }),
  sentry_env: z
    .string()
    .optional()
    .describe("Sentry environment of reported errors.")
    .meta({ ignored: "no Sentry SDK here" }),
  traces_sample_rate: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0)
    .describe("Sentry tracing sample rate.")
    .meta({ ignored: "no Sentry SDK here" }),
  log_filter: logFilter
    .default("info,librdkafka=warn,h2=off")
    .describe(
      "Log levels: a default level, then target=level (our components: kafka, kafka_client (the Kafka client library; also librdkafka), rpc, store, upkeep, push, ingest, runtime_config, admin, statsd; off silences).",
    ),
  log_format: z.enum(["text", "json"]).default("text").describe("Log line format."),
  statsd_addr: z
    .string()
    .regex(ADDRESS, "host:port")
    .default("127.0.0.1:8126")
    .describe("host:port receiving metrics over UDP statsd.")
    .meta({ expect: "host:port" }),
  statsd_prefix: z.string().default("taskbroker").describe("Prefix of statsd metric names."),
  metrics_max_namespaces: count
    .default(1000)
    .describe(
      'Distinct namespaces that get their own metric label value (Prometheus and statsd); later ones are counted as namespace="_other".',
    ),
  statsd_interval_ms: duration(1).default(10_000).describe("How often metrics are flushed to statsd."),
  default_metrics_tags: stringMap
    .default({})
    .describe(
      'Tags added to every statsd metric, e.g. {"pool":"ingest"} (or {pool=ingest}, or TASKBROKER_DEFAULT_METRICS_TAGS__POOL=ingest).',
    ),
  grpc_addr: z.string().default("0.0.0.0").describe("Address the RPC port listens on."),
  grpc_port: port.default(50051).describe("Port serving gRPC, Connect and gRPC-Web (0 picks a free port)."),
  grpc_shared_secret: stringList
    .default([])
    .describe('Request-signing secrets, e.g. ["new","old"]; the first signs outbound calls.'),
  grpc_signature_max_age_sec: seconds()
    .default(300)
    .describe(
      "Requests carrying our timestamped signature (taskplatform-timestamp, taskplatform-signature; sent by our clients, not by Sentry's) are accepted only within this many seconds of this broker's clock.",
    ),
  grpc_signature_require_timestamp: bool
    .default(false)
    .describe(
      "Refuse signed requests without our timestamped signature, so no captured request can be replayed later; Sentry's workers do not send it, so only for fleets of our own workers.",
    ),
  grpc_max_message_size: count
    .default(52 * 1024 * 1024)
    .describe(
      "Largest message the broker sends to a worker (PushTask), bytes; a bigger activation is not pushed and goes to upkeep's deadline handling.",
    ),
  grpc_max_message_bytes: count
    .default(16 * 1024 * 1024)
    .describe("Largest request or response the RPC port accepts, bytes."),
  grpc_max_connections: count
    .default(4096)
    .describe(
      "Most open connections on the RPC port; lowered to fit the open-file limit (less 128). When full, the oldest connection still in its handshake is dropped for a newcomer.",
    ),
  grpc_max_connections_per_client: count
    .default(256)
    .describe("Most open connections on the RPC port from one client address."),
  grpc_handshake_timeout_ms: duration(1)
    .default(10_000)
    .describe(
      "A connection must send its HTTP/2 preface and SETTINGS (or an HTTP/1.1 request head) within this long of connecting, or it is closed (slowloris), ms.",
    ),
  grpc_idle_timeout_ms: duration(1)
    .default(300_000)
    .describe(
      "A connection with no RPC in flight for this long is closed (HTTP/2 GOAWAY; clients reconnect on their next call), ms; 0 keeps idle connections.",
    ),
  grpc_request_read_timeout_ms: duration(1)
    .default(30_000)
    .describe(
      "A unary request whose body has not fully arrived within this long of its headers is answered DEADLINE_EXCEEDED and its stream reset, ms.",
    ),
  grpc_max_concurrent_streams: count
    .default(256)
    .describe("Most RPCs in flight on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS; HTTP/2 refuses more)."),
  grpc_max_inflight_rpcs: count
    .default(8192)
    .describe("Most RPCs in flight on the whole RPC port; more are answered RESOURCE_EXHAUSTED."),
  grpc_max_health_watchers: count
    .default(1024)
    .describe(
      "Most grpc.health.v1.Health/Watch streams open at once (at most 8 per connection); more are answered RESOURCE_EXHAUSTED.",
    ),
  admin_port: port.default(0).describe("Admin HTTP port (metrics, health, dashboard); 0 disables."),
  admin_token: z
    .string()
    .optional()
    .describe(
      "Admin token (secret): required as Authorization: Bearer <token> (or a login session) by admin HTTP and by AdminService on the RPC port; unset, both serve this machine only.",
    ),
  admin_host: z
    .string()
    .default("127.0.0.1")
    .describe(
      "Address the admin HTTP port listens on; loopback unless set (0.0.0.0 for every interface: set admin_token too).",
    ),
  admin_allowed_hosts: stringList
    .default([])
    .describe(
      'Host names (besides IP addresses and localhost) requests to admin HTTP may name in their Host header, e.g. ["broker.internal"]; "*" allows any. Requests with the Bearer token may name any.',
    ),
  admin_session_ttl_sec: seconds().default(43_200).describe("How long a dashboard login lasts, seconds."),
  admin_enabled: bool.default(false).describe("Serve admin HTTP even with admin_port 0 (then on a free port)."),
  admin_rate_sample_ms: duration(1)
    .default(5000)
    .describe("Dashboard: how often the rate chart samples the broker's counters (one point per sample), ms."),
  delivery_mode: z
    .enum(["pull", "push"])
    .default("pull")
    .describe("pull: workers call GetTask; push: the broker calls WorkerService.PushTask."),
  worker_map: stringMap
    .optional()
    .describe(
      'Push mode: application -> worker endpoint, e.g. {"sentry":"http://127.0.0.1:50052"}; unset: {"sentry":"http://127.0.0.1:50052"}.',
    ),
  push_worker_addresses: stringList
    .meta({ expect: 'a list of worker host:port addresses such as ["127.0.0.1:50052"]' })
    .default([])
    .describe(
      "Push mode: worker push ports as host:port taking tasks of every application; when set, worker_map is not used.",
    ),
  push_concurrency: count.default(16).describe("Push mode: most PushTask calls in flight to one worker at a time."),
  push_callback_address: z
    .string()
    .regex(ADDRESS, "host:port")
    .optional()
    .describe(
      "Push mode: this broker's host:port as workers reach it, sent with each push so results come back here; default the bound host (or this machine's name) and port.",
    ),
  fetch: z
    .object({
      threads: count
        .default(1)
        .describe("Push mode: fetch loops claiming rows for the push pool (a power of two up to 256).")
        .meta({ ignored: "one push loop claims for every worker here; push_concurrency sets the calls in flight" }),
      backoff: duration(1)
        .default(100)
        .describe("Push mode: wait between claims when no row is pending, ms.")
        .meta({ ignored: "the push loop is woken by ingest and backs off 1 ms to 250 ms when idle" }),
      batch_length: count
        .default(1)
        .describe("Push mode: rows claimed per fetch query.")
        .meta({ ignored: "the push loop claims one row per free call slot" }),
    })
    .prefault({}),
  push: z
    .object({
      threads: count
        .default(1)
        .describe("Push mode: threads making PushTask calls.")
        .meta({ ignored: "PushTask calls are asynchronous on one event loop; push_concurrency bounds them" }),
      timeout: duration(1)
        .default(30_000)
        .describe("Push mode: longest a PushTask call may take, ms (bounded by store.claim_lease_ms)."),
      queue: z
        .object({
          size: count
            .default(1)
            .describe("Push mode: activations queued for the push threads.")
            .meta({ ignored: "claimed rows go straight to a PushTask call; there is no queue" }),
          timeout: duration(1)
            .default(5000)
            .describe("Push mode: longest wait to queue an activation for the push threads, ms.")
            .meta({ ignored: "there is no push queue" }),
        })
        .prefault({}),
      update: z
        .object({
          batched: bool.default(false).describe("Push mode: batch the Claimed -> Processing updates.").meta({
            ignored: "each update is one small transaction, group-committed with others (store.group_commit_window_ms)",
          }),
          batch: z
            .object({
              length: count
                .default(1)
                .describe("Push mode: updates per batch.")
                .meta({ ignored: "see push.update.batched" }),
              size: count
                .default(1)
                .describe("Push mode: batch size in bytes (unused upstream too).")
                .meta({ ignored: "see push.update.batched" }),
              interval: duration(1)
                .default(100)
                .describe("Push mode: longest a batch waits, ms.")
                .meta({ ignored: "see push.update.batched" }),
            })
            .prefault({}),
        })
        .prefault({}),
    })
    .prefault({}),
  batch_status_updates: bool.default(false).describe("Apply SetTaskStatus updates in batches.").meta({
    ignored:
      "status updates are always group-committed here (one UPDATE per status per flush; store.group_commit_window_ms)",
  }),
  status_update_batch_size: count
    .default(1)
    .describe("Status updates per batch.")
    .meta({ ignored: "see batch_status_updates" }),
  status_update_interval_ms: count
    .default(100)
    .describe("Longest a status batch waits, ms.")
    .meta({ ignored: "see batch_status_updates" }),
  store: z
    .object({
      adapter: z
        .enum(["sqlite", "postgres"])
        .default("sqlite")
        .describe("Activation store adapter; only sqlite exists here (postgres is refused at start-up)."),
      pg: pgSchema.prefault({}),
      sqlite: z
        .object({
          path: z.string().default("./taskbroker-inflight.sqlite").describe("SQLite file of the inflight store."),
          synchronous: z
            .enum(["normal", "full"])
            .default("normal")
            .describe("normal survives kill -9 (WAL); full also survives power loss."),
          enable_status_metrics: bool
            .default(true)
            .describe("Export SQLite status metrics.")
            .meta({ ignored: "the store's file and WAL sizes are always exported (taskbroker_store_size_bytes)" }),
          vacuum_page_count: count
            .optional()
            .describe("Free pages reclaimed by each maintenance pass (incremental vacuum); unset: all of them."),
        })
        .prefault({}),
      retry: z
        .object({
          max_retries: nonNegative
            .default(3)
            .describe("Retries of a transient database error.")
            .meta({ ignored: "an embedded SQLite has no transient connection errors; a busy file waits busy_timeout" }),
          delay: duration(1)
            .default(100)
            .describe("Wait between retries of a transient database error, ms.")
            .meta({ ignored: "see store.retry.max_retries" }),
        })
        .prefault({}),
      insert_failure_backoff_ms: duration(1)
        .default(4000)
        .describe("Kafka ingest: wait before retrying a batch whose insert failed, ms."),
      insert_batch_max_length: count.default(256).describe("Kafka ingest batch: most activations per durable batch."),
      insert_batch_max_bytes: count.default(16_000_000).describe("Kafka ingest batch: most bytes per durable batch."),
      insert_batch_max_time_ms: duration(1)
        .default(1000)
        .describe("Kafka ingest batch: longest a batch waits to fill, ms."),
      max_size: count.default(3_000_000_000).describe("Backpressure: database size in bytes at which ingest pauses."),
      min_free_bytes: z.coerce
        .number()
        .int()
        .min(0)
        .default(16 * 1024 * 1024)
        .describe(
          "Backpressure: ingest pauses while the filesystem holding the store has less free space than this (beyond the WAL), bytes; claims and completions keep working, so workers can drain it; 0 disables.",
        ),
      wal_max_bytes: z.coerce
        .number()
        .int()
        .min(1 << 20)
        .default(64 * 1024 * 1024)
        .describe(
          "Bound on the WAL, bytes: the checkpointer restarts the WAL past half of it (writes wait for one checkpoint) and ingest waits past it; the <db>-reserve file written when the disk runs low is 1.25x it. Lower it on small volumes (8 MiB on 100 MiB): a smaller bound costs ingest throughput.",
        ),
      max_pending_count: count.default(2048).describe("Backpressure: most Pending rows before ingest pauses."),
      max_delay_count: count.default(8192).describe("Backpressure: most Delay rows before ingest pauses."),
      max_processing_count: count
        .default(2048)
        .describe("Backpressure: most Processing+Claimed rows before ingest pauses."),
      max_processing_attempts: count.default(5).describe("Deadline resets after which a Pending row becomes Failure."),
      processing_deadline_grace_sec: seconds().default(3).describe("Seconds added to every processing deadline."),
      contention_drain_age_sec: nonNegative
        .default(60)
        .describe("Postgres: age after which any broker drains another's rows.")
        .meta({ ignored: NOT_POSTGRES }),
      claim_lease_ms: duration(1).default(5000).describe("Push mode: how long a Claimed row may wait for delivery."),
      group_commit_window_ms: duration(1)
        .default(0)
        .describe("Longest a claim or status update waits to share a transaction."),
    })
    .prefault({}),
  runtime_config_path: z.string().optional().describe("Hot-reloaded YAML with kill switches and demoted namespaces."),
  runtime_config_reload_ms: duration(1).default(60_000).describe("How often the runtime config file is re-read."),
  upkeep_task_interval_ms: duration(1)
    .default(1000)
    .describe("How often upkeep runs (retries, deadlines, expiry, delays, dead letters)."),
  upkeep_unhealthy_interval_ms: duration(1)
    .default(5000)
    .describe("Health goes NOT_SERVING when upkeep has not completed for this long, ms."),
  health_check_killswitched: bool
    .default(false)
    .describe("Keep the health service SERVING even when upkeep falls behind."),
  upkeep_deadline_reset_skip_after_startup_sec: seconds()
    .default(60)
    .describe("Seconds after start-up during which processing deadlines are not reset."),
  maintenance_task_interval_ms: duration(1)
    .default(6000)
    .describe("How often free pages are reclaimed (incremental vacuum, store.sqlite.vacuum_page_count), ms."),
  full_vacuum_on_start: bool.default(true).describe("VACUUM the database at start-up, before serving."),
  full_vacuum_on_upkeep: bool.default(true).describe("VACUUM the database from upkeep every vacuum_interval_ms."),
  vacuum_interval_ms: duration(1).default(30_000).describe("Interval between two upkeep VACUUMs, ms."),
  runtime_metrics_interval: duration(1)
    .default(1000)
    .describe(
      "Window, ms, over which the event loop's worst delay is published (taskbroker_event_loop_delay_max_seconds); upstream samples the Tokio runtime's metrics this often.",
    ),
  log_async_backtrace: bool.default(false).describe("Log async task dumps from upkeep.").meta({ ignored: NO_TOKIO }),
  canary_tasks: nonNegative
    .default(0)
    .describe("Internal canary tasks (internal:canary_task) stored at start-up for every worker_map application."),
  max_delayed_task_allowed_sec: seconds().default(3600).describe("Cap on an activation's delay, seconds."),
  idempotency_window_sec: seconds()
    .default(3600)
    .describe(
      "How long an activation's taskplatform-idempotency-key header stays claimed after it arrived: a second activation with the same key (and application) within it is dropped at ingest.",
    ),
  shutdown_drain_ms: duration(1).default(10_000).describe("On SIGTERM, longest wait for in-flight RPCs to finish."),
  kafka_clusters: z.record(z.string(), kafkaClusterSchema).default({}),
  kafka_topics: z.record(z.string(), kafkaTopicSchema).default({}),
  kafka_deadletter_topic: z
    .string()
    .min(1)
    .default("taskworker-dlq")
    .describe("Topic receiving dead letters when Kafka is configured."),
  kafka_retry_topic: z
    .string()
    .min(1)
    .optional()
    .describe("Topic receiving retries; default the single consumed topic, required with several or with a raw topic."),
  kafka_long_topic: z
    .string()
    .min(1)
    .default("taskworker-long")
    .describe("Topic a demoted namespace is forwarded to when the runtime config names none."),
  create_missing_topics: bool.default(false).describe("Create declared topics at start-up."),
  default_topic_partitions: count
    .default(1)
    .describe("Partitions of topics created by create_missing_topics (a topic's partitions wins)."),
  kafka_session_timeout_ms: duration(1)
    .default(6000)
    .describe("Consumer session timeout for topics that set none, ms."),
  kafka_auto_commit_interval_ms: duration(1)
    .default(5000)
    .describe("Offset commit interval for topics that set none, ms.")
    .meta({ ignored: "offsets are committed after every durable batch, never later than the interval would" }),
  kafka_auto_offset_reset: anyCase(["earliest", "latest"], {
    smallest: "earliest",
    beginning: "earliest",
    largest: "latest",
    end: "latest",
  })
    .default("latest")
    .describe("Where a consumer group without a committed offset starts, for topics that set none."),
  kafka_send_timeout_ms: duration(1)
    .default(500)
    .describe("Longest wait for Kafka to acknowledge a retry or dead letter, ms."),
  max_message_size: count
    .default(5_000_000)
    .describe("Largest message published to Kafka (retries, dead letters), bytes."),
  raw_namespace: z
    .string()
    .min(1)
    .optional()
    .describe("Legacy raw_mode: namespace of the built activations (the map form uses kafka_topics.<topic>.raw)."),
  raw_application: z.string().min(1).optional().describe("Legacy raw_mode: application of the built activations."),
  raw_taskname: z.string().min(1).optional().describe("Legacy raw_mode: task name of the built activations."),
  raw_processing_deadline_duration: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(30)
    .describe("Legacy raw_mode: processing deadline of the built activations, seconds."),
});

export type BrokerConfig = z.output<typeof brokerConfigSchema>;
export type KafkaTopicConfig = z.output<typeof kafkaTopicSchema>;
export type KafkaClusterConfig = z.output<typeof kafkaClusterSchema>;
