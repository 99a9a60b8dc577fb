// Feeds the dashboard's rate history from the broker's own Prometheus
// counters (src/metrics.ts), so the chart and /metrics can never disagree;
// the same totals are the dashboard's "since start" numbers. Per-namespace
// dispatches are series "dispatched:<namespace>".
import type { Counter } from "prom-client";
import { completionTotal, dispatchTotal, ingestTotal, runtimeKillTotal, upkeepTotal } from "../metrics.ts";
import type { CounterTotals, RateHistory } from "./rates.ts";

async function sum(counter: Counter<string>, match: Record<string, string> = {}): Promise<number> {
  const { values } = await counter.get();
  let total = 0;
  for (const v of values) {
    if (Object.entries(match).every(([k, want]) => v.labels[k] === want)) total += v.value;
  }
  return total;
}

/** The series the chart draws (the rest are per-namespace). */
export const CHART_SERIES = [
  "ingested",
  "dispatched",
  "completed",
  "retried",
  "failed",
  "deadlettered",
  "expired",
  "killed",
] as const;

/** Activations handed out per namespace since start, as "dispatched:<namespace>" totals. */
async function dispatchedByNamespace(): Promise<CounterTotals> {
  const out: CounterTotals = {};
  for (const v of (await dispatchTotal.get()).values) {
    const key = `dispatched:${v.labels.namespace ?? ""}`;
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

/** Current totals of the series the dashboard charts, and of dispatches per namespace. */
export async function readCounterTotals(): Promise<CounterTotals> {
  const [ingested, dispatched, completed, retried, failed, deadlettered, expiredStored, expiredIngest, killed] =
    await Promise.all([
      sum(ingestTotal, { result: "accepted" }),
      sum(dispatchTotal),
      sum(completionTotal, { status: "complete" }),
      sum(completionTotal, { status: "retry" }),
      sum(completionTotal, { status: "failure" }),
      sum(upkeepTotal, { action: "deadlettered" }),
      sum(upkeepTotal, { action: "expired" }),
      sum(ingestTotal, { result: "expired" }),
      sum(runtimeKillTotal, { decision: "killed" }),
    ]);
  return {
    ingested,
    dispatched,
    completed,
    retried,
    failed,
    deadlettered,
    expired: expiredStored + expiredIngest,
    killed,
    ...(await dispatchedByNamespace()),
  };
}

/** Samples every `intervalMs` until stopped (first sample immediately). */
export function startRateSampler(history: RateHistory, intervalMs: number): { stop(): void } {
  const sample = () => {
    void readCounterTotals().then((totals) => history.record(Date.now(), totals));
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref?.();
  return { stop: () => clearInterval(timer) };
}
