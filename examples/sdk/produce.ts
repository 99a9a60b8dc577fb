// Producing from an application: dispatch tasks defined in tasks.ts to the
// broker. Without configuration the producer sends to the broker's ingest RPC
// at TASKWORKER_PRODUCE_ADDRESS (default 127.0.0.1:50051); `await app.close()`
// waits until every dispatch is accepted and closes the connection. Prints
// the activation ids as one JSON array.
import { app, chargeCard, sendDigest, sendWelcome, syncInventory, tenant } from "./tasks.ts";

const ids: string[] = [];
// delay(...args): dispatch now with positional args; resolves once the broker accepted it.
// Inside tenant.run(...), the context hook puts the tenant on the activation; the task runs for it too.
ids.push(await tenant.run("acme", () => sendWelcome.delay(42)));
// applyAsync: kwargs, a countdown (seconds before it may run), an expiry and headers.
ids.push(
  await sendWelcome.applyAsync({
    args: [7],
    kwargs: { locale: "de" },
    countdown: 1,
    expires: 600,
    headers: { "x-request-id": "r-1" },
  }),
);
ids.push(await sendDigest.delay(42));
ids.push(await chargeCard.delay("order-1001", 2599));
ids.push(await syncInventory.delay("sku-7"));
console.log(JSON.stringify(ids));
await app.close();
