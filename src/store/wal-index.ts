// How much WAL the store has written since its last restart, read from the
// WAL index (the -shm file) header on the ingest path: exact as of the last
// commit and ~1 us a read, where asking the checkpointer thread lags by its
// interval (the WAL outgrew its bound by that much under bursts). The header
// layout is SQLite's documented wal-index format: mxFrame (u32, native byte
// order) at byte 16, and the checkpoint's nBackfill (u32) at byte 96. When
// every frame has been checkpointed the next commit starts the WAL over, so
// that counts as empty.
import { closeSync, openSync, readSync } from "node:fs";

export interface WalIndex {
  /** Bytes of WAL frames since the last restart, 0 when the next commit restarts it or when unknown. */
  contentBytes(pageSize: number): number;
  close(): void;
}

export function openWalIndex(dbPath: string): WalIndex {
  let fd = -1;
  const header = Buffer.alloc(100);
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  return {
    contentBytes(pageSize) {
      try {
        if (fd < 0) fd = openSync(`${dbPath}-shm`, "r");
        if (readSync(fd, header, 0, 100, 0) < 100) return 0;
      } catch {
        return 0; // no WAL index yet
      }
      const mxFrame = le ? header.readUInt32LE(16) : header.readUInt32BE(16);
      const backfilled = le ? header.readUInt32LE(96) : header.readUInt32BE(96);
      return backfilled >= mxFrame ? 0 : mxFrame * pageSize;
    },
    close() {
      if (fd >= 0) closeSync(fd);
      fd = -1;
    },
  };
}
