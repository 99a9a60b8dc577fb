// Broker configuration as an operator meets it: TASKBROKER_* variables with
// __ nesting, a YAML file under them, the reference broker's flat names, and
// one-line errors that name what the operator wrote. In-process: loading is
// pure apart from reading the YAML file.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configFields, loadBrokerConfig, resolveBrokerConfig } from "../src/config/load.ts";
import { brokerConfigSchema } from "../src/config/broker.ts";
import { loadConfig } from "../src/config/source.ts";
import { settings } from "../src/config/walk.ts";
import { createLogger } from "../src/log.ts";
import { z } from "zod";
import { configErrorOf } from "./support/config-errors.ts";

const dir = mkdtempSync(join(tmpdir(), "config-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function yamlFile(text: string): string {
  const path = join(dir, `broker-${n++}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** The one-line ConfigError that loading the broker configuration from `env` (and `yamlPath`) fails with. */
const errorOf = (env: Record<string, string>, yamlPath?: string) =>
  configErrorOf(() => loadBrokerConfig(env, yamlPath));

describe("defaults", () => {
  test("an empty environment gives the documented defaults", () => {
    const c = loadBrokerConfig({});
    expect(c.grpc_port).toBe(50051);
    expect(c.store.sqlite.path).toBe("./taskbroker-inflight.sqlite");
    expect(c.store.max_pending_count).toBe(2048);
    expect(c.store.max_delay_count).toBe(8192);
    expect(c.store.max_processing_count).toBe(2048);
    expect(c.max_delayed_task_allowed_sec).toBe(3600);
    expect(c.upkeep_task_interval_ms).toBe(1000);
    expect(c.upkeep_deadline_reset_skip_after_startup_sec).toBe(60);
    expect(c.store.processing_deadline_grace_sec).toBe(3);
    expect(c.store.max_processing_attempts).toBe(5);
    expect(c.kafka_deadletter_topic).toBe("taskworker-dlq");
    expect(c.grpc_shared_secret).toEqual([]);
    expect(c.kafka_topics).toEqual({});
  });

  test("variables of other programs are not ours to judge", () => {
    expect(loadBrokerConfig({ PATH: "/bin", TASKWORKER_CONCURRENCY: "nonsense", HOME: "/root" }).grpc_port).toBe(50051);
  });

  test("every setting carries a description for --help", () => {
    const undocumented = settings(brokerConfigSchema)
      .filter((s) => !s.info.description)
      .map((s) => s.path.join("."));
    expect(undocumented).toEqual([]);
  });
});

describe("environment", () => {
  test("__ nests: store, sqlite, cluster and topic maps", () => {
    const c = loadBrokerConfig({
      TASKBROKER_GRPC_PORT: "6000",
      TASKBROKER_STORE__SQLITE__PATH: "/data/inflight.sqlite",
      TASKBROKER_STORE__MAX_PENDING_COUNT: "10",
      TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: "kafka-1:9092,kafka-2:9092",
      TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_USERNAME: "broker",
      TASKBROKER_KAFKA_TOPICS__TASKWORKER__CLUSTER: "default",
      TASKBROKER_KAFKA_TOPICS__TASKWORKER__CONSUMER_GROUP: "g1",
    });
    expect(c.grpc_port).toBe(6000);
    expect(c.store.sqlite.path).toBe("/data/inflight.sqlite");
    expect(c.store.max_pending_count).toBe(10);
    expect(c.store.max_delay_count).toBe(8192);
    expect(c.kafka_clusters.default?.address).toBe("kafka-1:9092,kafka-2:9092");
    expect(c.kafka_clusters.default?.sasl_username).toBe("broker");
    expect(c.kafka_topics.taskworker?.cluster).toBe("default");
    expect(c.kafka_topics.taskworker?.consumer_group).toBe("g1");
    expect(c.kafka_topics.taskworker?.produce_only).toBe(false);
  });

  test("map keys are lower-cased", () => {
    const c = loadBrokerConfig({
      TASKBROKER_KAFKA_CLUSTERS__EU__ADDRESS: "eu:9092",
      TASKBROKER_KAFKA_TOPICS__INGEST_EVENTS__CLUSTER: "eu",
    });
    expect(Object.keys(c.kafka_clusters)).toEqual(["eu"]);
    expect(Object.keys(c.kafka_topics)).toEqual(["ingest_events"]);
  });

  test("durations accept ms, s, m and a bare number in the field's unit", () => {
    const c = loadBrokerConfig({
      TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100ms",
      TASKBROKER_SHUTDOWN_DRAIN_MS: "5s",
      TASKBROKER_RUNTIME_CONFIG_RELOAD_MS: "2m",
      TASKBROKER_KAFKA_BATCH_MAX_MS: "250",
    });
    expect(c.upkeep_task_interval_ms).toBe(100);
    expect(c.shutdown_drain_ms).toBe(5000);
    expect(c.runtime_config_reload_ms).toBe(120_000);
    expect(c.store.insert_batch_max_time_ms).toBe(250);
  });

  test("_sec settings take seconds or a duration", () => {
    const c = loadBrokerConfig({
      TASKBROKER_MAX_DELAYED_TASK_ALLOWED_SEC: "2m",
      TASKBROKER_UPKEEP_DEADLINE_RESET_SKIP_AFTER_STARTUP_SEC: "0",
      TASKBROKER_STORE__PROCESSING_DEADLINE_GRACE_SEC: "1500ms",
    });
    expect(c.max_delayed_task_allowed_sec).toBe(120);
    expect(c.upkeep_deadline_reset_skip_after_startup_sec).toBe(0);
    expect(c.store.processing_deadline_grace_sec).toBe(1.5);
    expect(errorOf({ TASKBROKER_MAX_DELAYED_TASK_ALLOWED_SEC: "-5" })).toBe(
      'TASKBROKER_MAX_DELAYED_TASK_ALLOWED_SEC="-5" is invalid: expected seconds, or a duration such as "5s", "2m", "1h"',
    );
  });

  test("shared secrets are a JSON list (rotation) or a comma list", () => {
    expect(loadBrokerConfig({ TASKBROKER_GRPC_SHARED_SECRET: '["new","old"]' }).grpc_shared_secret).toEqual([
      "new",
      "old",
    ]);
    expect(loadBrokerConfig({ TASKBROKER_GRPC_SHARED_SECRET: "a,b" }).grpc_shared_secret).toEqual(["a", "b"]);
  });

  test("an empty variable counts as unset", () => {
    expect(loadBrokerConfig({ TASKBROKER_GRPC_PORT: "" }).grpc_port).toBe(50051);
  });
});

describe("YAML file and precedence", () => {
  test("the file sets nested keys and topic names the environment cannot spell", () => {
    const path = yamlFile(`
grpc_port: 7000
store:
  sqlite:
    path: /var/lib/tb.sqlite
  max_pending_count: 99
kafka_clusters:
  default:
    address: k:9092
kafka_topics:
  ingest-events.v2:
    cluster: default
`);
    const c = loadBrokerConfig({}, path);
    expect(c.grpc_port).toBe(7000);
    expect(c.store.sqlite.path).toBe("/var/lib/tb.sqlite");
    expect(c.store.max_pending_count).toBe(99);
    expect(Object.keys(c.kafka_topics)).toEqual(["ingest-events.v2"]);
  });

  test("the environment wins over the file, field by field", () => {
    const path = yamlFile("grpc_port: 7000\nstore:\n  max_pending_count: 99\n  max_delay_count: 5\n");
    const c = loadBrokerConfig({ TASKBROKER_GRPC_PORT: "7001", TASKBROKER_STORE__MAX_DELAY_COUNT: "6" }, path);
    expect(c.grpc_port).toBe(7001);
    expect(c.store.max_pending_count).toBe(99);
    expect(c.store.max_delay_count).toBe(6);
  });

  test("a bad value in the file is named by its key and file", () => {
    const path = yamlFile("store:\n  max_pending_count: lots\n");
    expect(errorOf({}, path)).toBe(`store.max_pending_count in ${path}="lots" is invalid: expected an integer >= 1`);
  });

  test("an unknown key in the file is an error, not silently dropped", () => {
    const path = yamlFile("store:\n  max_pending_cont: 5\n");
    expect(errorOf({}, path)).toBe(
      `unknown setting store.max_pending_cont in ${path} (did you mean store.max_pending_count?)`,
    );
  });

  test("an unknown key in the file suggests the setting it is closest to, at any depth, and nothing when none is close", () => {
    const top = yamlFile("kafka_topcs:\n  taskworker:\n    cluster: default\n");
    expect(errorOf({}, top)).toBe(`unknown setting kafka_topcs in ${top} (did you mean kafka_topics?)`);
    const inMap = yamlFile("kafka_topics:\n  taskworker:\n    consumer_grup: tw\n");
    expect(errorOf({}, inMap)).toBe(
      `unknown setting kafka_topics.taskworker.consumer_grup in ${inMap} (did you mean kafka_topics.taskworker.consumer_group?)`,
    );
    const far = yamlFile("completely_unrelated_name: 1\n");
    expect(errorOf({}, far)).toBe(`unknown setting completely_unrelated_name in ${far}`);
  });

  test("a missing file and invalid YAML are one-line errors", () => {
    expect(errorOf({}, join(dir, "nope.yaml"))).toContain("cannot read config file");
    expect(errorOf({}, yamlFile("store: [unclosed\n"))).toContain("is not valid YAML");
  });

  test("the reference broker's flat keys work in the file too", () => {
    const c = loadBrokerConfig({}, yamlFile("db_path: /old/style.sqlite\nmax_pending_count: 12\n"));
    expect(c.store.sqlite.path).toBe("/old/style.sqlite");
    expect(c.store.max_pending_count).toBe(12);
  });
});

describe("flat names of the reference broker", () => {
  test("flat store names map onto the nested settings", () => {
    const c = loadBrokerConfig({
      TASKBROKER_DB_PATH: "/flat.sqlite",
      TASKBROKER_MAX_PENDING_COUNT: "11",
      TASKBROKER_MAX_DELAY_COUNT: "12",
      TASKBROKER_MAX_PROCESSING_COUNT: "13",
      TASKBROKER_DB_MAX_SIZE: "1000000",
      TASKBROKER_MAX_PROCESSING_ATTEMPTS: "7",
      TASKBROKER_PROCESSING_DEADLINE_GRACE_SEC: "1",
    });
    expect(c.store.sqlite.path).toBe("/flat.sqlite");
    expect(c.store.max_pending_count).toBe(11);
    expect(c.store.max_delay_count).toBe(12);
    expect(c.store.max_processing_count).toBe(13);
    expect(c.store.max_size).toBe(1_000_000);
    expect(c.store.max_processing_attempts).toBe(7);
    expect(c.store.processing_deadline_grace_sec).toBe(1);
  });

  test("a nested name set by the user wins over its flat twin, and the override is noted", () => {
    const r = resolveBrokerConfig({
      TASKBROKER_DB_PATH: "/flat.sqlite",
      TASKBROKER_STORE__SQLITE__PATH: "/nested.sqlite",
    });
    expect(r.config.store.sqlite.path).toBe("/nested.sqlite");
    expect(r.notes).toEqual(["TASKBROKER_DB_PATH is overridden by TASKBROKER_STORE__SQLITE__PATH"]);
  });

  test("flat Kafka names build the default cluster and the topic, with the reference's group", () => {
    const c = loadBrokerConfig({
      TASKBROKER_KAFKA_CLUSTER: "k1:9092",
      TASKBROKER_KAFKA_TOPIC: "tasks",
      TASKBROKER_KAFKA_SASL_PASSWORD: "pw",
      TASKBROKER_KAFKA_AUTO_OFFSET_RESET: "earliest",
    });
    // As the reference normalises the legacy form: dead letters go to cluster "deadletter" (the main address, its own auth).
    expect(c.kafka_clusters).toEqual({
      default: { address: "k1:9092", security_protocol: "plaintext", sasl_password: "pw" },
      deadletter: { address: "k1:9092", security_protocol: "plaintext" },
    });
    expect(c.kafka_topics["taskworker-dlq"]).toMatchObject({
      cluster: "deadletter",
      consumer_group: "taskworker",
      produce_only: true,
    });
    expect(c.kafka_topics.tasks).toMatchObject({ cluster: "default", consumer_group: "taskworker" });
    // Not part of the legacy form: the default of every topic, in either form.
    expect(c.kafka_auto_offset_reset).toBe("earliest");
    const c2 = loadBrokerConfig({ TASKBROKER_KAFKA_CLUSTER: "k1:9092", TASKBROKER_KAFKA_CONSUMER_GROUP: "g" });
    expect(c2.kafka_topics).toMatchObject({ taskworker: { cluster: "default", consumer_group: "g" } });
  });

  test("flat Kafka names mixed with the maps are an error naming both", () => {
    expect(errorOf({ TASKBROKER_KAFKA_TOPIC: "t", TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: "k:1" })).toBe(
      "TASKBROKER_KAFKA_TOPIC (the deprecated single-cluster Kafka form) cannot be combined with TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS (kafka_clusters / kafka_topics): use one form",
    );
    const path = yamlFile("kafka_topics:\n  t:\n    cluster: default\n");
    expect(errorOf({ TASKBROKER_KAFKA_CLUSTER: "k:1" }, path)).toContain(
      "cannot be combined with kafka_topics.t.cluster (kafka_clusters",
    );
  });

  test("reference settings with no meaning here are accepted with a note", () => {
    const r = resolveBrokerConfig({ TASKBROKER_SENTRY_DSN: "https://x@y/1" });
    expect(r.notes[0]).toContain("TASKBROKER_SENTRY_DSN");
  });
});

describe("errors: one line naming variable, value and expectation", () => {
  test.each([
    ["TASKBROKER_GRPC_PORT", "abc", 'TASKBROKER_GRPC_PORT="abc" is invalid: expected an integer from 0 to 65535'],
    ["TASKBROKER_GRPC_PORT", "70000", 'TASKBROKER_GRPC_PORT="70000" is invalid: expected an integer from 0 to 65535'],
    [
      "TASKBROKER_STORE__MAX_PENDING_COUNT",
      "0",
      'TASKBROKER_STORE__MAX_PENDING_COUNT="0" is invalid: expected an integer >= 1',
    ],
    ["TASKBROKER_LOG_FORMAT", "xml", 'TASKBROKER_LOG_FORMAT="xml" is invalid: expected one of text, json'],
    [
      "TASKBROKER_STORE__SQLITE__SYNCHRONOUS",
      "off",
      'TASKBROKER_STORE__SQLITE__SYNCHRONOUS="off" is invalid: expected one of normal, full',
    ],
    [
      "TASKBROKER_KAFKA_CREATE_MISSING_TOPICS",
      "maybe",
      'TASKBROKER_KAFKA_CREATE_MISSING_TOPICS="maybe" is invalid: expected true or false',
    ],
    [
      "TASKBROKER_UPKEEP_TASK_INTERVAL_MS",
      "5 parsecs",
      'TASKBROKER_UPKEEP_TASK_INTERVAL_MS="5 parsecs" is invalid: expected a duration such as "250ms", "5s", "2m" or a number',
    ],
    [
      "TASKBROKER_MAX_PENDING_COUNT",
      "many",
      'TASKBROKER_MAX_PENDING_COUNT="many" is invalid: expected an integer >= 1',
    ],
  ])("%s=%s", (name, value, message) => {
    expect(errorOf({ [name]: value })).toBe(message);
  });

  test("a value with a newline still gives one line", () => {
    expect(errorOf({ TASKBROKER_GRPC_HOST: "ok", TASKBROKER_GRPC_PORT: "1\n2" })).toBe(
      'TASKBROKER_GRPC_PORT="1\\n2" is invalid: expected an integer from 0 to 65535',
    );
  });

  test("unknown TASKBROKER_ variables stop start-up, with a suggestion for a typo", () => {
    expect(errorOf({ TASKBROKER_GRCP_PORT: "1" })).toBe(
      "unknown variable TASKBROKER_GRCP_PORT (did you mean TASKBROKER_GRPC_PORT?); --help lists every variable",
    );
    expect(errorOf({ TASKBROKER_STORE__SQLITE__PTH: "/x" })).toContain(
      "unknown variable TASKBROKER_STORE__SQLITE__PTH",
    );
    expect(errorOf({ TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADRESS: "x" })).toContain("unknown variable");
  });

  test("a required map field that is missing names the variable that sets it", () => {
    expect(errorOf({ TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_USERNAME: "u" })).toBe(
      "TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS is required: expected a non-empty string",
    );
  });

  test("a topic on an undeclared cluster, and several topics without a retry topic", () => {
    expect(errorOf({ TASKBROKER_KAFKA_TOPICS__T__CLUSTER: "eu" })).toBe(
      'TASKBROKER_KAFKA_TOPICS__T__CLUSTER="eu" is invalid: expected a configured Kafka cluster (set TASKBROKER_KAFKA_CLUSTERS__EU__ADDRESS)',
    );
    expect(
      errorOf({
        TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: "k:1",
        TASKBROKER_KAFKA_TOPICS__A__CLUSTER: "default",
        TASKBROKER_KAFKA_TOPICS__B__CLUSTER: "default",
      }),
    ).toBe("TASKBROKER_KAFKA_RETRY_TOPIC is required when several topics are consumed (a, b)");
  });

  test("secret values are shown as ***", () => {
    const message = errorOf({ TASKBROKER_GRPC_SHARED_SECRET: '["unterminated' });
    expect(message).toBe(
      'TASKBROKER_GRPC_SHARED_SECRET=*** is invalid: expected a JSON array of strings such as ["a","b"], or a comma list',
    );
    expect(message).not.toContain("unterminated");
  });
});

describe("the effective configuration as logged", () => {
  test("secrets are redacted, nested ones too", () => {
    const c = loadBrokerConfig({
      TASKBROKER_GRPC_SHARED_SECRET: '["topsecret1","topsecret2"]',
      TASKBROKER_ADMIN_TOKEN: "tokentoken",
      TASKBROKER_KAFKA_CLUSTERS__DEFAULT__ADDRESS: "k:1",
      TASKBROKER_KAFKA_CLUSTERS__DEFAULT__SASL_PASSWORD: "hunter2",
      TASKBROKER_KAFKA_TOPICS__TASKS__CLUSTER: "default",
    });
    const lines: string[] = [];
    createLogger({ format: "text", level: "info", write: (l) => lines.push(l) }).info("config", configFields(c));
    createLogger({ format: "json", level: "info", write: (l) => lines.push(l) }).info("config", configFields(c));
    for (const line of lines) {
      expect(line).not.toMatch(/topsecret|tokentoken|hunter2/);
      expect(line).toContain("***");
      expect(line).toContain("k:1");
    }
  });
});

describe("generic loader for other programs", () => {
  test("a worker-style schema with its own prefix", () => {
    const schema = z.object({
      concurrency: z.coerce.number().int().min(1).default(4),
      broker: z.object({ address: z.string().default("127.0.0.1:50051") }).prefault({}),
    });
    const c = loadConfig({
      schema,
      prefix: "TASKWORKER_",
      env: { TASKWORKER_CONCURRENCY: "8", TASKWORKER_BROKER__ADDRESS: "b:1" },
    });
    expect(c).toEqual({ concurrency: 8, broker: { address: "b:1" } });
    expect(() => loadConfig({ schema, prefix: "TASKWORKER_", env: { TASKWORKER_CONCURENCY: "8" } })).toThrow(
      "unknown variable TASKWORKER_CONCURENCY (did you mean TASKWORKER_CONCURRENCY?)",
    );
    expect(() => loadConfig({ schema, prefix: "TASKWORKER_", env: { TASKWORKER_CONCURRENCY: "0" } })).toThrow(
      'TASKWORKER_CONCURRENCY="0" is invalid: expected an integer >= 1',
    );
  });
});
