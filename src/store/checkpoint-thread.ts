// Runs in a Bun Worker thread: checkpoints the store's WAL on its own
// connection, so the broker's event loop never does. See checkpointer.ts for
// why. Protocol: receives { path, intervalMs, walMaxBytes } once, then "now"
// (checkpoint at once: the disk guard just made room) any number of times,
// and "stop"; posts { error, code } when a checkpoint fails (the main thread
// logs it) and { restarted: frames } after a restart that bounded the WAL.
import { Database } from "bun:sqlite";

declare const self: Worker;

let timer: ReturnType<typeof setTimeout> | undefined;
let stopped = false;
let db: Database | undefined;
let tick: () => void = () => {};

const FAST_MS = 20;

interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

self.onmessage = (ev: MessageEvent<{ path: string; intervalMs: number; walMaxBytes: number } | "stop" | "now">) => {
  const msg = ev.data;
  if (msg === "stop") {
    stopped = true;
    if (timer) clearTimeout(timer);
    db?.close();
    self.postMessage("stopped");
    return;
  }
  if (msg === "now") {
    tick();
    return;
  }
  const conn = new Database(msg.path);
  db = conn;
  conn.run("PRAGMA busy_timeout = 1000");
  const pageSize = (conn.query("PRAGMA page_size").get() as { page_size: number }).page_size;
  // Half the bound: the WAL file keeps the bound's size allocated (journal_size_limit),
  // so commits between two restarts land in blocks it already has, even on a full disk.
  const maxFrames = Math.max(16, Math.floor(msg.walMaxBytes / 2 / pageSize));
  const passive = conn.query<CheckpointResult, []>("PRAGMA wal_checkpoint(PASSIVE)");
  const restart = conn.query<CheckpointResult, []>("PRAGMA wal_checkpoint(RESTART)");
  // Returns whether the WAL is still large, so the next pass comes sooner.
  const pass = (): boolean => {
    try {
      const r = passive.get();
      // Under a steady stream of commits a PASSIVE checkpoint never catches the
      // WAL's end, so the WAL is never rewritten from its start and grows
      // without bound. Past half the bound, RESTART: it waits for the writer,
      // copies the little PASSIVE left, and makes the next commit start the
      // WAL over (journal_size_limit trims the file back to the bound).
      if (r === null) return false;
      if (r.log > maxFrames) {
        const after = restart.get();
        const done = after !== null && after.busy === 0;
        if (done) self.postMessage({ restarted: r.log });
        return !done;
      }
      return r.log > maxFrames / 2;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      self.postMessage({
        error: err instanceof Error ? err.message : String(err),
        code: typeof code === "string" ? code : "",
      });
      return false;
    }
  };
  // Every intervalMs; every 20 ms while the WAL is past a quarter of its bound (a burst of commits).
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => schedule(pass() ? FAST_MS : msg.intervalMs), ms);
  };
  tick = () => {
    pass();
  };
  schedule(msg.intervalMs);
};
