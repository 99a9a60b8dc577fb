// Runs in a Bun Worker thread: counts inflight rows per (state, namespace) on
// its own read-only connection to the store's file. At 1M rows that count
// walks ~1M index entries (~0.1-0.3 s on a small machine); doing it here keeps
// the broker's event loop, and so every RPC, unaffected. WAL mode lets this
// reader run beside the writer without blocking either.
// Protocol: receives { path } once, then "count" messages; answers each with
// { rows: [{state, namespace, n}], ms } or { error }; "close" closes the
// connection (answered "closed"), so the store's last close can remove its
// WAL index file (a leftover one is a hazard when restarting on a full disk).
import { Database } from "bun:sqlite";
import { DEPTH_BY_NAMESPACE_SQL, mergeDepthRows, type DepthRow } from "../store/depth.ts";

declare const self: Worker;

let query: { all(): unknown[] } | null = null;
let conn: Database | null = null;

self.onmessage = (event: MessageEvent) => {
  const msg = event.data as { path?: string } | "count" | "close";
  try {
    if (msg === "close") {
      conn?.close();
      conn = null;
      query = null;
      postMessage("closed");
      return;
    }
    if (typeof msg === "object" && msg.path !== undefined) {
      const db = new Database(msg.path, { readonly: true });
      conn = db;
      db.run("PRAGMA busy_timeout = 5000");
      db.run("PRAGMA cache_size = -32768"); // keeps the pending index hot between counts
      query = db.query(DEPTH_BY_NAMESPACE_SQL);
      return;
    }
    if (!query) throw new Error("depth thread: no database opened");
    const t0 = performance.now();
    const rows = mergeDepthRows(query.all() as DepthRow[]);
    postMessage({ rows, ms: performance.now() - t0 });
  } catch (err) {
    postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
};
