// Rates for the dashboard chart: a fixed-size ring of counter samples (by
// default one every 5 s for 15 min) from which per-second rates are derived.
// Pure and in memory: a restart starts a fresh history, which is fine for a
// "last minutes" view (long-term history is Prometheus's job).

/** Counter totals at one instant, by series name (ingested, dispatched, ...). */
export type CounterTotals = Record<string, number>;

export interface RatePoint {
  /** End of the interval, unix ms. */
  atMs: number;
  /** Per-second rate over the interval ending at atMs, by series. */
  perSec: Record<string, number>;
}

export interface RateHistory {
  record(atMs: number, totals: CounterTotals): void;
  /** Rates between consecutive samples, oldest first; only the named series when `names` is given. */
  series(names?: readonly string[]): RatePoint[];
  /** Rates between the last two samples (the right end of the chart's lines); zeros when fewer than two. */
  latest(): Record<string, number>;
  /** Rate over (about) the last `windowMs`, by series; zeros when fewer than two samples. */
  recent(windowMs: number): Record<string, number>;
  /** The span recent(windowMs) actually covers, ms (shorter than the window while history is short). */
  recentSpanMs(windowMs: number): number;
  /** Series names seen. */
  names(): string[];
}

export function createRateHistory(capacity = 180): RateHistory {
  const samples: Array<{ atMs: number; totals: CounterTotals }> = [];
  const seen = new Set<string>();
  const rate = (
    from: { atMs: number; totals: CounterTotals },
    to: { atMs: number; totals: CounterTotals },
    names: Iterable<string> = seen,
  ) => {
    const dt = (to.atMs - from.atMs) / 1000;
    const out: Record<string, number> = {};
    for (const name of names) {
      const delta = (to.totals[name] ?? 0) - (from.totals[name] ?? 0);
      // A counter only goes down when the process restarted its registry; show 0, not a negative rate.
      out[name] = dt > 0 && delta > 0 ? delta / dt : 0;
    }
    return out;
  };
  return {
    record(atMs, totals) {
      for (const name of Object.keys(totals)) seen.add(name);
      samples.push({ atMs, totals: { ...totals } });
      if (samples.length > capacity) samples.shift();
    },
    series(names) {
      const out: RatePoint[] = [];
      for (let i = 1; i < samples.length; i++)
        out.push({ atMs: samples[i]!.atMs, perSec: rate(samples[i - 1]!, samples[i]!, names ?? seen) });
      return out;
    },
    latest() {
      if (samples.length < 2) return Object.fromEntries([...seen].map((n) => [n, 0]));
      return rate(samples[samples.length - 2]!, samples[samples.length - 1]!);
    },
    recent(windowMs) {
      const zeros = Object.fromEntries([...seen].map((n) => [n, 0]));
      if (samples.length < 2) return zeros;
      const last = samples[samples.length - 1]!;
      let first = samples[0]!;
      for (let i = samples.length - 2; i >= 0; i--) {
        first = samples[i]!;
        if (last.atMs - samples[i]!.atMs >= windowMs) break;
      }
      return rate(first, last);
    },
    recentSpanMs(windowMs) {
      if (samples.length < 2) return 0;
      const lastAt = samples[samples.length - 1]!.atMs;
      let firstAt = samples[0]!.atMs;
      for (let i = samples.length - 2; i >= 0; i--) {
        firstAt = samples[i]!.atMs;
        if (lastAt - firstAt >= windowMs) break;
      }
      return lastAt - firstAt;
    },
    names: () => [...seen],
  };
}
