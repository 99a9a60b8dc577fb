// The dashboard in a real browser (Debian chromium driven by playwright-core)
// against a broker process with known contents: sign in with the admin token,
// read the depths and the dead letter shown, replay the dead letter with a
// click and see it dispatched again over GetTask; then a worker process runs
// tasks and the page shows the work in progress (processing, per-namespace
// and chart rates whose legend matches the lines) and, after the run, the
// totals since start; an activation is looked up by id. The screenshot goes
// to a temp file, or to docs/dashboard.png with UPDATE_SCREENSHOT=1.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import { encode } from "@msgpack/msgpack";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { TaskActivationSchema, TaskActivationStatus } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { activation, brokerClients } from "./support/activations.ts";
import { createRpcProducer } from "../src/sdk/rpc-producer.ts";
import { spawnWorker } from "./support/worker-process.ts";
import { gated } from "./worker-tasks.fixture.ts";

const TOKEN = "dash-" + crypto.randomUUID();
let broker: BrokerProcess;
let context: BrowserContext;

beforeAll(async () => {
  broker = await spawnBroker({
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
    TASKBROKER_ADMIN_TOKEN: TOKEN,
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
    TASKBROKER_ADMIN_RATE_SAMPLE_MS: "500",
  });
  context = await chromium.launchPersistentContext(tempDir("chromium-profile-"), {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 820 },
  });
}, 60_000);

afterAll(async () => {
  await context?.close();
  await broker?.stop();
});

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await Bun.sleep(50);
  }
}

const text = async (page: Page, selector: string) =>
  ((await page.locator(selector).first().textContent()) ?? "").trim();

test("shows the broker's contents and replays a dead letter with a click", async () => {
  const { ingest, consumer } = brokerClients(broker.port);
  await ingest.produce({
    activations: [
      ...Array.from({ length: 3 }, () => activation({ namespace: "web-a", taskname: "shop.send_receipt" })),
      ...Array.from({ length: 2 }, () => activation({ namespace: "web-b", taskname: "shop.reindex" })),
    ],
  });
  const doomed = create(TaskActivationSchema, {
    ...activation({ namespace: "web-dl", taskname: "shop.charge_card", deadLetterAfter: 1 }),
    headers: { "compression-type": "zstd" },
    parametersBytes: Bun.zstdCompressSync(encode({ args: [4711], kwargs: { customer: "ada" } })),
  });
  await ingest.produce({ activations: [doomed] });
  const claimed = await consumer.getTask({ application: "tests", namespace: "web-dl" });
  expect(claimed.task!.id).toBe(doomed.id);
  await consumer.setTaskStatus({ id: doomed.id, status: TaskActivationStatus.FAILURE });
  // Upkeep moves it to the local dead-letter table.
  await until("dead letter stored", async () => {
    const r = await fetch(`http://127.0.0.1:${broker.adminPort}/api/deadletters`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return ((await r.json()) as { total: number }).total === 1;
  });

  const page = await context.newPage();
  const url = `http://127.0.0.1:${broker.adminPort}/`;
  await page.goto(url);
  // No cookie yet: the login form.
  expect(page.url()).toBe(`${url}login`);
  await page.fill('input[name="token"]', TOKEN);
  await Promise.all([page.waitForURL(url), page.click('button[type="submit"]')]);
  await page.waitForSelector('body[data-loaded="true"]');

  // Per-namespace depths are counted in the background (at most 2 s old) and the
  // page refreshes every 5 s: wait for the row rather than racing the count.
  await page.waitForSelector('#depths tr[data-namespace="web-b"]', { timeout: 15_000 });
  expect(await text(page, "#depth-total-pending")).toBe("5");
  expect(await text(page, "#depth-total-processing")).toBe("0");
  expect(await text(page, '#depths tr[data-namespace="web-a"] td[data-state="pending"]')).toBe("3");
  expect(await text(page, '#depths tr[data-namespace="web-b"] td[data-state="pending"]')).toBe("2");
  expect(await text(page, "#dl-total")).toBe("1");
  const row = page.locator(`#deadletters tr[data-id="${doomed.id}"]`);
  expect(await text(page, `#deadletters tr[data-id="${doomed.id}"] .taskname`)).toBe("shop.charge_card");
  expect(await text(page, `#deadletters tr[data-id="${doomed.id}"] .namespace`)).toBe("web-dl");
  expect(await text(page, `#deadletters tr[data-id="${doomed.id}"] .attempts`)).toBe("0");
  expect(await text(page, `#deadletters tr[data-id="${doomed.id}"] .params`)).toBe(
    '{"args":[4711],"kwargs":{"customer":"ada"}}',
  );

  // The rate chart needs two samples; wait for it.
  await page.waitForSelector('#chart polyline[data-series="dispatched"]', { timeout: 20_000 });

  await row.locator("button.replay").click();
  await until("status line", async () => (await text(page, "#status")).startsWith("replayed"));
  const newId = /as (\S+)$/.exec(await text(page, "#status"))![1]!;
  await until("dead letter gone from the page", async () => (await text(page, "#dl-total")) === "0");
  expect(await page.locator(`#deadletters tr[data-id="${doomed.id}"]`).count()).toBe(0);
  expect(await text(page, "#depth-total-pending")).toBe("6");

  const again = await consumer.getTask({ application: "tests", namespace: "web-dl" });
  expect(again.task!.id).toBe(newId);
  expect(again.task!.taskname).toBe("shop.charge_card");
  expect(again.task!.parametersBytes).toEqual(doomed.parametersBytes);
}, 90_000);

test("during and after a run: work in progress, rates whose legend matches the lines, totals since start, lookup by id", async () => {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${broker.adminPort}/`);
  await page.waitForSelector('body[data-loaded="true"]');
  const before = Number(await text(page, "#since-completed"));

  const dir = tempDir("dash-run-");
  const gate = join(dir, "gate");
  const producer = createRpcProducer({ address: broker.address });
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) {
    const built = gated.buildActivation({ args: [`r${i}`] });
    await producer.send("taskworker", built.activation, built.bytes);
    ids.push(built.activation.id);
  }
  await producer.close();
  const worker = await spawnWorker(
    [
      "--tasks",
      join(import.meta.dir, "worker-tasks.fixture.ts"),
      "--rpc-host-list",
      broker.address,
      "--concurrency",
      "4",
      "--at-most-once-path",
      join(dir, "amo.sqlite"),
    ],
    { WT_OUT: join(dir, "out"), WT_GATE: gate },
  );
  try {
    // During: four running (the gate is shut), the rest pending; the namespace shows its dispatch rate.
    // (The first test left rows of its own: read this run's namespace.)
    await until(
      "4 processing on the page",
      async () => (await text(page, '#depths tr[data-namespace="wt"] td[data-state="processing"]')) === "4",
      20_000,
    );
    expect(await text(page, '#depths tr[data-namespace="wt"] td[data-state="pending"]')).toBe("36");
    await until(
      "a dispatch rate for the namespace",
      async () => (await text(page, '#depths tr[data-namespace="wt"] td[data-rate="dispatched"]')) !== "0.0/s",
    );
    // The table says how old its count is, and it is recent.
    expect(Number(await page.locator("#ns-as-of").getAttribute("data-lag-seconds"))).toBeLessThan(3);

    // A pending activation, looked up by id.
    await page.fill("#lookup-id", ids[39]!);
    await page.click("#lookup-go");
    await until(
      "lookup answered",
      async () => (await page.locator("#lookup-result").getAttribute("data-state")) === "pending",
    );
    expect(await text(page, '#lookup-result dd[data-field="task"]')).toBe("gated");
    expect(await text(page, '#lookup-result dd[data-field="parameters"]')).toBe('{"args":["r39"],"kwargs":{}}');

    // After: every task done; depths are zero, and the counters since start show the 40 that ran.
    writeFileSync(gate, "");
    await until(
      "40 more completed since start",
      async () => Number(await text(page, "#since-completed")) === before + 40,
      20_000,
    );
    const wt = (state: string) => text(page, `#depths tr[data-namespace="wt"] td[data-state="${state}"]`);
    await until(
      "nothing of the run left in flight",
      async () => (await wt("processing")) === "0" && (await wt("pending")) === "0",
    );
    expect(Number(await text(page, "#since-ingested"))).toBeGreaterThanOrEqual(40);

    // The chart: its legend is the newest point of each line, and it spans the panel.
    await until(
      "completions on the chart",
      async () => (await page.locator('#chart polyline[data-series="completed"]').count()) === 1,
    );
    for (const series of ["completed", "dispatched", "ingested"]) {
      const legend = await text(page, `#rates-now span[data-series="${series}"]`);
      const line = await page.locator(`#chart polyline[data-series="${series}"]`).getAttribute("data-last");
      expect(legend).toBe(`${series} ${line}`);
    }
    const chart = await page.locator("#chart").boundingBox();
    const panel = await page.locator("#chart").locator("xpath=..").boundingBox();
    expect(chart!.width).toBeGreaterThan(panel!.width - 40);

    // A finished activation is gone from the store, and the lookup says so.
    await page.fill("#lookup-id", ids[0]!);
    await page.click("#lookup-go");
    await until(
      "lookup answered",
      async () => (await page.locator("#lookup-result").getAttribute("data-state")) === "absent",
    );

    const shot =
      process.env.UPDATE_SCREENSHOT === "1"
        ? join(resolve(import.meta.dir, ".."), "docs", "dashboard.png")
        : join(dir, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await worker.stop("SIGKILL");
  }
}, 90_000);
