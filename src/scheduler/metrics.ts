// The scheduler's Prometheus series, registered in the shared registry
// (src/metrics.ts) so one /metrics endpoint can expose them.
import { Counter } from "prom-client";
import { registry } from "../metrics.ts";

export const scheduleFires = new Counter({
  name: "taskscheduler_slots_total",
  help: "Schedule slots that came due, by schedule and result (fired, failed, claimed_elsewhere)",
  labelNames: ["schedule", "result"] as const,
  registers: [registry],
});
