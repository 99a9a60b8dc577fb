// Depth per (state, namespace): the one query behind the dashboard, /metrics
// and `inspect depths`, shared by the store and the admin server's counting
// thread (admin/depth-thread.ts), which runs it on its own connection. Each
// state is read through its own partial index (schema.ts); Pending, the only
// state that grows large, through its covering (application, namespace, seq)
// index, so no query reads row data.
import { STATE_CODE as S } from "./types.ts";

/** Partial index per bounded state; Finished states share inflight_finished. */
const PER_STATE: Array<[number, string]> = [
  [S.pending, "inflight_pending_app_ns"],
  [S.delay, "inflight_delay"],
  [S.processing, "inflight_processing"],
  [S.claimed, "inflight_claimed"],
];

/** Total rows per state code. */
export const COUNT_BY_STATE_SQL = [
  ...PER_STATE.map(
    ([code, index]) => `SELECT ${code} AS state, count(*) AS n FROM inflight INDEXED BY ${index} WHERE state = ${code}`,
  ),
  "SELECT state, count(*) AS n FROM inflight INDEXED BY inflight_finished WHERE state >= 5 GROUP BY state",
].join(" UNION ALL ");

/** Rows per (state code, namespace); Pending comes per (application, namespace), see mergeDepthRows. */
export const DEPTH_BY_NAMESPACE_SQL = [
  ...PER_STATE.map(
    ([code, index]) =>
      `SELECT * FROM (SELECT ${code} AS state, namespace, count(*) AS n FROM inflight INDEXED BY ${index}
       WHERE state = ${code} GROUP BY ${code === S.pending ? "application, " : ""}namespace)`,
  ),
  "SELECT * FROM (SELECT state, namespace, count(*) AS n FROM inflight INDEXED BY inflight_finished WHERE state >= 5 GROUP BY state, namespace)",
].join(" UNION ALL ");

export interface DepthRow {
  state: number;
  namespace: string;
  n: number;
}

/** Sums rows of DEPTH_BY_NAMESPACE_SQL that share (state, namespace). */
export function mergeDepthRows(rows: DepthRow[]): DepthRow[] {
  const merged = new Map<string, DepthRow>();
  for (const r of rows) {
    const key = `${r.state}\u0000${r.namespace}`;
    const m = merged.get(key);
    if (m) m.n += r.n;
    else merged.set(key, { ...r });
  }
  return [...merged.values()];
}
