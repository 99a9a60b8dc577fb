// The tasks of a small shop, as docs/sdk.md builds them up: an application,
// namespaces with defaults, tasks with their own options and retry policies.
// A worker runs this module (`taskplatform worker --tasks ./tasks.ts`);
// produce.ts dispatches to it; eager.ts tests it in-process. The "mail" and
// "card" calls append a line to an outbox file, standing in for real APIs.
import { AsyncLocalStorage } from "node:async_hooks";
import { appendFileSync } from "node:fs";
import { createApp, currentTask, retry, RetryTaskError } from "taskplatform";

/** The tenant the current request (or task) works for. */
export const tenant = new AsyncLocalStorage<string>();

export const app = createApp({
  name: "shop",
  // A context hook carries the tenant from the code that dispatches into the task's run (header x-tenant).
  contextHooks: [
    {
      onDispatch(headers) {
        const t = tenant.getStore();
        if (t) headers["x-tenant"] = t;
      },
      onExecute(headers, next) {
        const t = headers["x-tenant"];
        return t ? tenant.run(t, next) : next();
      },
    },
  ],
});

const outbox = process.env.SHOP_OUTBOX ?? "outbox.log";
const record = (line: string) => appendFileSync(outbox, line + "\n");

/** The mail server said "try later": worth another attempt. */
export class MailServerBusy extends Error {
  override name = "MailServerBusy";
}

// Namespace defaults apply to every task registered in it unless the task overrides them.
const emails = app.namespace("emails", {
  retry: retry({ times: 3, on: [MailServerBusy], delay: 1 }),
  processingDeadlineS: 30,
  expires: 3600,
});

export const sendWelcome = emails.register({
  name: "emails.send_welcome",
  // Positional args first; kwargs (when a producer sends any) arrive as one trailing object.
  handler: (userId: number, options?: { locale?: string }) => {
    record(`welcome ${userId} ${options?.locale ?? "en"} tenant=${tenant.getStore() ?? "-"}`);
  },
});

export const sendDigest = emails.register({
  name: "emails.send_digest",
  expectedErrors: [MailServerBusy], // part of normal operation: logged without a stack trace
  handler: (userId: number) => {
    const task = currentTask()!;
    // Pretend the mail server is busy on the first attempt.
    if (task.attempts === 0) throw new MailServerBusy("421 try again later");
    record(`digest ${userId} attempt ${task.attempts}`);
  },
});

const billing = app.namespace("billing", { processingDeadlineS: 10 });

export const chargeCard = billing.register({
  name: "billing.charge_card",
  atMostOnce: true, // never charge twice, even if a worker dies mid-task
  handler: (orderId: string, cents: number) => {
    if (!(cents > 0)) throw new RangeError(`cannot charge ${cents} cents`);
    record(`charge ${orderId} ${cents}`);
  },
});

export const syncInventory = billing.register({
  name: "billing.sync_inventory",
  retry: retry({ times: 5, onAttemptsExceeded: "deadletter" }),
  handler: (sku: string) => {
    const task = currentTask()!;
    // Ask for another attempt explicitly, whatever the policy's `on` list says.
    if (task.attempts < 1) throw new RetryTaskError("warehouse not ready", { delaySec: 1 });
    record(`inventory ${sku}`);
  },
});

const reports = app.namespace("reports");

export const nightlyReport = reports.register({
  name: "reports.nightly",
  processingDeadlineS: 120,
  handler: () => record("nightly report"),
});
