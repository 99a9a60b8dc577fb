// Task module that finishes loading only once the file named by LOAD_GATE
// exists, so a test can watch a push worker during warm-up (task threads
// still loading) and then let it finish.
import { existsSync } from "node:fs";
import { createApp } from "../src/sdk/index.ts";

const gate = process.env.LOAD_GATE;
while (gate && !existsSync(gate)) await new Promise((r) => setTimeout(r, 20));

export const app = createApp({ name: "gated" });
export const hello = app.namespace("gated").register({ name: "hello", handler: () => undefined });
