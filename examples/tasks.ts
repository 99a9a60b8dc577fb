// Example tasks for `npm start` (the demo): a greeting that succeeds, a
// webhook delivery that fails at first and succeeds on retry (like Sentry's
// service hooks), a report that runs past its processing deadline, a step
// that schedules a follow-up task with a countdown, and a heartbeat the
// scheduler fires periodically.
import { createApp, currentTask, retry } from "taskplatform";

export const app = createApp({ name: "demo" });

const demo = app.namespace("demo", {
  // Namespace defaults; each task below may override them.
  retry: retry({ times: 1 }),
  processingDeadlineS: 10,
});

export const greet = demo.register({
  name: "demo.greet",
  handler: (name: string) => `hello, ${name}`,
});

/** A delivery failure the endpoint may recover from: worth another attempt. */
export class DeliveryFailed extends Error {
  override name = "DeliveryFailed";
}

export const deliverWebhook = demo.register({
  name: "demo.deliver_webhook",
  retry: retry({ times: 5, on: [DeliveryFailed], delay: 1 }),
  expectedErrors: [DeliveryFailed],
  handler: async (url: string, payload: Record<string, unknown>) => {
    const ctx = currentTask()!;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-attempt": String(ctx.attempts) },
      body: JSON.stringify(payload),
      signal: ctx.signal,
    });
    if (!res.ok) throw new DeliveryFailed(`webhook answered ${res.status}`);
  },
});

export const slowReport = demo.register({
  name: "demo.slow_report",
  processingDeadlineS: 1,
  handler: () => {
    // Synchronous work that never yields: the worker must stop the thread.
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      /* crunching */
    }
  },
});

export const startChain = demo.register({
  name: "demo.start_chain",
  handler: async (name: string) => {
    // The "next task" pattern: schedule a follow-up to run a second from now.
    await greet.applyAsync({ args: [`${name} (follow-up)`], countdown: 1 });
  },
});

export const heartbeat = demo.register({
  name: "demo.heartbeat",
  handler: () => undefined,
});
