// The dashboard in a real browser (Debian chromium driven by playwright-core)
// against a broker process with known contents: sign in with the admin token,
// read the depths and the dead letter shown, replay the dead letter with a
// click and see it dispatched again over GetTask. Saves docs/dashboard.png.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import { encode } from "@msgpack/msgpack";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { TaskActivationSchema, TaskActivationStatus } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { activation, brokerClients } from "./support/activations.ts";

const TOKEN = "dash-" + crypto.randomUUID();
let broker: BrokerProcess;
let context: BrowserContext;

beforeAll(async () => {
  broker = await spawnBroker({
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
    TASKBROKER_ADMIN_TOKEN: TOKEN,
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100",
  });
  context = await chromium.launchPersistentContext(tempDir("chromium-profile-"), {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
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

const text = async (page: Page, selector: string) => ((await page.locator(selector).first().textContent()) ?? "").trim();

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
    const r = await fetch(`http://127.0.0.1:${broker.adminPort}/api/deadletters`, { headers: { authorization: `Bearer ${TOKEN}` } });
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
  expect(await text(page, `#deadletters tr[data-id="${doomed.id}"] .params`)).toBe('{"args":[4711],"kwargs":{"customer":"ada"}}');

  // The rate chart needs two samples (5 s apart); wait for it so the screenshot shows one.
  await page.waitForSelector('#chart polyline[data-series="dispatched"]', { timeout: 20_000 });
  await page.screenshot({ path: join(resolve(import.meta.dir, ".."), "docs", "dashboard.png"), fullPage: true });

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
