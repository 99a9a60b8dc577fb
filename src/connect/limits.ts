// Resource limits of the RPC port, for every service on it (issue: slowloris
// and floods). A connection is admitted when the port has room for it, in
// total (below the process's open-file limit) and for its client address;
// it must prove it speaks (an HTTP/2 SETTINGS frame, or a complete HTTP/1.1
// request head) within the handshake timeout, and is closed once it has had
// no RPC in flight for the idle timeout (HTTP/2 GOAWAY, which clients
// reconnect from transparently). When the port is full, the oldest
// connection that has not proven itself yet is dropped to make room, so
// trickling connections cannot lock well-behaved clients out; established
// connections are never dropped for a newcomer. RPCs in flight are bounded
// in total too (HTTP/2 also bounds them per connection: SETTINGS).
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import type { Logger } from "../log.ts";
import { rpcConnections, rpcRefusedTotal } from "../metrics.ts";

export interface ConnectionLimitsConfig {
  maxConnections: number;
  maxConnectionsPerClient: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  maxInflightRpcs: number;
}

/** File descriptors kept free for everything that is not a client connection (SQLite, threads, Kafka, logs). */
const FD_RESERVE = 128;

/** The soft open-file limit of this process (Linux), or null when unknown. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The connection cap actually used: the configured one, lowered to fit the open-file limit. */
export function effectiveMaxConnections(configured: number, fdLimit: number | null): number {
  if (fdLimit === null) return configured;
  return Math.max(16, Math.min(configured, fdLimit - FD_RESERVE));
}

/** A client's address as one key: IPv4-mapped IPv6 ("::ffff:10.0.0.1") is the IPv4 address. */
export function clientKey(address: string | undefined): string {
  if (address === undefined) return "?";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

interface Tracked {
  socket: Socket;
  client: string;
  established: boolean;
  active: number;
  timer: ReturnType<typeof setTimeout> | null;
  /** Closes the connection politely (HTTP/2 GOAWAY) once it is idle; set once its protocol is known. */
  closeIdle: (() => void) | null;
}

export interface ConnectionGuard {
  /** The effective caps (after the open-file limit). */
  readonly limits: ConnectionLimitsConfig;
  /** A new socket: true when admitted (tracked until it closes), false when refused (already destroyed). */
  admit(socket: Socket): boolean;
  /** The socket proved its protocol; `closeIdle` ends it gracefully when idle. */
  established(socket: Socket, closeIdle: () => void): void;
  /** An RPC started on the socket: false (refuse it, RESOURCE_EXHAUSTED) when the port has too many in flight. */
  rpcStarted(socket: Socket | null | undefined): boolean;
  /** An RPC admitted by rpcStarted ended. */
  rpcEnded(socket: Socket | null | undefined): void;
  connections(): number;
  /** Stops every timer (shutdown). */
  stop(): void;
}

export function createConnectionGuard(config: ConnectionLimitsConfig, log: Logger): ConnectionGuard {
  const limits = { ...config, maxConnections: effectiveMaxConnections(config.maxConnections, openFileLimit()) };
  const bySocket = new Map<Socket, Tracked>();
  const perClient = new Map<string, number>();
  let inflight = 0;
  // Refusals are logged at most every 10 s, with what was refused meanwhile.
  const refusedSince: Record<string, number> = {};
  let lastRefusalLog = 0;
  const refused = (reason: string, client: string) => {
    rpcRefusedTotal.inc({ reason });
    refusedSince[reason] = (refusedSince[reason] ?? 0) + 1;
    const now = Date.now();
    if (now - lastRefusalLog >= 10_000) {
      lastRefusalLog = now;
      log.warn("rpc_connections_refused", { ...refusedSince, last_client: client, connections: bySocket.size, limits });
      for (const k of Object.keys(refusedSince)) delete refusedSince[k];
    }
  };

  const clearTimer = (t: Tracked) => {
    if (t.timer !== null) clearTimeout(t.timer);
    t.timer = null;
  };
  const armIdle = (t: Tracked) => {
    clearTimer(t);
    if (limits.idleTimeoutMs <= 0) return;
    t.timer = setTimeout(() => {
      t.timer = null;
      if (t.active === 0) t.closeIdle?.();
    }, limits.idleTimeoutMs);
    t.timer.unref?.();
  };
  const forget = (socket: Socket) => {
    const t = bySocket.get(socket);
    if (!t) return;
    clearTimer(t);
    bySocket.delete(socket);
    const n = (perClient.get(t.client) ?? 1) - 1;
    if (n <= 0) perClient.delete(t.client);
    else perClient.set(t.client, n);
    rpcConnections.set(bySocket.size);
  };
  /** The oldest connection still in its handshake, dropped to make room. */
  const evictUnproven = (): boolean => {
    for (const t of bySocket.values()) {
      if (t.established) continue;
      refused("evicted_unestablished", t.client);
      t.socket.destroy();
      forget(t.socket);
      return true;
    }
    return false;
  };

  return {
    limits,
    admit(socket) {
      const client = clientKey(socket.remoteAddress);
      if ((perClient.get(client) ?? 0) >= limits.maxConnectionsPerClient) {
        refused("per_client", client);
        socket.destroy();
        return false;
      }
      if (bySocket.size >= limits.maxConnections && !evictUnproven()) {
        refused("total", client);
        socket.destroy();
        return false;
      }
      const t: Tracked = { socket, client, established: false, active: 0, timer: null, closeIdle: null };
      bySocket.set(socket, t);
      perClient.set(client, (perClient.get(client) ?? 0) + 1);
      rpcConnections.set(bySocket.size);
      socket.once("close", () => forget(socket));
      if (limits.handshakeTimeoutMs > 0) {
        t.timer = setTimeout(() => {
          t.timer = null;
          if (!t.established) {
            refused("handshake_timeout", client);
            socket.destroy();
          }
        }, limits.handshakeTimeoutMs);
        t.timer.unref?.();
      }
      return true;
    },
    established(socket, closeIdle) {
      const t = bySocket.get(socket);
      if (!t || t.established) return;
      t.established = true;
      t.closeIdle = closeIdle;
      if (t.active === 0) armIdle(t);
      else clearTimer(t);
    },
    rpcStarted(socket) {
      if (inflight >= limits.maxInflightRpcs) {
        refused("inflight_rpcs", clientKey(socket?.remoteAddress));
        return false;
      }
      inflight++;
      const t = socket ? bySocket.get(socket) : undefined;
      if (t) {
        // A request proves the protocol too (an HTTP/1.1 head; an HTTP/2 stream before SETTINGS was seen).
        t.active++;
        if (t.established) clearTimer(t);
      }
      return true;
    },
    rpcEnded(socket) {
      inflight--;
      const t = socket ? bySocket.get(socket) : undefined;
      if (!t) return;
      t.active = Math.max(0, t.active - 1);
      if (t.active === 0 && t.established) armIdle(t);
    },
    connections: () => bySocket.size,
    stop() {
      for (const t of bySocket.values()) clearTimer(t);
    },
  };
}
