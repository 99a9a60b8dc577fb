// Resource limits of the RPC port, for every service on it (issue: slowloris
// and floods). A connection is admitted when the port has room for it, in
// total (below the process's open-file limit) and for its client address;
// it must prove it speaks (an HTTP/2 SETTINGS frame, or a complete HTTP/1.1
// request head) within the handshake timeout, and is closed once it has had
// no RPC in flight for the idle timeout (HTTP/2 GOAWAY, which clients
// reconnect from transparently). When the port is full, a connection that
// has not proven itself yet is dropped to make room: the oldest one of the
// client address holding the most such connections, among addresses holding
// at least as many connections as the newcomer's will, so trickling
// connections cannot lock well-behaved clients out (however fast they
// reconnect, they cannot displace a client holding fewer). Proving itself is cheap,
// though: a connection that sent its SETTINGS and then trickles a request
// body, or holds a Health/Watch stream, is established and never idle. So
// when no connection is in its handshake, the client address holding the
// most connections gives one up (its oldest without an RPC in flight, else
// its oldest) if it holds more than the newcomer's address will: a few
// addresses cannot hold the whole port, and a client from any other address
// still gets in. RPCs in flight are bounded
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

/**
 * Where a socket's record hangs. Looked up through the socket rather than in
 * a map keyed by it: Bun hands out a proxy of the net.Socket as
 * `session.socket`, which is not the same object but forwards property reads.
 */
const TRACKED = Symbol("taskplatform.connection");

function trackedOf(socket: Socket | null | undefined): Tracked | undefined {
  if (!socket) return undefined;
  try {
    return (socket as unknown as Record<symbol, Tracked | undefined>)[TRACKED] ?? undefined;
  } catch {
    return undefined; // the proxy of a session already closed throws on every read
  }
}

/** An HTTP/2 session's socket, or undefined once the session let go of it (reading it then throws in Bun). */
export function sessionSocket(session: { socket: unknown } | undefined | null): Socket | undefined {
  try {
    return (session?.socket as Socket | undefined) ?? undefined;
  } catch {
    return undefined;
  }
}

/** What rpcStarted hands out and rpcEnded takes back (resolved once, while the socket is readable). */
export type RpcTicket = { readonly tracked: Tracked | undefined };

export interface Tracked {
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
  /**
   * An RPC started on the socket: false (refuse it, RESOURCE_EXHAUSTED) when
   * the port has too many in flight. A request proves the protocol too:
   * `closeIdle` is how to end the connection once idle, if it was not
   * established yet.
   */
  rpcStarted(socket: Socket | null | undefined, closeIdle?: () => void): RpcTicket | null;
  /** An RPC admitted by rpcStarted ended. */
  rpcEnded(ticket: RpcTicket): void;
  connections(): number;
  /** Stops every timer (shutdown). */
  stop(): void;
}

export function createConnectionGuard(config: ConnectionLimitsConfig, log: Logger): ConnectionGuard {
  const limits = { ...config, maxConnections: effectiveMaxConnections(config.maxConnections, openFileLimit()) };
  const bySocket = new Set<Tracked>();
  const perClient = new Map<string, number>();
  /** Every connection of each client address, oldest first. */
  const byClient = new Map<string, Set<Tracked>>();
  /** Connections still in their handshake, by client, oldest first. */
  const unproven = new Map<string, Set<Tracked>>();
  const proven = (t: Tracked) => {
    const set = unproven.get(t.client);
    if (!set) return;
    set.delete(t);
    if (set.size === 0) unproven.delete(t.client);
  };
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
  const forget = (t: Tracked) => {
    if (!bySocket.has(t)) return;
    clearTimer(t);
    proven(t);
    bySocket.delete(t);
    const mine = byClient.get(t.client);
    mine?.delete(t);
    if (mine?.size === 0) byClient.delete(t.client);
    const n = (perClient.get(t.client) ?? 1) - 1;
    if (n <= 0) perClient.delete(t.client);
    else perClient.set(t.client, n);
    rpcConnections.set(bySocket.size);
  };
  /**
   * Drops the oldest connection in its handshake of the client holding the
   * most of them, among clients holding at least as many connections as
   * `newcomer` will once admitted (so a client with many connections cannot
   * displace the one connection of another while it shakes hands); false
   * when there is none.
   */
  const evictUnproven = (newcomer: string): boolean => {
    const floor = (perClient.get(newcomer) ?? 0) + 1;
    let victim: Set<Tracked> | undefined;
    for (const [client, set] of unproven) {
      if ((perClient.get(client) ?? 0) < floor) continue;
      if (victim === undefined || set.size > victim.size) victim = set;
    }
    const t = victim?.values().next().value;
    if (t === undefined) return false;
    refused("evicted_unestablished", t.client);
    t.socket.destroy();
    forget(t);
    return true;
  };
  /**
   * Drops a connection of the client address holding the most, when it holds
   * more than `newcomer` will once admitted: its oldest without an RPC in
   * flight, else its oldest. False when no address holds more.
   */
  const evictFairShare = (newcomer: string): boolean => {
    let heaviest: string | undefined;
    let most = (perClient.get(newcomer) ?? 0) + 1;
    for (const [client, n] of perClient) {
      if (n > most) {
        most = n;
        heaviest = client;
      }
    }
    if (heaviest === undefined) return false;
    let victim: Tracked | undefined;
    for (const t of byClient.get(heaviest) ?? []) {
      victim ??= t;
      if (t.active === 0) {
        victim = t;
        break;
      }
    }
    if (victim === undefined) return false;
    refused("evicted_fair_share", victim.client);
    victim.socket.destroy();
    forget(victim);
    return true;
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
      if (bySocket.size >= limits.maxConnections && !evictUnproven(client) && !evictFairShare(client)) {
        refused("total", client);
        socket.destroy();
        return false;
      }
      const t: Tracked = { socket, client, established: false, active: 0, timer: null, closeIdle: null };
      (socket as unknown as Record<symbol, Tracked>)[TRACKED] = t;
      bySocket.add(t);
      let all = byClient.get(client);
      if (!all) byClient.set(client, (all = new Set()));
      all.add(t);
      let set = unproven.get(client);
      if (!set) unproven.set(client, (set = new Set()));
      set.add(t);
      perClient.set(client, (perClient.get(client) ?? 0) + 1);
      rpcConnections.set(bySocket.size);
      socket.once("close", () => forget(t));
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
      const t = trackedOf(socket);
      if (!t || t.established) return;
      t.established = true;
      proven(t);
      t.closeIdle = closeIdle;
      if (t.active === 0) armIdle(t);
      else clearTimer(t);
    },
    rpcStarted(socket, closeIdle) {
      const t = trackedOf(socket);
      if (inflight >= limits.maxInflightRpcs) {
        refused("inflight_rpcs", t?.client ?? "?");
        return null;
      }
      inflight++;
      if (t) {
        t.active++;
        if (!t.established) {
          t.established = true;
          proven(t);
          t.closeIdle = closeIdle ?? (() => t.socket.destroy());
        }
        clearTimer(t);
      }
      return { tracked: t };
    },
    rpcEnded(ticket) {
      inflight--;
      const t = ticket.tracked;
      if (!t) return;
      t.active = Math.max(0, t.active - 1);
      if (t.active === 0 && t.established) armIdle(t);
    },
    connections: () => bySocket.size,
    stop() {
      for (const t of bySocket) clearTimer(t);
    },
  };
}
