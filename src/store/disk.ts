// The store on a filling disk. Three parts, each small:
// - storageFaultOf: which SQLite errors mean "the disk is full / failing /
//   locked" (retryable for clients) rather than a bug;
// - free space, read with statfs and cached briefly, so ingest can pause
//   (store.min_free_bytes) before the filesystem is full;
// - a reserve file: `<db>-reserve`, as large as the WAL bound, written while
//   the filesystem has less than 1 GiB free (at open, or as it runs low;
//   never on a roomy disk, so it costs nothing there). When a commit fails because the
//   disk is full, it is deleted, which gives the WAL checkpoint the room it
//   needs to finish; the WAL then restarts in the space it already occupies,
//   so claims and completions (which rewrite pages, they add none) keep
//   committing on a full disk and workers can drain the store. It is written
//   again once space is back, and kept across restarts.
// And the write-health record: whether the last commit failed on the disk,
// which the broker's health answers report.
import { closeSync, fsyncSync, openSync, rmSync, statSync, statfsSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.ts";

/** A storage error a client may retry: disk full, I/O failure, database locked past busy_timeout. */
export type StorageFault = "full" | "io" | "busy";

/** The storage fault an error stands for, or null (a bug, a constraint, anything else). */
export function storageFaultOf(err: unknown): StorageFault | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return null;
  if (code === "SQLITE_FULL") return "full";
  // READONLY: the filesystem went read-only under us (ext4 errors=remount-ro), a disk failure too.
  if (code.startsWith("SQLITE_IOERR") || code === "SQLITE_CANTOPEN" || code.startsWith("SQLITE_READONLY")) return "io";
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return "busy";
  return null;
}

/** Free bytes for unprivileged writers on the filesystem holding `path`, or Infinity when unknown. */
export function freeBytesAt(path: string): number {
  try {
    const s = statfsSync(dirname(path));
    return s.bavail * s.bsize;
  } catch {
    return Infinity;
  }
}

/**
 * Deletes the reserve file of the store at `path`, for a store that cannot
 * even open on a full disk; true when there was one.
 */
export function releaseReserveFile(path: string, log: Logger): boolean {
  const reservePath = `${path}-reserve`;
  try {
    statSync(reservePath);
  } catch {
    return false;
  }
  rmSync(reservePath, { force: true });
  log.warn("store_reserve_released", { path: reservePath, reason: "opening the store on a full disk" });
  return true;
}

/** How the store's writes are doing, for health checks and /ready. */
export interface WriteHealth {
  /** False while commits fail on the disk (claims and completions included). */
  ok: boolean;
  /** The last failure's message while not ok. */
  error: string | null;
  /** Unix ms of the first failure of the current fault; null when ok. */
  sinceMs: number | null;
  /** Set while ingest commits fail on the disk (new activations cannot be stored). */
  ingestError: string | null;
  /** Free bytes on the store's filesystem (Infinity for an in-memory store). */
  freeBytes: number;
  /** Bytes held by the reserve file (0 once released). */
  reserveBytes: number;
}

export interface DiskGuard {
  /** Free bytes for unprivileged writers on the store's filesystem, at most ~20 ms old (statfs: ~1.3 us). */
  freeBytes(): number;
  /** A commit of `kind` failed with `fault`; releases the reserve on a full disk. */
  failed(kind: "ingest" | "write", fault: StorageFault, err: unknown): void;
  /** A commit of `kind` succeeded. */
  succeeded(kind: "ingest" | "write"): void;
  health(): WriteHealth;
  /** Writes the reserve when the disk runs low and there is still room for it (called periodically). */
  tendReserve(): void;
  close(): void;
}

const FREE_CACHE_MS = 20;
/** Below this much free space (or min_free_bytes + 4 reserves, if more) the reserve is written. */
const RESERVE_LOW_WATER = 1 << 30;
/** After a release, the room is the checkpoint's for this long before the reserve may take it back. */
const RESERVE_COOLDOWN_MS = 1000;

export interface DiskGuardOptions {
  /** Database file; ":memory:" disables everything that touches the filesystem. */
  path: string;
  /** Size of the reserve file, bytes (the WAL bound); 0: none. */
  reserveBytes: number;
  /** Ingest pauses below this much free space (it raises the reserve's low-water mark when large). */
  minFreeBytes: number;
  /** Called when the reserve was released, so a checkpoint can use the room at once. */
  onReserveReleased: () => void;
  log: Logger;
}

export function createDiskGuard(o: DiskGuardOptions): DiskGuard {
  const memory = o.path === ":memory:";
  const reservePath = `${o.path}-reserve`;
  let cachedFree = Infinity;
  let cachedAt = -Infinity;
  let reserveHeld = 0;
  let releasedAtMs = -Infinity;
  let fault: { error: string; sinceMs: number } | null = null;
  let ingestError: string | null = null;

  function readFree(): number {
    if (memory) return Infinity;
    const now = performance.now();
    if (now - cachedAt < FREE_CACHE_MS) return cachedFree;
    cachedAt = now;
    cachedFree = freeBytesAt(o.path); // unknown is Infinity: never pause ingest on a guess
    return cachedFree;
  }

  function writeReserve(): void {
    let fd = -1;
    try {
      fd = openSync(reservePath, "w");
      const chunk = Buffer.alloc(Math.min(1 << 20, o.reserveBytes));
      for (let written = 0; written < o.reserveBytes; ) {
        written += writeSync(fd, chunk, 0, Math.min(chunk.byteLength, o.reserveBytes - written));
      }
      fsyncSync(fd);
      reserveHeld = o.reserveBytes;
      o.log.info("store_reserve_written", { path: reservePath, bytes: reserveHeld });
    } catch (err) {
      rmSync(reservePath, { force: true });
      o.log.warn("store_reserve_unavailable", { path: reservePath, bytes: o.reserveBytes, error: err });
    } finally {
      if (fd >= 0) closeSync(fd);
      cachedAt = -Infinity;
    }
  }

  // Kept across restarts: a broker restarted on a full disk still has its reserve.
  if (!memory && o.reserveBytes > 0) {
    try {
      if (statSync(reservePath).size >= o.reserveBytes) reserveHeld = o.reserveBytes;
    } catch {
      // Not written yet.
    }
  }

  function releaseReserve(): void {
    if (reserveHeld === 0) return;
    rmSync(reservePath, { force: true });
    o.log.warn("store_reserve_released", { path: reservePath, bytes: reserveHeld });
    reserveHeld = 0;
    releasedAtMs = performance.now();
    cachedAt = -Infinity;
    o.onReserveReleased();
  }

  return {
    freeBytes: readFree,
    failed(kind, f, err) {
      const message = err instanceof Error ? err.message : String(err);
      if (f === "full") releaseReserve();
      if (kind === "ingest") {
        if (ingestError === null) o.log.error("store_ingest_failing", { fault: f, error: message });
        ingestError = message;
        return;
      }
      if (fault === null) {
        fault = { error: message, sinceMs: Date.now() };
        o.log.error("store_write_failing", { fault: f, error: message });
      } else fault.error = message;
    },
    succeeded(kind) {
      if (kind === "ingest") {
        if (ingestError !== null) o.log.info("store_ingest_recovered", {});
        ingestError = null;
        return;
      }
      if (fault !== null) {
        o.log.info("store_write_recovered", { failing_ms: Date.now() - fault.sinceMs });
        fault = null;
      }
    },
    health: () => ({
      ok: fault === null,
      error: fault?.error ?? null,
      sinceMs: fault?.sinceMs ?? null,
      ingestError,
      freeBytes: readFree(),
      reserveBytes: reserveHeld,
    }),
    tendReserve() {
      if (reserveHeld > 0 || memory || o.reserveBytes <= 0 || fault !== null) return;
      if (performance.now() - releasedAtMs < RESERVE_COOLDOWN_MS) return;
      const free = readFree();
      const lowWater = Math.max(RESERVE_LOW_WATER, o.minFreeBytes + 4 * o.reserveBytes);
      // Low enough to want it, and room for it with a margin.
      if (free < lowWater && free >= o.reserveBytes + (1 << 20)) writeReserve();
    },
    close() {
      // The reserve file stays for the next start.
    },
  };
}
