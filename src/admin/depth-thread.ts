// Runs in a Bun Worker thread: counts inflight rows per (state, namespace) on
// its own read-only connection to the store's file. At 1M rows that count
// walks ~1M index entries (~0.1-0.3 s on a small machine); doing it here keeps
// the broker's event loop, and so every RPC, unaffected. WAL mode lets this
// reader run beside the writer without blocking either.
// Protocol: receives { path } once, then "count" messages; answers each with
// { rows: [{state, namespace, n}], ms } or { error }.
import { Database } from "bun:sqlite";
import { STATE_CODE } from "../store/types.ts";

declare const self: Worker;

const S = STATE_CODE;
// MIRROR of the store's depthQuery (src/store/sqlite.ts): each state through
// its own partial index, Pending from its covering (application, namespace, seq)
// index. Replace with the store's exported query once it has one (coord/admin.md).
const PER_STATE: Array<[number, string]> = [
  [S.pending, "inflight_pending_app_ns"],
  [S.delay, "inflight_delay"],
  [S.processing, "inflight_processing"],
  [S.claimed, "inflight_claimed"],
];
const DEPTH_SQL = [
  ...PER_STATE.map(
    ([code, index]) =>
      `SELECT * FROM (SELECT ${code} AS state, namespace, count(*) AS n FROM inflight INDEXED BY ${index}
       WHERE state = ${code} GROUP BY ${code === S.pending ? "application, " : ""}namespace)`,
  ),
  "SELECT * FROM (SELECT state, namespace, count(*) AS n FROM inflight INDEXED BY inflight_finished WHERE state >= 5 GROUP BY state, namespace)",
].join(" UNION ALL ");

let query: { all(): unknown[] } | null = null;

self.onmessage = (event: MessageEvent) => {
  const msg = event.data as { path?: string } | "count";
  try {
    if (typeof msg === "object" && msg.path !== undefined) {
      const db = new Database(msg.path, { readonly: true });
      db.run("PRAGMA busy_timeout = 5000");
      db.run("PRAGMA cache_size = -32768"); // keeps the pending index hot between counts
      query = db.query(DEPTH_SQL);
      return;
    }
    if (!query) throw new Error("depth thread: no database opened");
    const t0 = performance.now();
    // Pending is grouped by (application, namespace): merge to (state, namespace).
    const merged = new Map<string, { state: number; namespace: string; n: number }>();
    for (const r of query.all() as Array<{ state: number; namespace: string; n: number }>) {
      const key = `${r.state}\u0000${r.namespace}`;
      const m = merged.get(key);
      if (m) m.n += r.n;
      else merged.set(key, { ...r });
    }
    postMessage({ rows: [...merged.values()], ms: performance.now() - t0 });
  } catch (err) {
    postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
};
