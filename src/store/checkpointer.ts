// Keeps WAL checkpoints off the event loop. A checkpoint copies WAL pages into
// the database file and syncs it; done inline (SQLite's auto-checkpoint runs
// inside whichever commit crosses the threshold) it stalls every RPC queued
// behind that commit. Letting the WAL grow large instead (fewer checkpoints)
// is worse: appends to a growing file allocate blocks, and those writes wait
// for the filesystem journal's periodic commit. Measured here (2 cores, ext4,
// 1000 Produce calls/s): auto-checkpoint every 40 MB gave ~1% of calls a
// 20-30 ms stall (p99 11 ms); every 4 MB inline, p99 3.7 ms (each checkpoint
// ~5 ms); this thread checkpointing PASSIVE-ly every 200 ms lets the WAL be
// rewritten in place from its start, and neither stall reaches the loop.
// Under commits that never pause, PASSIVE never reaches the WAL's end, so
// past walMaxBytes the thread RESTARTs the WAL (checkpoint-thread.ts): the
// WAL stays within about that bound plus one transaction, on a small volume
// too. Auto-checkpoint stays on at twice the bound as the fallback should this
// thread ever fall behind.
import type { Logger } from "../log.ts";
import { threadEntry } from "../thread-entry.ts";

export interface Checkpointer {
  /** Checkpoint now rather than at the next interval (the disk guard freed room). */
  now(): void;
  stop(): Promise<void>;
}

export interface CheckpointerOptions {
  intervalMs: number;
  /** WAL bytes past which the WAL is restarted. */
  walMaxBytes: number;
  log: Logger;
  /** A checkpoint failed with this SQLite code (SQLITE_FULL: the disk guard releases its reserve). */
  onError?: (code: string, message: string) => void;
}

export function startCheckpointer(path: string, o: CheckpointerOptions): Checkpointer {
  const { log } = o;
  const url = threadEntry(
    "store/checkpoint-thread.ts",
    new URL("./checkpoint-thread.ts", import.meta.url),
    import.meta.url,
  );
  const worker = new Worker(url);
  worker.unref();
  let lastError = "";
  worker.onmessage = (ev: MessageEvent<{ error: string; code: string } | { restarted: number } | "stopped">) => {
    const msg = ev.data;
    if (msg === "stopped") return;
    if ("restarted" in msg) {
      log.debug("wal_restarted", { frames: msg.restarted });
      return;
    }
    if (msg.error !== lastError) {
      lastError = msg.error; // once per distinct error, not every interval
      log.warn("wal_checkpoint_failed", { error: msg.error, code: msg.code });
    }
    o.onError?.(msg.code, msg.error);
  };
  worker.onerror = (ev) => log.error("wal_checkpointer_crashed", { error: ev.message });
  worker.postMessage({ path, intervalMs: o.intervalMs, walMaxBytes: o.walMaxBytes });
  return {
    now: () => worker.postMessage("now"),
    async stop() {
      // The thread is unref'd while running; during stop it must keep the
      // process alive, or an exiting broker would skip closing its store.
      worker.ref();
      const stopped = new Promise<void>((resolve) => {
        worker.addEventListener("message", (ev) => ev.data === "stopped" && resolve());
        setTimeout(resolve, 1000);
      });
      worker.postMessage("stop");
      await stopped;
      worker.terminate();
    },
  };
}
