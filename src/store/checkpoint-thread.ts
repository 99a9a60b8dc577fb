// Runs in a Bun Worker thread: checkpoints the store's WAL on its own
// connection, so the broker's event loop never does. See checkpointer.ts for
// why. Protocol: receives { path, intervalMs } once, then runs until "stop";
// posts { error } when a checkpoint fails (the main thread logs it).
import { Database } from "bun:sqlite";

declare const self: Worker;

let timer: ReturnType<typeof setInterval> | undefined;
let db: Database | undefined;

self.onmessage = (ev: MessageEvent<{ path: string; intervalMs: number } | "stop">) => {
  const msg = ev.data;
  if (msg === "stop") {
    if (timer) clearInterval(timer);
    db?.close();
    self.postMessage("stopped");
    return;
  }
  db = new Database(msg.path);
  db.run("PRAGMA busy_timeout = 1000");
  const checkpoint = db.query("PRAGMA wal_checkpoint(PASSIVE)");
  timer = setInterval(() => {
    try {
      checkpoint.get();
    } catch (err) {
      self.postMessage({ error: err instanceof Error ? err.message : String(err) });
    }
  }, msg.intervalMs);
};
