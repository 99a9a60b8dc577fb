// The broker's configuration, resolved once at start-up: defaults, then the
// optional YAML file (-c), then TASKBROKER_* variables. On top of the generic
// loader (source.ts) this knows the reference broker's older flat names
// (TASKBROKER_DB_PATH, TASKBROKER_KAFKA_TOPIC, ...) so existing deployments
// keep working; broker.md "Configuration" is the spec.
//
// Precedence, lowest first: YAML flat < YAML nested < env flat < env nested.
// Within one source a nested name wins over its flat twin; the environment
// always wins over the file. The flat Kafka names build the cluster/topic maps
// and may not be mixed with them (which would win is not obvious to a reader).
import { brokerConfigSchema, type BrokerConfig } from "./broker.ts";
import {
  ConfigError,
  emptyLayer,
  envLayer,
  envName,
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
import { SECRET_NAME } from "./walk.ts";
import { kafkaConfigProblem } from "../kafka/plan.ts";

export { ConfigError };

export const BROKER_PREFIX = "TASKBROKER_";

/** Flat names of the reference broker that map onto one nested setting. */
export const FLAT_ALIASES: Readonly<Record<string, readonly string[]>> = {
  db_path: ["store", "sqlite", "path"],
  db_max_size: ["store", "max_size"],
  max_size: ["store", "max_size"],
  max_pending_count: ["store", "max_pending_count"],
  max_delay_count: ["store", "max_delay_count"],
  max_processing_count: ["store", "max_processing_count"],
  max_processing_attempts: ["store", "max_processing_attempts"],
  processing_deadline_grace_sec: ["store", "processing_deadline_grace_sec"],
  grpc_addr: ["grpc_host"],
  create_missing_topics: ["kafka_create_missing_topics"],
  db_insert_batch_max_len: ["kafka_batch_max_rows"],
  db_insert_batch_max_size: ["kafka_batch_max_bytes"],
  db_insert_batch_max_time_ms: ["kafka_batch_max_ms"],
  upkeep_unhealthy_interval_ms: ["upkeep_unhealthy_after_ms"],
  statsd_addr: ["statsd_address"],
};

/** Flat Kafka names: they build kafka_clusters / kafka_topics (see flatKafka). */
const FLAT_KAFKA_CLUSTER = [
  "security_protocol",
  "sasl_mechanism",
  "sasl_username",
  "sasl_password",
  "ssl_ca_location",
  "ssl_certificate_location",
  "ssl_key_location",
] as const;
export const FLAT_KAFKA = [
  "kafka_cluster",
  "kafka_topic",
  "kafka_consumer_group",
  "kafka_session_timeout_ms",
  "kafka_auto_offset_reset",
  "default_topic_partitions",
  "kafka_deadletter_cluster",
  ...FLAT_KAFKA_CLUSTER.map((f) => `kafka_${f}`),
  ...FLAT_KAFKA_CLUSTER.map((f) => `kafka_deadletter_${f}`),
] as const;

/** Reference broker settings that have no meaning here: accepted with a warning so a migration does not fail. */
export const IGNORED_REFERENCE_NAMES = [
  "sentry_dsn",
  "sentry_env",
  "traces_sample_rate",
  "default_metrics_tags",
  "kafka_auto_commit_interval_ms",
  "kafka_send_timeout_ms",
  "kafka_long_topic",
  "database_adapter",
  "run_migrations",
  "pg_url",
  "pg_database_name",
  "db_write_failure_backoff_ms",
  "maintenance_task_interval_ms",
  "max_message_size",
  "vacuum_page_count",
  "full_vacuum_on_start",
  "full_vacuum_on_upkeep",
  "vacuum_interval_ms",
  "enable_sqlite_status_metrics",
  "health_check_killswitched",
] as const;

const FLAT_NAMES = new Set<string>([...Object.keys(FLAT_ALIASES), ...FLAT_KAFKA, ...IGNORED_REFERENCE_NAMES]);

/** The reference broker's defaults for the flat Kafka form (same group, so offsets carry over). */
const FLAT_DEFAULT_TOPIC = "taskworker";
const FLAT_DEFAULT_GROUP = "taskworker";
const FLAT_DEFAULT_CLUSTER = "127.0.0.1:9092";

export interface ResolvedConfig {
  config: BrokerConfig;
  /** Warnings for the start-up log: ignored names, flat names overridden by nested twins. */
  notes: string[];
}

/** Raw flat values of one source: lower-case name -> origin. */
type FlatValues = Map<string, Origin>;

/** Turns one source's flat names into a layer; nested names of the same source go on top later. */
function flatLayer(flat: FlatValues, notes: string[]): Layer {
  const layer = emptyLayer();
  const put = (path: string[], o: Origin) => {
    setPath(layer.tree, path, o.raw);
    layer.origins.set(path.join("."), o);
  };
  for (const [name, o] of flat) {
    const alias = FLAT_ALIASES[name];
    if (alias) put([...alias], o);
    else if ((IGNORED_REFERENCE_NAMES as readonly string[]).includes(name)) {
      notes.push(`${o.label.split(" ")[0]} is a reference broker setting with no effect here; ignored`);
    }
  }
  const kafkaNames = [...flat.keys()].filter((n) => (FLAT_KAFKA as readonly string[]).includes(n));
  if (kafkaNames.length === 0) return layer;
  const raw = (n: string) => flat.get(n)?.raw;
  const topic = String(raw("kafka_topic") ?? FLAT_DEFAULT_TOPIC);
  const topicOrigin = flat.get("kafka_topic");
  const cluster = flat.get("kafka_cluster");
  if (cluster) put(["kafka_clusters", "default", "address"], cluster);
  else setPath(layer.tree, ["kafka_clusters", "default", "address"], FLAT_DEFAULT_CLUSTER);
  for (const f of FLAT_KAFKA_CLUSTER) {
    const o = flat.get(`kafka_${f}`);
    if (o) put(["kafka_clusters", "default", f], o);
  }
  setPath(layer.tree, ["kafka_topics", topic, "cluster"], "default");
  if (topicOrigin) layer.origins.set(`kafka_topics.${topic}`, topicOrigin);
  const group = flat.get("kafka_consumer_group");
  if (group) put(["kafka_topics", topic, "consumer_group"], group);
  else setPath(layer.tree, ["kafka_topics", topic, "consumer_group"], FLAT_DEFAULT_GROUP);
  const topicField = (name: string, field: string) => {
    const o = flat.get(name);
    if (o) put(["kafka_topics", topic, field], o);
  };
  topicField("kafka_session_timeout_ms", "session_timeout_ms");
  topicField("kafka_auto_offset_reset", "auto_offset_reset");
  topicField("default_topic_partitions", "partitions");
  // The reference publishes dead letters to a separate cluster when given one
  // (or with separate credentials): model it as cluster "deadletter" holding
  // the dead-letter topic, produce-only.
  const dlqNames = kafkaNames.filter((n) => n.startsWith("kafka_deadletter_"));
  if (dlqNames.length > 0) {
    const dlqCluster = flat.get("kafka_deadletter_cluster") ?? cluster;
    if (dlqCluster) put(["kafka_clusters", "deadletter", "address"], dlqCluster);
    else setPath(layer.tree, ["kafka_clusters", "deadletter", "address"], FLAT_DEFAULT_CLUSTER);
    for (const f of FLAT_KAFKA_CLUSTER) {
      const o = flat.get(`kafka_deadletter_${f}`);
      if (o) put(["kafka_clusters", "deadletter", f], o);
    }
    layer.tree.__dlq_cluster = "deadletter";
  }
  return layer;
}

/** Fully resolved broker configuration plus start-up notes; throws ConfigError (one line). */
export function resolveBrokerConfig(env: Record<string, string | undefined>, yamlPath?: string): ResolvedConfig {
  const notes: string[] = [];
  const schema = brokerConfigSchema;

  // Environment: flat names are set aside, everything else must be in the schema.
  const envFlat: FlatValues = new Map();
  const { layer: envNested, unknown } = envLayer(schema, BROKER_PREFIX, env, (name) => {
    const short = name.slice(BROKER_PREFIX.length).toLowerCase();
    if (!FLAT_NAMES.has(short)) return false;
    const raw = env[name];
    if (raw !== undefined && raw !== "") {
      envFlat.set(short, { label: name, raw, secret: SECRET_NAME.test(short) });
    }
    return true;
  });
  if (unknown.length > 0) {
    throw unknownVariable(unknown[0]!, [
      ...knownNames(schema, BROKER_PREFIX),
      ...[...FLAT_NAMES].map((n) => BROKER_PREFIX + n.toUpperCase()),
    ]);
  }

  // File: top-level flat names are allowed there too (reference YAML files use them).
  const fileFlat: FlatValues = new Map();
  let fileNested = emptyLayer();
  if (yamlPath) {
    fileNested = yamlLayer(schema, yamlPath, (key) => FLAT_NAMES.has(key));
    for (const key of Object.keys(fileNested.tree)) {
      if (!FLAT_NAMES.has(key)) continue;
      fileFlat.set(key, fileNested.origins.get(key)!);
      delete fileNested.tree[key];
      fileNested.origins.delete(key);
    }
  }

  checkKafkaForms(envFlat, fileFlat, envNested, fileNested);
  noteOverriddenTwins(envFlat, envNested, notes);
  noteOverriddenTwins(fileFlat, fileNested, notes);

  const fileFlatLayer = flatLayer(fileFlat, notes);
  const envFlatLayer = flatLayer(envFlat, notes);
  let merged = [fileFlatLayer, fileNested, envFlatLayer, envNested].reduce(mergeLayers);
  const dlqCluster = merged.tree.__dlq_cluster;
  delete merged.tree.__dlq_cluster;
  if (typeof dlqCluster === "string") {
    const dlqTopic = String(merged.tree.kafka_deadletter_topic ?? "taskworker-dlq");
    const topics = (merged.tree.kafka_topics ?? {}) as Record<string, unknown>;
    if (!topics[dlqTopic]) {
      merged = mergeLayers(merged, {
        tree: { kafka_topics: { [dlqTopic]: { cluster: dlqCluster, consume: false } } },
        origins: new Map(),
      });
    }
  }
  const config = validate(schema, merged, BROKER_PREFIX);
  checkKafkaReferences(config, merged);
  // Kafka's topic rules (src/kafka/plan.ts, pure), so they stop start-up like any other bad value.
  const kafkaProblem = kafkaConfigProblem(config);
  if (kafkaProblem) throw new ConfigError(kafkaProblem);
  return { config, notes };
}

/** loadBrokerConfig of the team brief: the resolved configuration only. */
export function loadBrokerConfig(env: Record<string, string | undefined>, yamlPath?: string): BrokerConfig {
  return resolveBrokerConfig(env, yamlPath).config;
}

/** True when Kafka is configured (otherwise activations arrive through the ingest RPC only). */
export function kafkaConfigured(config: BrokerConfig): boolean {
  return Object.keys(config.kafka_topics).length > 0 || Object.keys(config.kafka_clusters).length > 0;
}

function checkKafkaForms(envFlat: FlatValues, fileFlat: FlatValues, envNested: Layer, fileNested: Layer): void {
  const flatKafka = [...envFlat.values(), ...fileFlat.values()].find((o) => {
    const short = o.label.startsWith(BROKER_PREFIX) ? o.label.slice(BROKER_PREFIX.length).toLowerCase() : o.label.split(" ")[0]!;
    return (FLAT_KAFKA as readonly string[]).includes(short);
  });
  if (!flatKafka) return;
  for (const layer of [envNested, fileNested]) {
    for (const [path, o] of layer.origins) {
      if (path.startsWith("kafka_clusters") || path.startsWith("kafka_topics")) {
        throw new ConfigError(
          `${flatKafka.label.split(" ")[0]} (flat Kafka form) cannot be combined with ${o.label} (cluster/topic maps); use one form`,
        );
      }
    }
  }
}

function noteOverriddenTwins(flat: FlatValues, nested: Layer, notes: string[]): void {
  for (const [name, o] of flat) {
    const twin = FLAT_ALIASES[name];
    const winner = twin && nested.origins.get(twin.join("."));
    if (winner) notes.push(`${o.label.split(" ")[0]} is overridden by ${winner.label.split(" ")[0]}`);
  }
}

/** Cross-field rules zod cannot see: topics name existing clusters; several consumed topics need a retry topic. */
function checkKafkaReferences(config: BrokerConfig, layer: Layer): void {
  const clusters = Object.keys(config.kafka_clusters);
  for (const [topic, t] of Object.entries(config.kafka_topics)) {
    if (config.kafka_clusters[t.cluster]) continue;
    const o = layer.origins.get(`kafka_topics.${topic}.cluster`);
    const label = o?.label ?? envName(BROKER_PREFIX, ["kafka_topics", topic, "cluster"]);
    throw new ConfigError(
      `${label}=${showValue(t.cluster, false)} is invalid: expected a configured Kafka cluster` +
        (clusters.length ? ` (one of ${clusters.join(", ")})` : ` (set ${envName(BROKER_PREFIX, ["kafka_clusters", t.cluster, "address"])})`),
    );
  }
  const consumed = Object.entries(config.kafka_topics).filter(([, t]) => t.consume).map(([name]) => name);
  if (consumed.length > 1 && !config.kafka_retry_topic) {
    throw new ConfigError(
      `${BROKER_PREFIX}KAFKA_RETRY_TOPIC is required when several topics are consumed (${consumed.join(", ")})`,
    );
  }
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
