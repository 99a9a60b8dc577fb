// The admin HTTP server of a real broker process: liveness/readiness, /metrics
// parsed as Prometheus text with counters moving by the right amounts across a
// scripted run (produce, claim, complete/retry/fail, upkeep, dead letter), the
// JSON API the dashboard and `inspect --admin` use, the admin token, JSON logs
// with secrets redacted, and statsd output.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { create } from "@bufbuild/protobuf";
import { encode } from "@msgpack/msgpack";
import { TaskActivationSchema, TaskActivationStatus } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { activation, brokerClients, uniqueId } from "./support/activations.ts";
import { parsePrometheusText, sumOf, valueOf, type Exposition } from "./support/prom-text.ts";

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
    await Bun.sleep(25);
  }
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

const base = (b: BrokerProcess) => `http://127.0.0.1:${b.adminPort}`;
async function scrape(b: BrokerProcess, headers: Record<string, string> = {}): Promise<Exposition> {
  const res = await fetch(`${base(b)}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return parsePrometheusText(await res.text());
}

describe("admin server, no token", () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await spawnBroker({
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_ADMIN_HOST: "127.0.0.1",
      TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
    });
  }, 30_000);
  afterAll(async () => {
    await broker?.stop();
  });

  test("reports its admin port and answers liveness and readiness", async () => {
    expect(broker.adminPort).toBeGreaterThan(0);
    const health = await fetch(`${base(broker)}/health`);
    expect(health.status).toBe(200);
    const ready = await until("ready", async () => {
      const r = await fetch(`${base(broker)}/ready`);
      return r.status === 200
        ? ((await r.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> })
        : undefined;
    });
    expect(ready.ready).toBe(true);
    expect(ready.checks.store!.ok).toBe(true);
    expect(ready.checks.upkeep!.ok).toBe(true);
    expect(ready.checks.kafka).toBeUndefined();
  });

  test("counters and gauges follow a scripted run", async () => {
    const { ingest, consumer } = brokerClients(broker.port);
    const m0 = await scrape(broker);
    const nsA = `alpha-${uniqueId().slice(-6)}`;
    const nsB = `beta-${uniqueId().slice(-6)}`;
    const produced = [
      ...Array.from({ length: 6 }, () => activation({ namespace: nsA })),
      ...Array.from({ length: 4 }, () => activation({ namespace: nsB })),
    ];
    const res = await ingest.produce({ activations: produced });
    expect(res.accepted).toBe(10);

    const m1 = await scrape(broker);
    const delta = (a: Exposition, b: Exposition, name: string, labels: Record<string, string> = {}) =>
      sumOf(b, name, labels) - sumOf(a, name, labels);
    expect(delta(m0, m1, "taskbroker_ingest_total", { source: "rpc", result: "accepted" })).toBe(10);
    expect(delta(m0, m1, "taskbroker_rpc_requests_total", { method: "Produce", code: "OK" })).toBe(1);
    await until("namespace depth gauges", async () => {
      const m = await scrape(broker);
      return (
        valueOf(m, "taskbroker_store_namespace_depth", { namespace: nsA, state: "pending" }) === 6 &&
        valueOf(m, "taskbroker_store_namespace_depth", { namespace: nsB, state: "pending" }) === 4
      );
    });

    // Claim 4 (oldest first: all from alpha), then complete 2, retry 1, fail 1.
    const claimed: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await consumer.getTask({});
      claimed.push(r.task!.id);
    }
    expect(claimed).toEqual(produced.slice(0, 4).map((a) => a.id));
    await consumer.setTaskStatus({ id: claimed[0]!, status: TaskActivationStatus.COMPLETE });
    await consumer.setTaskStatus({ id: claimed[1]!, status: TaskActivationStatus.COMPLETE });
    await consumer.setTaskStatus({ id: claimed[2]!, status: TaskActivationStatus.RETRY });
    await consumer.setTaskStatus({ id: claimed[3]!, status: TaskActivationStatus.FAILURE });

    const m2 = await scrape(broker);
    expect(delta(m1, m2, "taskbroker_dispatch_total", { namespace: nsA })).toBe(4);
    expect(delta(m1, m2, "taskbroker_dispatch_total", { namespace: nsB })).toBe(0);
    expect(delta(m1, m2, "taskbroker_status_total", { status: "complete" })).toBe(2);
    expect(delta(m1, m2, "taskbroker_status_total", { status: "retry" })).toBe(1);
    expect(delta(m1, m2, "taskbroker_status_total", { status: "failure" })).toBe(1);
    expect(delta(m1, m2, "taskbroker_rpc_requests_total", { method: "GetTask", code: "OK" })).toBe(4);
    expect(delta(m1, m2, "taskbroker_rpc_requests_total", { method: "SetTaskStatus", code: "OK" })).toBe(4);
    expect(delta(m1, m2, "taskbroker_rpc_duration_seconds_count", { method: "GetTask" })).toBe(4);
    expect(m2.types.get("taskbroker_rpc_duration_seconds")).toBe("histogram");
    // +Inf bucket equals the count.
    expect(valueOf(m2, "taskbroker_rpc_duration_seconds_bucket", { method: "GetTask", le: "+Inf" })).toBe(
      valueOf(m2, "taskbroker_rpc_duration_seconds_count", { method: "GetTask" }),
    );

    // Upkeep: the retry becomes a new pending activation, the failure is discarded.
    const m3 = await until("upkeep to retry and discard", async () => {
      const m = await scrape(broker);
      return delta(m2, m, "taskbroker_upkeep_transitions_total", { action: "retried" }) === 1 &&
        delta(m2, m, "taskbroker_upkeep_transitions_total", { action: "discarded" }) === 1 &&
        valueOf(m, "taskbroker_store_namespace_depth", { namespace: nsA, state: "pending" }) === 3
        ? m
        : undefined;
    });
    expect(valueOf(m3, "taskbroker_store_namespace_depth", { namespace: nsB, state: "pending" })).toBe(4);
    expect(sumOf(m3, "taskbroker_upkeep_duration_seconds_count")).toBeGreaterThan(
      sumOf(m0, "taskbroker_upkeep_duration_seconds_count"),
    );
    expect(valueOf(m3, "taskbroker_store_oldest_pending_age_seconds")).toBeGreaterThanOrEqual(0);
    expect(valueOf(m3, "taskbroker_store_size_bytes", { file: "db" })).toBeGreaterThan(0);
    expect(valueOf(m3, "taskbroker_store_size_bytes", { file: "wal" })).toBeGreaterThanOrEqual(0);

    // GetTask on an empty namespace: NOT_FOUND is counted under its code.
    await consumer.getTask({ application: "tests", namespace: `empty-${uniqueId()}` }).catch(() => {});
    const m4 = await scrape(broker);
    expect(delta(m3, m4, "taskbroker_rpc_requests_total", { method: "GetTask", code: "NOT_FOUND" })).toBe(1);
  }, 20_000); // two background recounts (2 s apart) are waited for; more under load

  test("JSON API: overview, one activation decoded, dead letters with replay and discard", async () => {
    const { ingest, consumer } = brokerClients(broker.port);
    const ns = `json-${uniqueId().slice(-6)}`;
    const withParams = create(TaskActivationSchema, {
      ...activation({ namespace: ns, taskname: "tests.params" }),
      headers: { "compression-type": "zstd" },
      parametersBytes: Bun.zstdCompressSync(
        encode({ args: [42, "x"], kwargs: { org: "acme", blob: new Uint8Array([0xff]) } }),
      ),
    });
    await ingest.produce({ activations: [withParams] });

    const act = (await (await fetch(`${base(broker)}/api/activations/${withParams.id}`)).json()) as Record<
      string,
      unknown
    >;
    expect(act).toMatchObject({
      id: withParams.id,
      namespace: ns,
      taskname: "tests.params",
      state: "pending",
      attempts: 0,
      parameters: { args: [42, "x"], kwargs: { org: "acme", blob: { $base64: "/w==" } } },
    });
    expect((await fetch(`${base(broker)}/api/activations/nope`)).status).toBe(404);

    // Two dead letters: fail activations whose policy is DEADLETTER.
    const doomed = [0, 1].map(() => activation({ namespace: ns, taskname: "tests.doomed", deadLetterAfter: 1 }));
    await ingest.produce({ activations: doomed });
    for (;;) {
      const r = await consumer.getTask({ application: "tests", namespace: ns }).catch(() => null);
      if (!r?.task) break;
      if (r.task.taskname === "tests.doomed")
        await consumer.setTaskStatus({ id: r.task.id, status: TaskActivationStatus.FAILURE });
      else await consumer.setTaskStatus({ id: r.task.id, status: TaskActivationStatus.COMPLETE });
    }
    type Page = {
      items: Array<{ id: string; taskname: string; namespace: string; attempts: number }>;
      total: number;
      nextAfter: string | null;
    };
    const mine = (p: Page) => p.items.filter((d) => d.namespace === ns);
    const page = await until("two dead letters", async () => {
      const p = (await (await fetch(`${base(broker)}/api/deadletters?limit=500`)).json()) as Page;
      return mine(p).length === 2 ? p : undefined;
    });
    expect(mine(page).map((d) => d.taskname)).toEqual(["tests.doomed", "tests.doomed"]);
    const first = (await (await fetch(`${base(broker)}/api/deadletters?limit=1`)).json()) as Page;
    expect(first.items.length).toBe(1);
    expect(first.nextAfter).toBe(first.items[0]!.id);
    const second = (await (
      await fetch(`${base(broker)}/api/deadletters?limit=1&after=${first.nextAfter}`)
    ).json()) as Page;
    expect(second.items[0]!.id > first.items[0]!.id).toBe(true);

    const [replayMe, discardMe] = mine(page).map((d) => d.id);
    const replay = await fetch(`${base(broker)}/api/deadletters/${replayMe}/replay`, { method: "POST" });
    expect(replay.status).toBe(200);
    const { newId } = (await replay.json()) as { newId: string };
    const again = await consumer.getTask({ application: "tests", namespace: ns });
    expect(again.task!.id).toBe(newId);
    expect(again.task!.taskname).toBe("tests.doomed");
    expect((await fetch(`${base(broker)}/api/deadletters/${discardMe}/discard`, { method: "POST" })).status).toBe(200);
    expect((await fetch(`${base(broker)}/api/deadletters/${discardMe}/discard`, { method: "POST" })).status).toBe(404);
    const after = (await (await fetch(`${base(broker)}/api/deadletters?limit=500`)).json()) as Page;
    expect(mine(after)).toEqual([]);

    const overview = (await (await fetch(`${base(broker)}/api/overview`)).json()) as {
      totals: Record<string, number>;
      byNamespace: Array<{ namespace: string; state: string; count: number }>;
      rates: { lastMinute: Record<string, number>; series: unknown[] };
    };
    expect(Object.keys(overview.totals).sort()).toEqual([
      "claimed",
      "complete",
      "delay",
      "failure",
      "pending",
      "processing",
      "retry",
    ]);
    expect(overview.rates.lastMinute).toHaveProperty("dispatched");
    const html = await fetch(`${base(broker)}/`);
    expect(html.headers.get("content-type")).toContain("text/html");
    expect(await html.text()).toContain('id="deadletters"');
  });
});

describe("admin server with a token; logs", () => {
  let broker: BrokerProcess;
  const token = "tok-" + crypto.randomUUID();
  const secret = "sig-" + crypto.randomUUID();
  let statsd: ReturnType<typeof createSocket>;
  const datagrams: string[] = [];
  beforeAll(async () => {
    statsd = createSocket("udp4");
    statsd.on("message", (m) => datagrams.push(m.toString()));
    await new Promise<void>((r) => statsd.bind(0, "127.0.0.1", () => r()));
    broker = await spawnBroker({
      TASKBROKER_ADMIN_ENABLED: "true",
      TASKBROKER_ADMIN_HOST: "127.0.0.1",
      TASKBROKER_ADMIN_TOKEN: token,
      TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify([secret]),
      TASKBROKER_LOG_FILTER: "debug",
      TASKBROKER_STATSD_ADDRESS: `127.0.0.1:${statsd.address().port}`,
      TASKBROKER_STATSD_INTERVAL_MS: "100",
    });
  }, 30_000);
  afterAll(async () => {
    await broker?.stop();
    statsd?.close();
  });

  test("token required except for probes; bearer and login cookie both work", async () => {
    expect((await fetch(`${base(broker)}/health`)).status).toBe(200);
    expect((await fetch(`${base(broker)}/metrics`)).status).toBe(401);
    expect((await fetch(`${base(broker)}/api/overview`)).status).toBe(401);
    expect((await fetch(`${base(broker)}/api/overview`, { headers: { authorization: "Bearer wrong" } })).status).toBe(
      401,
    );
    const page = await fetch(`${base(broker)}/`, { headers: { accept: "text/html" }, redirect: "manual" });
    expect(page.status).toBe(303);
    expect(page.headers.get("location")).toBe("/login");
    expect((await fetch(`${base(broker)}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(
      200,
    );

    const bad = await fetch(`${base(broker)}/login`, {
      method: "POST",
      body: new URLSearchParams({ token: "nope" }),
      redirect: "manual",
    });
    expect(bad.status).toBe(401);
    const login = await fetch(`${base(broker)}/login`, {
      method: "POST",
      body: new URLSearchParams({ token }),
      redirect: "manual",
    });
    expect(login.status).toBe(303);
    const cookie = login.headers.get("set-cookie")!;
    expect(cookie).toContain("HttpOnly");
    expect(cookie).not.toContain(token);
    const withCookie = await fetch(`${base(broker)}/api/overview`, { headers: { cookie: cookie.split(";")[0]! } });
    expect(withCookie.status).toBe(200);
  });

  test("effective config logged at start-up with secrets redacted", async () => {
    const config = broker
      .logs()
      .split("\n")
      .find((l) => / INFO  config /.test(l))!;
    expect(config).toContain("admin_token=***");
    expect(config).toContain("grpc_shared_secret=");
    expect(broker.logs()).not.toContain(token);
    expect(broker.logs()).not.toContain(secret);
  }, 30_000);

  test("statsd receives the reference broker's store gauges (names in docs/metrics.md)", async () => {
    const line = await until("a statsd datagram with the pending depth", async () =>
      datagrams
        .join("\n")
        .split("\n")
        .find((l) => /^taskbroker\.upkeep\.current_pending_tasks:\d+\|g$/.test(l)),
    );
    expect(line).toBeDefined();
  });
});

test("TASKBROKER_LOG_FORMAT=json: every line one JSON object; TASKBROKER_LOG_FILTER=warn hides info", async () => {
  const { tempDir } = await import("./support/broker-process.ts");
  const run = async (env: Record<string, string>) => {
    const adminPort = await freePort();
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("TASKBROKER_")),
    ) as Record<string, string>;
    const proc = Bun.spawn([process.execPath, "src/main.ts", "broker"], {
      cwd: `${import.meta.dir}/..`,
      env: {
        ...clean,
        TASKBROKER_GRPC_PORT: "0",
        TASKBROKER_GRPC_HOST: "127.0.0.1",
        TASKBROKER_ADMIN_TOKEN: "hush-hush",
        TASKBROKER_ADMIN_HOST: "127.0.0.1",
        TASKBROKER_ADMIN_PORT: String(adminPort),
        TASKBROKER_STORE__SQLITE__PATH: `${tempDir()}/db.sqlite`,
        ...env,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    // Give it time to start, then stop it: what it logged on the way is the evidence.
    let out = "";
    const reader = (async () => {
      for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) out += new TextDecoder().decode(chunk);
    })();
    // Started = the admin port answers /health (works whatever the log filter hides).
    await until("start-up", async () => (await fetch(`http://127.0.0.1:${adminPort}/health`)).ok, 20_000);
    proc.kill("SIGTERM");
    await proc.exited;
    await reader;
    return out.split("\n").filter(Boolean);
  };
  const json = await run({ TASKBROKER_LOG_FORMAT: "json" });
  const events = json.map((l) => JSON.parse(l) as Record<string, unknown>);
  const started = events.find((e) => e.event === "broker_started")!;
  expect(started.level).toBe("info");
  expect(typeof started.grpc_port).toBe("number");
  expect(json.join("\n")).not.toContain("hush-hush");
  const quiet = await run({ TASKBROKER_LOG_FILTER: "warn" });
  expect(quiet.filter((l) => / (INFO|DEBUG) /.test(l))).toEqual([]);
}, 60_000);
