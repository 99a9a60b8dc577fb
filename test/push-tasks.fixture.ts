// Task module for the push-mode tests (test/push.test.ts): each task appends a
// line to the file named by PT_OUT. `stall` hangs when the worker runs with
// PT_STALL=1, so a test can kill -9 that worker mid-task and see the row
// handed to another one after its (short) processing deadline.
import { appendFileSync } from "node:fs";
import { createApp } from "../src/sdk/index.ts";

const out = (line: string) => appendFileSync(process.env.PT_OUT ?? "/dev/null", line + "\n");

export const app = createApp({ name: "pt" });
const ns = app.namespace("pt");

export const hello = ns.register({
  name: "hello",
  handler: (tag: string) => out(`hello ${tag}`),
});

export const slow = ns.register({
  name: "slow",
  handler: async (tag: string) => {
    out(`slow-start ${tag}`);
    await Bun.sleep(800);
    out(`slow-done ${tag}`);
  },
});

export const stall = ns.register({
  name: "stall",
  processingDeadlineS: 2,
  handler: async (tag: string) => {
    out(`stall-start ${tag} pid=${process.pid}`);
    if (process.env.PT_STALL === "1") await Bun.sleep(60_000);
    out(`stall-done ${tag} pid=${process.pid}`);
  },
});
