// The no-op task the end-to-end benchmark runs (loaded by the worker's task threads).
import { createApp } from "../src/sdk/index.ts";

const app = createApp({ name: "bench" });
export const noop = app.namespace("bench").register({ name: "bench.noop", handler: () => undefined });
