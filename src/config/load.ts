// The broker's configuration, resolved once at start-up: defaults, then the
// optional YAML file (-c), then TASKBROKER_* variables, as the reference
// broker (taskbroker 0.20.20) layers them. On top of the generic loader
// (source.ts) this knows the reference's two older forms so an existing
// deployment starts unchanged:
//
// - deprecated flat names (TASKBROKER_DB_PATH, push_timeout_ms, ...), each
//   standing for one current setting. As in the reference, a deprecated name
//   applies only when its current name is set nowhere (file or environment);
//   when both are set the current one wins and the start-up log says so.
// - the legacy single-cluster Kafka form (kafka_cluster, kafka_topic,
//   kafka_consumer_group, kafka_*_sasl/ssl, kafka_deadletter_*, raw_mode),
//   normalised into kafka_clusters / kafka_topics exactly as the reference
//   does (clusters "default" and "deadletter"). It cannot be mixed with the
//   maps (the reference refuses that too). The flat consumer settings
//   (kafka_session_timeout_ms, kafka_auto_offset_reset, ...) are not legacy:
//   they are the defaults of every topic in either form (config/kafka.ts).
//
// Settings that cannot have an effect here are accepted; the ones the user
// set are named once in the start-up notes. Names that exist nowhere are a
// one-line error with a suggestion.
import { brokerConfigSchema, type BrokerConfig } from "./broker.ts";
import { kafkaConfigProblem } from "./kafka.ts";
import {
  ConfigError,
  emptyLayer,
  envLayer,
  envName,
  getPath,
  knownNames,
  mergeLayers,
  setPath,
  showValue,
  unknownVariable,
  validate,
  yamlLayer,
  type Layer,
  type Origin,
} from "./source.ts";
import { ADDRESS } from "./types.ts";
import { SECRET_NAME, settings } from "./walk.ts";

export { ConfigError };
export { kafkaConfigured } from "./kafka.ts";

export const BROKER_PREFIX = "TASKBROKER_";

const p = (dotted: string) => dotted.split(".");

/**
 * Older names, each standing for one current setting: the reference's
 * deprecated options (taskbroker 0.20.20), then older names of ours.
 */
export const FLAT_ALIASES: Readonly<Record<string, readonly string[]>> = {
  // The reference's deprecated store options.
  db_path: p("store.sqlite.path"),
  vacuum_page_count: p("store.sqlite.vacuum_page_count"),
  enable_sqlite_status_metrics: p("store.sqlite.enable_status_metrics"),
  db_query_max_retries: p("store.retry.max_retries"),
  db_query_retry_delay_ms: p("store.retry.delay"),
  database_adapter: p("store.adapter"),
  db_write_failure_backoff_ms: p("store.insert_failure_backoff_ms"),
  db_insert_batch_max_len: p("store.insert_batch_max_length"),
  db_insert_batch_max_size: p("store.insert_batch_max_bytes"),
  db_insert_batch_max_time_ms: p("store.insert_batch_max_time_ms"),
  db_max_size: p("store.max_size"),
  max_pending_count: p("store.max_pending_count"),
  max_delay_count: p("store.max_delay_count"),
  max_processing_count: p("store.max_processing_count"),
  max_processing_attempts: p("store.max_processing_attempts"),
  processing_deadline_grace_sec: p("store.processing_deadline_grace_sec"),
  // ... Postgres options.
  run_migrations: p("store.pg.run_migrations"),
  pg_host: p("store.pg.host"),
  pg_port: p("store.pg.port"),
  pg_ddl_username: p("store.pg.ddl_username"),
  pg_username: p("store.pg.username"),
  pg_password: p("store.pg.password"),
  pg_ddl_password: p("store.pg.ddl_password"),
  pg_database_name: p("store.pg.database_name"),
  pg_default_database_name: p("store.pg.default_database_name"),
  pg_extra_query_params: p("store.pg.query_params"),
  // ... push and fetch pool options (durations in ms).
  push_threads: p("push.threads"),
  push_queue_size: p("push.queue.size"),
  batch_push_updates: p("push.update.batched"),
  push_update_batch_size: p("push.update.batch.length"),
  push_timeout_ms: p("push.timeout"),
  push_queue_timeout_ms: p("push.queue.timeout"),
  push_update_interval_ms: p("push.update.batch.interval"),
  fetch_threads: p("fetch.threads"),
  fetch_batch_size: p("fetch.batch_length"),
  fetch_wait_ms: p("fetch.backoff"),
  // Older names of ours.
  max_size: p("store.max_size"),
  grpc_host: p("grpc_addr"),
  statsd_address: p("statsd_addr"),
  kafka_create_missing_topics: p("create_missing_topics"),
  upkeep_unhealthy_after_ms: p("upkeep_unhealthy_interval_ms"),
  kafka_batch_max_rows: p("store.insert_batch_max_length"),
  kafka_batch_max_bytes: p("store.insert_batch_max_bytes"),
  kafka_batch_max_ms: p("store.insert_batch_max_time_ms"),
};

/** Cluster fields the legacy form spells kafka_<field> and kafka_deadletter_<field>. */
const LEGACY_CLUSTER_FIELDS = [
  "security_protocol",
  "sasl_mechanism",
  "sasl_username",
  "sasl_password",
  "ssl_ca_location",
  "ssl_certificate_location",
  "ssl_key_location",
] as const;

/** The reference's legacy single-cluster Kafka form; cannot be combined with kafka_clusters / kafka_topics. */
export const FLAT_KAFKA = [
  "kafka_cluster",
  "kafka_topic",
  "kafka_consumer_group",
  ...LEGACY_CLUSTER_FIELDS.map((f) => `kafka_${f}`),
  "kafka_deadletter_cluster",
  ...LEGACY_CLUSTER_FIELDS.map((f) => `kafka_deadletter_${f}`),
  "raw_mode",
] as const;

/** Names of older reference releases with no current counterpart: accepted, noted as without effect. */
export const IGNORED_REFERENCE_NAMES = ["pg_url", "kafka_consume_retry_topic"] as const;

const FLAT_NAMES = new Set<string>([...Object.keys(FLAT_ALIASES), ...FLAT_KAFKA, ...IGNORED_REFERENCE_NAMES]);

/** The reference's defaults of the legacy form (same group, so committed offsets carry over). */
const LEGACY_DEFAULT_TOPIC = "taskworker";
const LEGACY_DEFAULT_GROUP = "taskworker";
const LEGACY_DEFAULT_ADDRESS = "127.0.0.1:9092";

/** The reference's worker_map when none is given. */
export const DEFAULT_WORKER_MAP: Readonly<Record<string, string>> = { sentry: "http://127.0.0.1:50052" };

export interface ResolvedConfig {
  config: BrokerConfig;
  /** Lines for the start-up log: settings without effect here, older names overridden, deprecations. */
  notes: string[];
}

/** Raw flat values of one source: lower-case name -> origin. */
type FlatValues = Map<string, Origin>;

const short = (o: Origin) => o.label.split(" ")[0]!;

/** Whether `path` (or a group containing it) was set by the user. */
function provided(layer: Layer, path: readonly string[]): Origin | undefined {
  for (let n = path.length; n > 0; n--) {
    const o = layer.origins.get(path.slice(0, n).join("."));
    if (o) return o;
  }
  return undefined;
}

/** Fully resolved broker configuration plus start-up notes; throws ConfigError (one line). */
export function resolveBrokerConfig(env: Record<string, string | undefined>, yamlPath?: string): ResolvedConfig {
  const notes: string[] = [];
  const schema = brokerConfigSchema;

  // Environment: older names are set aside, everything else must be in the schema.
  const envFlat: FlatValues = new Map();
  const { layer: envNested, unknown } = envLayer(schema, BROKER_PREFIX, env, (name) => {
    const key = name.slice(BROKER_PREFIX.length).toLowerCase();
    if (!FLAT_NAMES.has(key)) return false;
    const raw = env[name];
    if (raw !== undefined && raw !== "") envFlat.set(key, { label: name, raw, secret: SECRET_NAME.test(key) });
    return true;
  });
  if (unknown.length > 0) {
    throw unknownVariable(unknown[0]!, [
      ...knownNames(schema, BROKER_PREFIX),
      ...[...FLAT_NAMES].map((n) => BROKER_PREFIX + n.toUpperCase()),
    ]);
  }

  // File: top-level older names are allowed there too (the reference's YAML files use them).
  const fileFlat: FlatValues = new Map();
  let fileNested = emptyLayer();
  if (yamlPath) {
    fileNested = yamlLayer(schema, yamlPath, (key) => FLAT_NAMES.has(key));
    for (const key of Object.keys(fileNested.tree)) {
      if (!FLAT_NAMES.has(key)) continue;
      const o = fileNested.origins.get(key);
      if (o && o.raw !== null && o.raw !== "") fileFlat.set(key, o);
      delete fileNested.tree[key];
      fileNested.origins.delete(key);
    }
  }
  let merged = mergeLayers(fileNested, envNested);
  // The environment wins over the file for an older name too.
  const flat: FlatValues = new Map([...fileFlat, ...envFlat]);

  // Deprecated and older names: only where the current name is set nowhere.
  const aliases = emptyLayer();
  for (const [name, o] of flat) {
    const target = FLAT_ALIASES[name];
    if (!target) continue;
    const winner = provided(merged, target);
    if (winner) {
      notes.push(`${short(o)} is overridden by ${short(winner)}`);
      continue;
    }
    setPath(aliases.tree, target, o.raw);
    aliases.origins.set(target.join("."), o);
  }
  merged = mergeLayers(aliases, merged);
  for (const name of IGNORED_REFERENCE_NAMES) {
    const o = flat.get(name);
    if (o) notes.push(`${short(o)} is a setting of older reference releases with no effect here; ignored`);
  }

  merged = mergeLayers(merged, legacyKafkaLayer(flat, merged, notes));
  const config = validate(schema, merged, BROKER_PREFIX);
  if (config.worker_map === undefined) config.worker_map = { ...DEFAULT_WORKER_MAP };
  if (config.store.adapter === "postgres") {
    const o = provided(merged, ["store", "adapter"]);
    throw new ConfigError(
      `${o ? short(o) : "TASKBROKER_STORE__ADAPTER"}="postgres" is invalid: expected sqlite (this broker's store is an embedded SQLite file)`,
    );
  }
  checkKafkaReferences(config, merged);
  const kafkaProblem = kafkaConfigProblem(config);
  if (kafkaProblem) throw new ConfigError(kafkaProblem);
  checkPushTargets(config, merged);
  notes.push(...ignoredNotes(merged, config));
  return { config, notes };
}

/** loadBrokerConfig of the team brief: the resolved configuration only. */
export function loadBrokerConfig(env: Record<string, string | undefined>, yamlPath?: string): BrokerConfig {
  return resolveBrokerConfig(env, yamlPath).config;
}

/**
 * The legacy single-cluster form as kafka_clusters / kafka_topics, as the
 * reference normalises it: cluster "default" (kafka_cluster, default
 * 127.0.0.1:9092, with the kafka_* auth) holding kafka_topic (default
 * taskworker, group kafka_consumer_group, default taskworker); cluster
 * "deadletter" (kafka_deadletter_cluster, default the main address, with the
 * kafka_deadletter_* auth) holding the dead-letter topic and the retry topic,
 * both produce-only; raw_mode makes the topic raw from the raw_* settings.
 */
function legacyKafkaLayer(flat: FlatValues, merged: Layer, notes: string[]): Layer {
  const layer = emptyLayer();
  const legacy = (FLAT_KAFKA as readonly string[]).filter((n) => flat.has(n));
  if (legacy.length === 0) {
    for (const name of ["raw_namespace", "raw_application", "raw_taskname", "raw_processing_deadline_duration"]) {
      const o = merged.origins.get(name);
      if (o)
        notes.push(
          `${short(o)} has no effect without the legacy raw_mode (raw topics are kafka_topics.<topic>.raw); ignored`,
        );
    }
    return layer;
  }
  const first = flat.get(legacy[0]!)!;
  for (const [path, o] of merged.origins) {
    if (path.startsWith("kafka_clusters") || path.startsWith("kafka_topics")) {
      throw new ConfigError(
        `${short(first)} (the deprecated single-cluster Kafka form) cannot be combined with ${short(o)} (kafka_clusters / kafka_topics): use one form`,
      );
    }
  }
  const put = (path: string[], o: Origin | undefined, fallback?: unknown) => {
    if (o) {
      setPath(layer.tree, path, o.raw);
      layer.origins.set(path.join("."), o);
    } else if (fallback !== undefined) {
      setPath(layer.tree, path, fallback);
    }
  };
  for (const [name, what] of [
    ["kafka_cluster", "kafka_clusters"],
    ["kafka_topic", "kafka_topics"],
    ["kafka_consumer_group", "kafka_topics"],
    ["kafka_deadletter_cluster", "a dead-letter topic in kafka_topics on its own cluster"],
    ["raw_mode", "kafka_topics.<topic>.raw"],
  ] as const) {
    const o = flat.get(name);
    if (o) notes.push(`${short(o)} is deprecated; use ${what}`);
  }
  const topic = String(flat.get("kafka_topic")?.raw ?? LEGACY_DEFAULT_TOPIC);
  const group = flat.get("kafka_consumer_group");
  const main = flat.get("kafka_cluster");
  put(["kafka_clusters", "default", "address"], main, LEGACY_DEFAULT_ADDRESS);
  for (const f of LEGACY_CLUSTER_FIELDS) put(["kafka_clusters", "default", f], flat.get(`kafka_${f}`));
  put(
    ["kafka_clusters", "deadletter", "address"],
    flat.get("kafka_deadletter_cluster") ?? main,
    LEGACY_DEFAULT_ADDRESS,
  );
  for (const f of LEGACY_CLUSTER_FIELDS) put(["kafka_clusters", "deadletter", f], flat.get(`kafka_deadletter_${f}`));

  put(["kafka_topics", topic, "cluster"], undefined, "default");
  put(["kafka_topics", topic, "consumer_group"], group, LEGACY_DEFAULT_GROUP);
  const topicOrigin = flat.get("kafka_topic");
  if (topicOrigin) layer.origins.set(`kafka_topics.${topic}`, topicOrigin);
  const rawMode = flat.get("raw_mode");
  if (rawMode && /^(true|1|yes)$/i.test(String(rawMode.raw))) {
    for (const [field, from] of [
      ["namespace", "raw_namespace"],
      ["application", "raw_application"],
      ["taskname", "raw_taskname"],
      ["processing_deadline_duration", "raw_processing_deadline_duration"],
    ] as const) {
      const o = merged.origins.get(from);
      const value = getPath(merged.tree, [from]);
      if (o) put(["kafka_topics", topic, "raw", field], o);
      else if (field === "processing_deadline_duration")
        put(["kafka_topics", topic, "raw", field], undefined, value ?? 30);
      else
        throw new ConfigError(
          `${short(rawMode)}=true needs ${envName(BROKER_PREFIX, [from])}: expected the ${field} of the raw activations`,
        );
    }
  }

  const groupValue = group?.raw ?? LEGACY_DEFAULT_GROUP;
  const dlq = String(getPath(merged.tree, ["kafka_deadletter_topic"]) ?? "taskworker-dlq");
  if (dlq === topic) {
    throw new ConfigError(
      `${BROKER_PREFIX}KAFKA_DEADLETTER_TOPIC="${dlq}" is invalid: expected a topic other than the consumed topic ${topic}`,
    );
  }
  put(["kafka_topics", dlq, "cluster"], undefined, "deadletter");
  put(["kafka_topics", dlq, "consumer_group"], undefined, groupValue);
  put(["kafka_topics", dlq, "produce_only"], undefined, true);
  const retry = getPath(merged.tree, ["kafka_retry_topic"]);
  if (typeof retry === "string" && retry !== topic && retry !== dlq) {
    put(["kafka_topics", retry, "cluster"], undefined, "deadletter");
    put(["kafka_topics", retry, "consumer_group"], undefined, groupValue);
    put(["kafka_topics", retry, "produce_only"], undefined, true);
  }
  return layer;
}

/** Topics name existing clusters (named by where the user set the reference). */
function checkKafkaReferences(config: BrokerConfig, layer: Layer): void {
  const clusters = Object.keys(config.kafka_clusters);
  for (const [topic, t] of Object.entries(config.kafka_topics)) {
    if (config.kafka_clusters[t.cluster]) continue;
    const o = layer.origins.get(`kafka_topics.${topic}.cluster`);
    const label = o ? short(o) : envName(BROKER_PREFIX, ["kafka_topics", topic, "cluster"]);
    throw new ConfigError(
      `${label}=${showValue(t.cluster, false)} is invalid: expected a configured Kafka cluster` +
        (clusters.length
          ? ` (one of ${clusters.join(", ")})`
          : ` (set ${envName(BROKER_PREFIX, ["kafka_clusters", t.cluster, "address"])})`),
    );
  }
}

/** A worker endpoint of worker_map as host:port ("http://host:port" as the reference writes them, or bare). */
export function workerEndpoint(url: string): string | null {
  const m = /^(?:http:\/\/)?([^/\s]+?)\/?$/.exec(url.trim());
  if (!m || !ADDRESS.test(m[1]!)) return null;
  return m[1]!;
}

/** Push targets are reachable addresses: push_worker_addresses as host:port, worker_map endpoints as http://host:port. */
function checkPushTargets(config: BrokerConfig, layer: Layer): void {
  const bad = config.push_worker_addresses.find((a) => !ADDRESS.test(a));
  if (bad !== undefined) {
    const o = provided(layer, ["push_worker_addresses"]);
    throw new ConfigError(
      `${o ? short(o) : "TASKBROKER_PUSH_WORKER_ADDRESSES"}: "${bad}" is invalid: expected host:port addresses such as ["127.0.0.1:50052"]`,
    );
  }
  for (const [app, url] of Object.entries(config.worker_map ?? {})) {
    if (workerEndpoint(url) !== null) continue;
    const o = provided(layer, ["worker_map", app]);
    throw new ConfigError(
      `${o ? short(o) : "TASKBROKER_WORKER_MAP"}: ${app}=${showValue(url, false)} is invalid: expected a worker endpoint such as http://127.0.0.1:50052 (h2c; https is not supported)`,
    );
  }
}

/** One note per setting the user set that has no effect here (schema meta `ignored`). */
function ignoredNotes(layer: Layer, config: BrokerConfig): string[] {
  const out: string[] = [];
  for (const s of settings(brokerConfigSchema)) {
    if (!s.info.ignored || s.inMap) continue;
    const o = layer.origins.get(s.path.join("."));
    if (o) out.push(`${short(o)} is a reference broker setting with no effect here (${s.info.ignored}); ignored`);
  }
  // Topic-level settings the plan does not use.
  for (const topic of Object.keys(config.kafka_topics)) {
    const o = layer.origins.get(`kafka_topics.${topic}.auto_commit_interval_ms`);
    if (o) out.push(`${short(o)} has no effect here (offsets are committed after every durable batch); ignored`);
  }
  return out;
}

/** The effective configuration as flat `a.b.c` fields for the start-up log line; the logger redacts secrets. */
export function configFields(config: BrokerConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const visit = (v: unknown, path: string[]) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) visit(x, [...path, k]);
    } else if (v !== undefined) {
      const key = path.join(".");
      // Redact here too, not only in the logger: the key that holds a secret
      // may be nested (kafka_clusters.x.sasl_password) under a harmless name.
      out[key] = path.some((p) => SECRET_NAME.test(p)) ? (Array.isArray(v) ? v.map(() => "***") : "***") : v;
    }
  };
  visit(config, []);
  return out;
}
