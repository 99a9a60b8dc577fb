// Testing tasks without a broker: in eager mode every dispatch runs the task
// in-process, after encoding and decoding the activation exactly as a worker
// would (so unserialisable arguments fail here too), and retries run at once.
// A dispatch that ends in failure rejects with EagerTaskFailed. Runs as a plain
// script under Node or Bun; use the same calls inside bun:test or node:test.
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { EagerTaskFailed } from "taskplatform";
import { app, chargeCard, sendDigest, sendWelcome, syncInventory, tenant } from "./tasks.ts";

const outbox = process.env.SHOP_OUTBOX ?? "outbox.log";
rmSync(outbox, { force: true });
app.eager = true;

await sendDigest.delay(1); // fails once with MailServerBusy, succeeds on the retry
await syncInventory.delay("sku-1"); // asks for a retry itself, then succeeds
await chargeCard.delay("order-1", 100);
await tenant.run("acme", () => sendWelcome.delay(9)); // the context hook carries the tenant into the run
assert.deepEqual(readFileSync(outbox, "utf8").trim().split("\n"), [
  "digest 1 attempt 1",
  "inventory sku-1",
  "charge order-1 100",
  "welcome 9 en tenant=acme",
]);

// A failure that the policy does not retry surfaces as EagerTaskFailed, with the outcome and error.
await assert.rejects(chargeCard.delay("order-2", -5), (err: unknown) => {
  assert.ok(err instanceof EagerTaskFailed);
  assert.equal(err.result.outcome, "failure");
  assert.match(err.result.error ?? "", /cannot charge -5 cents/);
  return true;
});
// Arguments that cannot travel as msgpack fail at dispatch, as they would in production.
await assert.rejects(chargeCard.delay("order-3", (() => 1) as unknown as number), /not serialisable/);
console.log("eager checks passed");
