// Push delivery's Prometheus series, in the broker's one registry (../metrics.ts)
// so the admin server's /metrics shows them next to the rest.
import { Counter } from "prom-client";
import { registry, twinCounter } from "../metrics.ts";

export const pushTotal = twinCounter(
  new Counter({
    name: "taskbroker_push_total",
    help: "PushTask calls to workers, by result (delivered, busy, unavailable, error)",
    labelNames: ["worker", "result"] as const,
    registers: [registry],
  }),
  // The reference broker's names (docs/metrics.md): every call an attempt, delivered = ok.
  ({ result }) => [
    ["worker.push_task.attempts", []],
    ["worker.push_task", [["result", result === "delivered" ? "ok" : "error"]]],
  ],
);
