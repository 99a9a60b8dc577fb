// The reference broker's settings (taskbroker 0.20.20), as an operator
// migrating a deployment writes them: every current name accepted from the
// environment and from the YAML file with the reference's default, every
// deprecated name accepted, the legacy single-cluster Kafka form normalised as
// the reference does, and a deployment-shaped config (self-hosted's shape:
// many topics, raw topics, a shared consumer group, a produce-only dead-letter
// topic, flat defaults plus maps, environment + file) resolved to the plan the
// Kafka side runs. The names and defaults are transcribed from the reference's
// configuration reference, not derived from our schema. In-process.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { kafkaPlan } from "../src/config/kafka.ts";
import { loadBrokerConfig, resolveBrokerConfig } from "../src/config/load.ts";
import { configErrorOf } from "./support/config-errors.ts";
import { getPath } from "../src/config/source.ts";
import { createLogger, parseLogFilter } from "../src/log.ts";

const dir = mkdtempSync(join(tmpdir(), "config-upstream-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function yamlFile(doc: unknown): string {
  const path = join(dir, `c-${n++}.yaml`);
  writeFileSync(path, typeof doc === "string" ? doc : stringify(doc));
  return path;
}

/** [setting, value to set, the reference's default] for every current setting outside the Kafka maps. */
const UPSTREAM: Array<[string, string, unknown]> = [
  ["sentry_dsn", "https://key@sentry.example/1", undefined],
  ["sentry_env", "prod", undefined],
  ["traces_sample_rate", "0.5", 0],
  ["log_filter", "debug,rdkafka=off", "info,librdkafka=warn,h2=off"],
  ["log_format", "json", "text"],
  ["statsd_addr", "10.0.0.1:8125", "127.0.0.1:8126"],
  ["grpc_addr", "127.0.0.1", "0.0.0.0"],
  ["grpc_port", "50052", 50051],
  ["grpc_shared_secret", '["a","b"]', []],
  ["kafka_long_topic", "long-tasks", "taskworker-long"],
  ["create_missing_topics", "true", false],
  ["kafka_deadletter_topic", "dlq", "taskworker-dlq"],
  ["kafka_retry_topic", "retries", undefined],
  ["default_topic_partitions", "4", 1],
  ["kafka_session_timeout_ms", "60000", 6000],
  ["kafka_auto_commit_interval_ms", "1000", 5000],
  ["kafka_auto_offset_reset", "earliest", "latest"],
  ["kafka_send_timeout_ms", "900", 500],
  ["store.adapter", "sqlite", "sqlite"],
  ["store.pg.run_migrations", "true", false],
  ["store.pg.host", "pg", "sentry-postgres-1"],
  ["store.pg.port", "6432", 5432],
  ["store.pg.ddl_username", "ddl", "postgres"],
  ["store.pg.username", "tb", "postgres"],
  ["store.pg.password", "pw", "password"],
  ["store.pg.ddl_password", "pw2", "password"],
  ["store.pg.database_name", "tb", "default"],
  ["store.pg.default_database_name", "postgres2", "postgres"],
  ["store.pg.query_params", "sslmode=require", undefined],
  ["store.sqlite.path", "/data/tb.sqlite", "./taskbroker-inflight.sqlite"],
  ["store.sqlite.enable_status_metrics", "false", true],
  ["store.sqlite.vacuum_page_count", "1000", undefined],
  ["store.retry.max_retries", "5", 3],
  ["store.retry.delay", "200ms", 100],
  ["store.insert_failure_backoff_ms", "1000", 4000],
  ["store.insert_batch_max_length", "512", 256],
  ["store.insert_batch_max_bytes", "1000000", 16_000_000],
  ["store.insert_batch_max_time_ms", "500", 1000],
  ["store.max_size", "1000000000", 3_000_000_000],
  ["store.max_pending_count", "100", 2048],
  ["store.max_delay_count", "100", 8192],
  ["store.max_processing_count", "100", 2048],
  ["store.max_processing_attempts", "3", 5],
  ["store.processing_deadline_grace_sec", "5", 3],
  ["store.contention_drain_age_sec", "30", 60],
  ["runtime_config_path", "/etc/taskbroker/runtime.yml", undefined],
  ["upkeep_task_interval_ms", "500", 1000],
  ["upkeep_unhealthy_interval_ms", "9000", 5000],
  ["health_check_killswitched", "true", false],
  ["upkeep_deadline_reset_skip_after_startup_sec", "10", 60],
  ["maintenance_task_interval_ms", "3000", 6000],
  ["runtime_metrics_interval", "2s", 1000],
  ["max_delayed_task_allowed_sec", "60", 3600],
  ["max_message_size", "1000000", 5_000_000],
  ["grpc_max_message_size", "1000000", 52 * 1024 * 1024],
  ["full_vacuum_on_start", "false", true],
  ["canary_tasks", "2", 0],
  ["full_vacuum_on_upkeep", "false", true],
  ["vacuum_interval_ms", "60000", 30_000],
  ["log_async_backtrace", "true", false],
  ["delivery_mode", "push", "pull"],
  ["fetch.threads", "2", 1],
  ["fetch.backoff", "50ms", 100],
  ["fetch.batch_length", "8", 1],
  ["push.threads", "2", 1],
  ["push.timeout", "10s", 30_000],
  ["push.queue.size", "4", 1],
  ["push.queue.timeout", "1s", 5000],
  ["push.update.batched", "true", false],
  ["push.update.batch.length", "8", 1],
  ["push.update.batch.size", "8", 1],
  ["push.update.batch.interval", "50ms", 100],
  ["batch_status_updates", "true", false],
  ["status_update_batch_size", "8", 1],
  ["status_update_interval_ms", "50", 100],
  ["raw_namespace", "ns", undefined],
  ["raw_application", "app", undefined],
  ["raw_taskname", "t", undefined],
  ["raw_processing_deadline_duration", "60", 30],
];

/** Maps: [setting with <name>, value]. */
const UPSTREAM_MAPS: Array<[string, string]> = [
  ["default_metrics_tags.<name>", "value"],
  ["worker_map.<name>", "http://worker:50052"],
];

/** Per topic and per cluster (the `kafka_topics` / `kafka_clusters` maps). */
const UPSTREAM_TOPIC: Array<[string, string]> = [
  ["cluster", "default"],
  ["consumer_group", "g"],
  ["produce_only", "false"],
  ["consumer_disabled", "true"],
  ["session_timeout_ms", "12000"],
  ["auto_commit_interval_ms", "1000"],
  ["auto_offset_reset", "earliest"],
  ["raw.namespace", "ns"],
  ["raw.application", "sentry"],
  ["raw.taskname", "t"],
  ["raw.processing_deadline_duration", "30"],
  ["raw.compression_level", "-1"],
];
const UPSTREAM_CLUSTER: Array<[string, string]> = [
  ["address", "k:9092"],
  ["security_protocol", "SASL_SSL"],
  ["sasl_mechanism", "SCRAM-SHA-512"],
  ["sasl_username", "u"],
  ["sasl_password", "p"],
  ["ssl_ca_location", "/ca.pem"],
  ["ssl_certificate_location", "/cert.pem"],
  ["ssl_key_location", "/key.pem"],
];

/** The reference's deprecated flat names (still read by it) with a value each. */
const DEPRECATED: Array<[string, string]> = [
  ["database_adapter", "sqlite"],
  ["run_migrations", "false"],
  ["pg_host", "pg"],
  ["pg_port", "5432"],
  ["pg_ddl_username", "u"],
  ["pg_username", "u"],
  ["pg_password", "p"],
  ["pg_ddl_password", "p"],
  ["pg_database_name", "d"],
  ["pg_default_database_name", "d"],
  ["pg_extra_query_params", "a=b"],
  ["db_path", "/x.sqlite"],
  ["db_write_failure_backoff_ms", "1000"],
  ["db_query_max_retries", "1"],
  ["db_query_retry_delay_ms", "10"],
  ["db_insert_batch_max_len", "10"],
  ["db_insert_batch_max_size", "1000"],
  ["db_insert_batch_max_time_ms", "10"],
  ["db_max_size", "1000000"],
  ["max_pending_count", "10"],
  ["max_delay_count", "10"],
  ["max_processing_count", "10"],
  ["max_processing_attempts", "2"],
  ["processing_deadline_grace_sec", "1"],
  ["vacuum_page_count", "10"],
  ["enable_sqlite_status_metrics", "false"],
  ["push_threads", "2"],
  ["push_timeout_ms", "1000"],
  ["push_queue_size", "2"],
  ["push_queue_timeout_ms", "100"],
  ["batch_push_updates", "true"],
  ["push_update_batch_size", "2"],
  ["push_update_interval_ms", "10"],
  ["fetch_threads", "2"],
  ["fetch_wait_ms", "10"],
  ["fetch_batch_size", "2"],
];

/** The deprecated single-cluster Kafka form. */
const LEGACY_KAFKA: Array<[string, string]> = [
  ["kafka_topic", "tasks"],
  ["kafka_cluster", "k:9092"],
  ["kafka_consumer_group", "g"],
  ["kafka_security_protocol", "sasl_plaintext"],
  ["kafka_sasl_mechanism", "SCRAM-SHA-256"],
  ["kafka_sasl_username", "u"],
  ["kafka_sasl_password", "p"],
  ["kafka_ssl_ca_location", "/ca"],
  ["kafka_ssl_certificate_location", "/c"],
  ["kafka_ssl_key_location", "/k"],
  ["kafka_deadletter_cluster", "d:9092"],
  ["kafka_deadletter_security_protocol", "plaintext"],
  ["kafka_deadletter_sasl_mechanism", "PLAIN"],
  ["kafka_deadletter_sasl_username", "u"],
  ["kafka_deadletter_sasl_password", "p"],
  ["kafka_deadletter_ssl_ca_location", "/ca"],
  ["kafka_deadletter_ssl_certificate_location", "/c"],
  ["kafka_deadletter_ssl_key_location", "/k"],
  ["raw_mode", "false"],
];

const env = (path: string) =>
  "TASKBROKER_" +
  path
    .split(".")
    .map((s) => s.toUpperCase())
    .join("__");
const nest = (path: string, value: unknown): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  let node = out;
  const parts = path.split(".");
  for (const part of parts.slice(0, -1)) node = (node[part] = {}) as Record<string, unknown>;
  node[parts[parts.length - 1]!] = value;
  return out;
};
const KAFKA_ENV = {
  TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: "k:9092",
  TASKBROKER_KAFKA_TOPICS__TASKS__CLUSTER: "default",
};

describe("every setting of the reference broker", () => {
  test("each current name has the reference's default", () => {
    const c = loadBrokerConfig({});
    const differ = UPSTREAM.filter(
      ([path, , dflt]) => JSON.stringify(getPath(c, path.split("."))) !== JSON.stringify(dflt),
    );
    expect(differ.map(([path]) => path)).toEqual([]);
    // Maps: worker_map defaults to the reference's {sentry: ...}; no metric tags.
    expect(c.worker_map).toEqual({ sentry: "http://127.0.0.1:50052" });
    expect(c.default_metrics_tags).toEqual({});
  });

  test.each(UPSTREAM)("%s is accepted from the environment and from the file", (path, value, dflt) => {
    const fromEnv = resolveBrokerConfig({ [env(path)]: value });
    const fromFile = resolveBrokerConfig({}, yamlFile(nest(path, value)));
    const got = getPath(fromEnv.config, path.split("."));
    expect(getPath(fromFile.config, path.split("."))).toEqual(got);
    // The value took: it is no longer the default (store.adapter has one valid value, the default).
    if (value !== String(dflt)) expect(JSON.stringify(got)).not.toBe(JSON.stringify(dflt));
  });

  test.each(UPSTREAM_MAPS)("%s entries from the environment, as {key=value} and from the file", (path, value) => {
    const base = path.replace(".<name>", "");
    const one = resolveBrokerConfig({ [env(path.replace("<name>", "pool"))]: value }).config;
    const inline = resolveBrokerConfig({ [env(base)]: `{pool=${value}}` }).config;
    const file = resolveBrokerConfig({}, yamlFile(nest(base, { pool: value }))).config;
    for (const c of [one, inline, file]) expect(getPath(c, [base])).toEqual({ pool: value });
  });

  test.each(UPSTREAM_TOPIC)("kafka_topics.<topic>.%s from the environment and the file", (field, value) => {
    const raw = field.startsWith("raw.")
      ? { namespace: "ns", application: "sentry", taskname: "t", ...nest(field.slice(4), value) }
      : undefined;
    const topic: Record<string, unknown> = raw
      ? { cluster: "default", raw }
      : { cluster: "default", ...nest(field, value) };
    const retry = raw
      ? { kafka_retry_topic: "retries", kafka_topics: { tasks: topic, retries: { produce_only: true } } }
      : { kafka_topics: { tasks: topic } };
    const file = resolveBrokerConfig(
      {},
      yamlFile({ kafka_clusters: { default: { address: "k:9092" } }, ...retry }),
    ).config;
    const envVars: Record<string, string> = { ...KAFKA_ENV, [env(`kafka_topics.tasks.${field}`)]: value };
    if (raw) {
      Object.assign(envVars, {
        TASKBROKER_KAFKA_TOPICS__TASKS__RAW__NAMESPACE: "ns",
        TASKBROKER_KAFKA_TOPICS__TASKS__RAW__APPLICATION: "sentry",
        TASKBROKER_KAFKA_TOPICS__TASKS__RAW__TASKNAME: "t",
        [env(`kafka_topics.tasks.${field}`)]: value,
        TASKBROKER_KAFKA_RETRY_TOPIC: "retries",
        TASKBROKER_KAFKA_TOPICS__RETRIES__PRODUCE_ONLY: "true",
      });
    }
    const fromEnv = resolveBrokerConfig(envVars).config;
    const at = ["kafka_topics", "tasks", ...field.split(".")];
    expect(getPath(fromEnv, at)).toEqual(getPath(file, at));
    expect(getPath(fromEnv, at)).toBeDefined();
  });

  test.each(UPSTREAM_CLUSTER)(
    "kafka_clusters.<cluster>.%s from the environment and the file, librdkafka's spelling",
    (field, value) => {
      const fromEnv = resolveBrokerConfig({ ...KAFKA_ENV, [env(`kafka_clusters.default.${field}`)]: value }).config;
      const file = resolveBrokerConfig(
        {},
        yamlFile({
          kafka_clusters: { default: { address: "k:9092", [field]: value } },
          kafka_topics: { tasks: { cluster: "default" } },
        }),
      ).config;
      expect(fromEnv.kafka_clusters.default).toEqual(file.kafka_clusters.default!);
      const got = (fromEnv.kafka_clusters.default as Record<string, unknown>)[field];
      expect(String(got).toLowerCase()).toBe(value.toLowerCase());
    },
  );

  test.each(DEPRECATED)("deprecated %s is accepted from the environment and the file", (name, value) => {
    const fromEnv = resolveBrokerConfig({ [env(name)]: value });
    const fromFile = resolveBrokerConfig({}, yamlFile({ [name]: value }));
    expect(fromFile.config).toEqual(fromEnv.config);
  });

  test.each(LEGACY_KAFKA)("legacy %s builds the Kafka maps", (name, value) => {
    // A dead-letter cluster of its own needs a retry topic there too (one producer publishes both), as in the reference.
    const extra: Record<string, string> = name === "kafka_deadletter_cluster" ? { kafka_retry_topic: "retries" } : {};
    const c = resolveBrokerConfig({
      [env(name)]: value,
      ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [env(k), v])),
    }).config;
    expect(Object.keys(c.kafka_clusters).sort()).toEqual(["deadletter", "default"]);
    expect(resolveBrokerConfig({}, yamlFile({ [name]: value, ...extra })).config).toEqual(c);
  });

  test("settings without effect here are named once in the start-up notes; unknown names are still errors", () => {
    const r = resolveBrokerConfig({
      TASKBROKER_STORE__PG__HOST: "pg",
      TASKBROKER_SENTRY_DSN: "https://k@s/1",
      TASKBROKER_FETCH__THREADS: "2",
    });
    expect(r.notes.filter((x) => x.startsWith("TASKBROKER_STORE__PG__HOST "))).toHaveLength(1);
    expect(r.notes.some((x) => x.startsWith("TASKBROKER_SENTRY_DSN "))).toBe(true);
    expect(r.notes.some((x) => x.startsWith("TASKBROKER_FETCH__THREADS "))).toBe(true);
    expect(r.notes.join("\n")).not.toContain("https://k@s/1");
    expect(configErrorOf(() => resolveBrokerConfig({ TASKBROKER_STATSD_ADR: "x:1" }))).toBe(
      "unknown variable TASKBROKER_STATSD_ADR (did you mean TASKBROKER_STATSD_ADDR?); --help lists every variable",
    );
    expect(configErrorOf(() => resolveBrokerConfig({ TASKBROKER_STORE__ADAPTER: "postgres" }))).toBe(
      'TASKBROKER_STORE__ADAPTER="postgres" is invalid: expected sqlite (this broker\'s store is an embedded SQLite file)',
    );
  });

  test("a deprecated name applies only when its current name is set nowhere", () => {
    const file = yamlFile({ store: { sqlite: { path: "/from-file.sqlite" } } });
    const r = resolveBrokerConfig({ TASKBROKER_DB_PATH: "/deprecated.sqlite" }, file);
    expect(r.config.store.sqlite.path).toBe("/from-file.sqlite");
    expect(r.notes).toContain("TASKBROKER_DB_PATH is overridden by store.sqlite.path");
    expect(loadBrokerConfig({ TASKBROKER_PUSH_TIMEOUT_MS: "1500" }).push.timeout).toBe(1500);
  });
});

describe("the Kafka forms", () => {
  test("legacy form as the reference normalises it: dead letters and retries on cluster deadletter, produce-only", () => {
    const c = loadBrokerConfig({
      TASKBROKER_KAFKA_CLUSTER: "kafka-profiles:9092",
      TASKBROKER_KAFKA_TOPIC: "profiles",
      TASKBROKER_KAFKA_RETRY_TOPIC: "taskworker-ingest",
      TASKBROKER_KAFKA_DEADLETTER_TOPIC: "taskworker-ingest-dlq",
      TASKBROKER_KAFKA_DEADLETTER_CLUSTER: "kafka-small:9092",
    });
    expect(c.kafka_clusters.deadletter!.address).toBe("kafka-small:9092");
    expect(c.kafka_topics["taskworker-ingest"]).toMatchObject({ cluster: "deadletter", produce_only: true });
    const plan = kafkaPlan(c);
    expect(plan.publishCluster.address).toBe("kafka-small:9092");
    expect(plan.groups).toMatchObject([{ groupId: "taskworker", topics: [{ topic: "profiles" }] }]);
    expect(
      configErrorOf(() => loadBrokerConfig({ TASKBROKER_KAFKA_TOPIC: "t", TASKBROKER_KAFKA_DEADLETTER_TOPIC: "t" })),
    ).toBe('TASKBROKER_KAFKA_DEADLETTER_TOPIC="t" is invalid: expected a topic other than the consumed topic t');
  });

  test("legacy raw_mode makes the topic raw from the flat raw_* settings, and needs a retry topic", () => {
    const base = {
      TASKBROKER_KAFKA_TOPIC: "profiles",
      TASKBROKER_RAW_MODE: "true",
      TASKBROKER_RAW_NAMESPACE: "ns",
      TASKBROKER_RAW_APPLICATION: "sentry",
      TASKBROKER_RAW_TASKNAME: "t",
    };
    expect(configErrorOf(() => loadBrokerConfig(base))).toContain("TASKBROKER_KAFKA_RETRY_TOPIC is unset");
    const c = loadBrokerConfig({ ...base, TASKBROKER_KAFKA_RETRY_TOPIC: "taskworker" });
    expect(c.kafka_topics.profiles!.raw).toMatchObject({
      namespace: "ns",
      application: "sentry",
      taskname: "t",
      processing_deadline_duration: 30,
    });
  });

  test("the retry and dead-letter topics must resolve to one cluster address; another cluster name with the same address is fine", () => {
    const two = { main: { address: "a:9092" }, dlq: { address: "b:9092" }, same: { address: "a:9092" } };
    const topics = (dlqCluster: string) => ({
      tasks: { cluster: "main" },
      "tasks-dlq": { cluster: dlqCluster, produce_only: true },
    });
    expect(
      configErrorOf(() =>
        loadBrokerConfig(
          {},
          yamlFile({ kafka_clusters: two, kafka_topics: topics("dlq"), kafka_deadletter_topic: "tasks-dlq" }),
        ),
      ),
    ).toContain("expected one cluster, since one producer publishes both");
    expect(
      loadBrokerConfig(
        {},
        yamlFile({ kafka_clusters: two, kafka_topics: topics("same"), kafka_deadletter_topic: "tasks-dlq" }),
      ).kafka_topics,
    ).toBeDefined();
  });

  test("a retry topic on another cluster than the consumed one, with its dead-letter topic there too", () => {
    const c = loadBrokerConfig(
      {},
      yamlFile({
        kafka_deadletter_topic: "profiles-dlq",
        kafka_retry_topic: "profiles-retry",
        kafka_clusters: { main: { address: "main:9092" }, deadletter: { address: "dlq:9092" } },
        kafka_topics: {
          profiles: {
            cluster: "main",
            consumer_group: "g",
            raw: { namespace: "n", application: "sentry", taskname: "t" },
          },
          "profiles-retry": { cluster: "deadletter", consumer_group: "g", produce_only: true },
          "profiles-dlq": { cluster: "deadletter", consumer_group: "g", produce_only: true },
        },
      }),
    );
    const plan = kafkaPlan(c);
    expect(plan.publishClusterName).toBe("deadletter");
    expect(plan.groups.map((g) => [g.clusterName, g.groupId, g.topics.map((t) => t.topic)])).toEqual([
      ["main", "g", ["profiles"]],
    ]);
  });

  test("only produce-only topics is an error; consumer_disabled topics are checked, not consumed", () => {
    const clusters = { default: { address: "k:9092" } };
    expect(
      configErrorOf(() =>
        loadBrokerConfig({}, yamlFile({ kafka_clusters: clusters, kafka_topics: { a: { produce_only: true } } })),
      ),
    ).toContain("no consumable topic configured");
    const plan = kafkaPlan(
      loadBrokerConfig({}, yamlFile({ kafka_clusters: clusters, kafka_topics: { a: { consumer_disabled: true } } })),
    );
    expect(plan.groups).toEqual([]);
    expect(plan.disabled.map((t) => t.topic)).toEqual(["a"]);
    expect(plan.retryTopic).toBe("a");
  });
});

describe("a deployment-shaped configuration (environment + -c file, as self-hosted runs it)", () => {
  const raw = (ns: string, deadline: number) => ({
    namespace: ns,
    application: "sentry",
    taskname: `sentry.tasks.${ns}`,
    processing_deadline_duration: deadline,
  });
  const file = () =>
    yamlFile(`
# Flat consumer default applying to every topic of the maps.
kafka_session_timeout_ms: 60000
kafka_deadletter_topic: taskworker-dlq
kafka_retry_topic: taskworker
kafka_topics:
${stringify({
  taskworker: { cluster: "default", consumer_group: "taskworker" },
  "taskworker-dlq": { cluster: "default", consumer_group: "taskworker", produce_only: true },
  "alpha-results": { cluster: "default", consumer_group: "shared-results", raw: raw("alpha.raw", 60) },
  "beta-results": { cluster: "default", consumer_group: "shared-results", raw: raw("beta.raw", 60) },
  "gamma-results": { cluster: "default", consumer_group: "shared-results", raw: raw("gamma.raw", 60) },
  "delta-items": { cluster: "default", consumer_group: "delta-items", raw: raw("delta.raw", 60) },
  uploads: {
    cluster: "default",
    consumer_group: "uploads-0",
    raw: raw("uploads.raw", 90),
    auto_offset_reset: "earliest",
    session_timeout_ms: 10000,
  },
  recordings: { cluster: "default", consumer_group: "recordings", raw: raw("recordings.raw", 90) },
  "omega-results": { cluster: "default", consumer_group: "shared-results", raw: raw("omega.raw", 60) },
})
  .split("\n")
  .map((l) => (l ? `  ${l}` : l))
  .join("\n")}`);
  const deploymentEnv = {
    TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: "kafka:9092",
    TASKBROKER_DB_PATH: "/opt/sqlite/taskbroker-activations.sqlite",
    TASKBROKER_STATSD_ADDR: "127.0.0.1:8125",
  };

  test("resolves topics, raw topics, the shared group, the produce-only dead-letter topic and the flat defaults", () => {
    const r = resolveBrokerConfig(deploymentEnv, file());
    expect(r.notes).toEqual([]);
    const c = r.config;
    expect(c.store.sqlite.path).toBe("/opt/sqlite/taskbroker-activations.sqlite");
    expect(c.statsd_addr).toBe("127.0.0.1:8125");
    expect(Object.keys(c.kafka_topics)).toHaveLength(9);
    const plan = kafkaPlan(c);
    expect(plan.retryTopic).toBe("taskworker");
    expect(plan.deadletterTopic).toBe("taskworker-dlq");
    expect(plan.publishCluster.address).toBe("kafka:9092");
    expect(plan.consumed.map((t) => t.topic)).not.toContain("taskworker-dlq");
    const groups = Object.fromEntries(plan.groups.map((g) => [g.groupId, g.topics.map((t) => t.topic)]));
    expect(groups).toEqual({
      "shared-results": ["alpha-results", "beta-results", "gamma-results", "omega-results"],
      "delta-items": ["delta-items"],
      recordings: ["recordings"],
      taskworker: ["taskworker"],
      "uploads-0": ["uploads"],
    });
    const byTopic = Object.fromEntries(plan.consumed.map((t) => [t.topic, t]));
    // Flat defaults apply to every topic that sets none; a topic's own setting wins.
    expect(byTopic["alpha-results"]).toMatchObject({
      sessionTimeoutMs: 60000,
      autoOffsetReset: "latest",
      fromBeginning: false,
    });
    expect(byTopic.uploads).toMatchObject({
      sessionTimeoutMs: 10000,
      autoOffsetReset: "earliest",
      fromBeginning: true,
    });
    expect(byTopic.recordings!.raw).toMatchObject({
      namespace: "recordings.raw",
      application: "sentry",
      processing_deadline_duration: 90,
    });
    expect(byTopic.taskworker!.raw).toBeUndefined();
    expect(plan.declared.find((d) => d.topic === "taskworker-dlq")).toMatchObject({
      partitions: 1,
      clusterName: "default",
    });
  });

  test("the external-Kafka variant: upper-case enums, SCRAM-SHA-512, and empty values meaning unset", () => {
    const c = loadBrokerConfig(
      {
        ...deploymentEnv,
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SECURITY_PROTOCOL: "SASL_SSL",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_MECHANISM: "SCRAM-SHA-512",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_USERNAME: "broker",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_PASSWORD: "s3cret",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SSL_CA_LOCATION: "",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SSL_CERTIFICATE_LOCATION: "",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SSL_KEY_LOCATION: "",
      },
      file(),
    );
    expect(c.kafka_clusters.default).toEqual({
      address: "kafka:9092",
      security_protocol: "sasl_ssl",
      sasl_mechanism: "scram-sha-512",
      sasl_username: "broker",
      sasl_password: "s3cret",
    });
    const plain = loadBrokerConfig(
      {
        ...deploymentEnv,
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SECURITY_PROTOCOL: "PLAINTEXT",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_MECHANISM: "",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_USERNAME: "",
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_PASSWORD: "",
      },
      file(),
    );
    expect(plain.kafka_clusters.default).toEqual({ address: "kafka:9092", security_protocol: "plaintext" });
  });
});

describe("log_filter in the reference's directive syntax", () => {
  test("a default level plus per-target levels, the reference's module names mapped onto our components", () => {
    expect(parseLogFilter("info,librdkafka=warn,h2=off")).toEqual({
      level: "info",
      targets: { kafka_client: "warn", rpc_transport: "off" },
    });
    expect(parseLogFilter("debug,rdkafka=off,taskbroker::upkeep=trace")).toEqual({
      level: "debug",
      targets: { kafka_client: "off", upkeep: "trace" },
    });
    expect(parseLogFilter("ERROR")).toEqual({ level: "error", targets: {} });
    expect(parseLogFilter("taskbroker=warn,store=debug")).toEqual({ level: "warn", targets: { store: "debug" } });
    expect(parseLogFilter("info,kafka=loud")).toEqual({ problem: '"loud" in "kafka=loud" is not a level' });
    expect(configErrorOf(() => loadBrokerConfig({ TASKBROKER_LOG_FILTER: "info,kafka=loud" }))).toBe(
      'TASKBROKER_LOG_FILTER="info,kafka=loud" is invalid: expected directives such as "info,librdkafka=warn,h2=off": a level, then target=level pairs',
    );
  });

  test("lines are kept or dropped by their component's level", () => {
    const lines: string[] = [];
    const filter = parseLogFilter("warn,upkeep=debug,librdkafka=off");
    if ("problem" in filter) throw new Error(filter.problem);
    const root = createLogger({ format: "text", level: filter, write: (l) => lines.push(l) });
    root.info("dropped_root_info");
    root.warn("kept_root_warn");
    root.child({ component: "upkeep" }).debug("kept_upkeep_debug");
    root.child({ component: "kafka_client" }).error("dropped_client_error");
    root.child({ component: "store" }).info("dropped_store_info");
    expect(lines.map((l) => l.split(/\s+/)[2])).toEqual(["kept_root_warn", "kept_upkeep_debug"]);
  });
});
