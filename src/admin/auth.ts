// Admin authentication: one story for every admin surface, the admin HTTP
// port and AdminService on the RPC port (docs/operating.md "Admin access").
// - With TASKBROKER_ADMIN_TOKEN set, a request proves it with
//   `Authorization: Bearer <token>` (scripts, Prometheus, gRPC metadata) or,
//   on admin HTTP, with a session cookie from the login form: a random id
//   kept in memory, expiring after admin_session_ttl, HttpOnly, SameSite=Strict,
//   never derived from the token. Failed logins are throttled per client
//   address and overall.
// - Without a token, admin surfaces are for this machine only: the admin port
//   binds loopback by default, and AdminService refuses non-loopback peers.
// Comparisons are constant-time. Pure logic with an injectable clock; the
// servers decide what to answer.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const SESSION_COOKIE = "taskplatform_admin";

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** The token of an `Authorization: Bearer <token>` header, if that is what it is. */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
  return m ? m[1]! : undefined;
}

/** Whether `authorization` carries exactly `token` as a Bearer token. */
export function hasBearer(token: string, authorization: string | undefined): boolean {
  const given = bearerToken(authorization);
  return given !== undefined && sameSecret(given, token);
}

/** Loopback peers: 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** Why an AdminService call over the RPC port is refused, or null when it may proceed. */
export function adminRpcRefusal(
  token: string | undefined,
  authorization: string | undefined,
  remoteAddress: string | undefined,
): { code: "unauthenticated" | "permission_denied"; message: string } | null {
  if (token !== undefined) {
    return hasBearer(token, authorization)
      ? null
      : {
          code: "unauthenticated",
          message: "admin token required: send metadata authorization: Bearer <TASKBROKER_ADMIN_TOKEN>",
        };
  }
  return isLoopback(remoteAddress)
    ? null
    : {
        code: "permission_denied",
        message: "AdminService is served to loopback clients only while TASKBROKER_ADMIN_TOKEN is not set",
      };
}

export interface AdminAuthOptions {
  /** Unset: no login (admin surfaces are loopback-only). */
  token?: string;
  /** How long a login session lasts, ms. */
  sessionTtlMs: number;
  /** Failed logins one client address may make in a burst; then one per refill. */
  loginBurst?: number;
  loginRefillMs?: number;
  /** Failed logins from everyone together per second (a spread-out guesser). */
  loginGlobalPerSec?: number;
  now?: () => number;
}

export interface LoginResult {
  ok: boolean;
  /** Set on success: the session cookie's value. */
  session?: string;
  /** Set when throttled: seconds until the next attempt is considered. */
  retryAfterSec?: number;
}

export interface AdminAuth {
  /** Whether a request is authenticated (Bearer token or live session); always true without a token. */
  authenticated(authorization: string | undefined, sessionCookie: string | undefined): boolean;
  login(typed: string, clientAddress: string): LoginResult;
  logout(sessionCookie: string | undefined): void;
  /** Live sessions (tests, metrics). */
  sessions(): number;
}

const MAX_SESSIONS = 1000;
const MAX_TRACKED_CLIENTS = 10_000;

export function createAdminAuth(o: AdminAuthOptions): AdminAuth {
  const now = o.now ?? Date.now;
  const burst = o.loginBurst ?? 5;
  const refillMs = o.loginRefillMs ?? 12_000;
  const globalPerSec = o.loginGlobalPerSec ?? 10;
  // id -> expiry (ms). Insertion order is age order, so the oldest is evicted first when full.
  const sessions = new Map<string, number>();
  // client -> failed-login bucket.
  const buckets = new Map<string, { tokens: number; atMs: number }>();
  let globalWindowStart = 0;
  let globalFailures = 0;

  const live = (id: string | undefined): boolean => {
    if (id === undefined) return false;
    const expires = sessions.get(id);
    if (expires === undefined) return false;
    if (expires <= now()) {
      sessions.delete(id);
      return false;
    }
    return true;
  };

  const bucketOf = (client: string) => {
    const t = now();
    let b = buckets.get(client);
    if (!b) {
      if (buckets.size >= MAX_TRACKED_CLIENTS) buckets.delete(buckets.keys().next().value!);
      b = { tokens: burst, atMs: t };
      buckets.set(client, b);
    }
    const refilled = Math.floor((t - b.atMs) / refillMs);
    if (refilled > 0) {
      b.tokens = Math.min(burst, b.tokens + refilled);
      b.atMs += refilled * refillMs;
    }
    return b;
  };

  return {
    authenticated(authorization, cookie) {
      if (o.token === undefined) return true;
      return hasBearer(o.token, authorization) || live(cookie);
    },
    login(typed, client) {
      if (o.token === undefined) return { ok: true };
      const t = now();
      if (t - globalWindowStart >= 1000) {
        globalWindowStart = t;
        globalFailures = 0;
      }
      const b = bucketOf(client);
      if (b.tokens <= 0) return { ok: false, retryAfterSec: Math.max(1, Math.ceil((b.atMs + refillMs - t) / 1000)) };
      if (globalFailures >= globalPerSec) return { ok: false, retryAfterSec: 1 };
      if (!sameSecret(typed, o.token)) {
        b.tokens--;
        globalFailures++;
        return { ok: false };
      }
      const id = randomBytes(32).toString("base64url");
      if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
      sessions.set(id, t + o.sessionTtlMs);
      return { ok: true, session: id };
    },
    logout(cookie) {
      if (cookie !== undefined) sessions.delete(cookie);
    },
    sessions() {
      for (const id of [...sessions.keys()]) live(id);
      return sessions.size;
    },
  };
}

/**
 * The hostname of a Host header ("[::1]:9090" -> "::1"), lowercased, or null.
 */
export function hostnameOf(host: string | undefined): string | null {
  if (!host) return null;
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end > 0 ? h.slice(1, end) : null;
  }
  const colon = h.lastIndexOf(":");
  return colon >= 0 && h.indexOf(":") === colon ? h.slice(0, colon) : h;
}

/**
 * Whether a Host header may reach the admin port: an IP address, localhost,
 * or a configured name ("*" allows any). A DNS-rebinding page reaches the
 * port under its own domain name, which is none of these.
 */
export function isAllowedHost(host: string | undefined, allowed: readonly string[]): boolean {
  const name = hostnameOf(host);
  if (name === null) return false;
  if (allowed.includes("*")) return true;
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":")) return true; // IPv4 / IPv6 literal
  return allowed.some((a) => a.toLowerCase() === name);
}

/**
 * Whether a state-changing request comes from a page of this admin port (or
 * from no browser at all). Browsers send Origin on every POST and
 * Sec-Fetch-Site on every request; a cross-site form or fetch (a dead letter
 * replayed by a text/plain POST from another site) carries a foreign one.
 */
export function isSameOrigin(
  method: string,
  host: string | undefined,
  origin: string | undefined,
  fetchSite: string | undefined,
): boolean {
  if (method === "GET" || method === "HEAD" || method === "OPTIONS") return true;
  if (fetchSite !== undefined && fetchSite !== "same-origin" && fetchSite !== "none") return false;
  if (origin === undefined) return true; // not a browser
  if (origin === "null") return false;
  try {
    return new URL(origin).host.toLowerCase() === (host ?? "").toLowerCase();
  } catch {
    return false;
  }
}
