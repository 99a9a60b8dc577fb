// Task module for the worker end-to-end tests. Every task records what it did
// as one line in the file named by WT_OUT, so tests observe execution through
// side effects. Loaded by the worker (--tasks) and imported by the tests to
// build activations.
import { appendFileSync, existsSync } from "node:fs";
import { threadId } from "node:worker_threads";
import { createApp, currentTask, retry, RetryTaskError } from "../src/sdk/index.ts";

const out = (line: string) => appendFileSync(process.env.WT_OUT ?? "/dev/null", line + "\n");
const attempts = () => currentTask()!.attempts;

export const app = createApp({ name: "wt" });
const ns = app.namespace("wt");

export const hello = ns.register({
  name: "hello",
  handler: (tag: string) => out(`hello ${tag} trace=${currentTask()!.headers["traceparent"] ?? "-"}`),
});

export const fails = ns.register({
  name: "fails",
  retry: retry({ times: 3, on: [Error] }),
  handler: (tag: string) => {
    out(`fails ${tag} ${attempts()}`);
    throw new Error("always fails");
  },
});

class NotRetried extends Error {}
export const explicit = ns.register({
  name: "explicit",
  retry: retry({ times: 3, on: [NotRetried] }),
  handler: (tag: string) => {
    out(`explicit ${tag} ${attempts()}`);
    if (attempts() === 0) throw new RetryTaskError("try again");
  },
});

export const spin = ns.register({
  name: "spin",
  processingDeadlineS: 1,
  handler: (tag: string) => {
    out(`spin ${tag}`);
    for (;;) {
      // a synchronous infinite loop: only stopping the thread ends it
    }
  },
});

export const once = ns.register({
  name: "once",
  atMostOnce: true,
  processingDeadlineS: 60,
  handler: async (tag: string) => {
    out(`once ${tag}`);
    await Bun.sleep(30_000);
  },
});

export const slow = ns.register({
  name: "slow",
  handler: async (tag: string) => {
    out(`slow-start ${tag}`);
    await Bun.sleep(1500);
    out(`slow-done ${tag}`);
  },
});

export const echo = ns.register({
  name: "echo",
  handler: (...args: unknown[]) =>
    out(`echo ${JSON.stringify(args, (_k, v) => (v instanceof Uint8Array ? { bytes: [...v] } : v))}`),
});

/** Records which task thread ran it (thread recycling). */
export const whoami = ns.register({
  name: "whoami",
  handler: (tag: string) => out(`whoami ${tag} ${threadId}`),
});

/** Runs until the file named by WT_GATE exists (tests watch work in progress, then let it finish). */
export const gated = ns.register({
  name: "gated",
  processingDeadlineS: 60,
  handler: async (tag: string) => {
    const gate = process.env.WT_GATE;
    while (gate && !existsSync(gate)) await new Promise((r) => setTimeout(r, 20));
    out(`gated ${tag}`);
  },
});
