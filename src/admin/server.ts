// The admin HTTP server (hono on Bun.serve, its own port): liveness and
// readiness, Prometheus /metrics, the dashboard page and the JSON API it and
// `taskplatform inspect --admin` use (depths, rates, dead letters, replay,
// discard, one activation decoded). Protected by the admin token when set
// (auth.ts: Bearer token or an expiring login session, throttled logins);
// /health and /ready stay open so orchestrators can probe without it. Every
// other request must name an allowed Host (no DNS rebinding) unless it
// carries the Bearer token, and state-changing ones must come from this
// port's own pages or from no browser at all (no cross-site POSTs).
import { Hono, type Context } from "hono";
import { getConnInfo } from "hono/bun";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { Logger } from "../log.ts";
import {
  namespaceLabel,
  oldestPendingAge,
  registry,
  storeDepth,
  storeDepthByNamespace,
  storeDiskFreeBytes,
  storeSizeBytes,
  storeWritable,
} from "../metrics.ts";
import { STATE_CODE, type ActivationState } from "../store/types.ts";
import { deadLetterRow, describeActivation } from "./activation-view.ts";
import { createAdminAuth, hasBearer, isAllowedHost, isSameOrigin, SESSION_COOKIE } from "./auth.ts";
import { dashboardHtml, loginHtml } from "./dashboard-page.ts";
import { CHART_SERIES, readCounterTotals, startRateSampler } from "./rate-sampler.ts";
import { createRateHistory } from "./rates.ts";
import { createDepthCache, type AdminStore, type DepthSnapshot } from "./store-view.ts";

export interface AdminServerOptions {
  /** Listen address (config admin_host). */
  host: string;
  /** Listen port; 0 picks a free one (read it back from `AdminServer.port`). */
  port: number;
  /** When set, required as Bearer token or login cookie (config admin_token). */
  token?: string;
  /** Host names (besides IP addresses and localhost) requests may name; "*" any (config admin_allowed_hosts). */
  allowedHosts?: readonly string[];
  /** How long a login session lasts, ms (config admin_session_ttl_sec). Default 12 h. */
  sessionTtlMs?: number;
  store: AdminStore;
  log: Logger;
  /** Unix ms of the last completed upkeep pass (readiness). */
  upkeepLastCompletedAtMs: () => number;
  /** Upkeep older than this makes /ready fail, ms (config upkeep_unhealthy_interval_ms). */
  upkeepUnhealthyAfterMs: number;
  /** Kafka mode: whether consumers have their partitions; omitted without Kafka. */
  kafkaReady?: () => boolean;
  /** One line about the Kafka consumers for /ready (which group is not ready and why). */
  kafkaDetail?: () => string;
  /** Store file, so per-namespace depths are counted off the event loop (a worker thread); omit to count inline. */
  dbPath?: string;
  /** Per-namespace depths are recounted in the background when older than this, ms. Default 2000. */
  depthCacheMs?: number;
  /** Rate sampling period, ms, and samples kept. Defaults 5000 and 180 (15 min). */
  rateSampleMs?: number;
  rateSamples?: number;
}

/** Activation bytes one /api/deadletters page reads. */
const DEAD_LETTER_PAGE_BYTES = 2 * 1024 * 1024;
/** Activations larger than this show no decoded parameters in the list (GET /api/activations/<id> or inspect get has them). */
const LIST_PARAMETER_BYTES = 64 * 1024;

/** Whether a listen address is loopback-only. */
function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

export interface AdminServer {
  /** The port actually listened on. */
  port: number;
  stop(): Promise<void>;
}

function refreshStoreGauges(s: DepthSnapshot, store: AdminStore): void {
  const w = store.writeHealth();
  storeWritable.set(w.ok ? 1 : 0);
  if (Number.isFinite(w.freeBytes)) storeDiskFreeBytes.set(w.freeBytes);
  for (const state of Object.keys(STATE_CODE) as ActivationState[]) storeDepth.set({ state }, s.totals[state] ?? 0);
  // reset() so a namespace that emptied out disappears instead of showing its last value.
  storeDepthByNamespace.reset();
  // Namespaces past the label cap are summed under "_other" (metrics.ts).
  const byLabel = new Map<string, { namespace: string; state: string; count: number }>();
  for (const d of s.byNamespace) {
    const namespace = namespaceLabel(d.namespace);
    const key = `${namespace}\u0000${d.state}`;
    const e = byLabel.get(key);
    if (e) e.count += d.count;
    else byLabel.set(key, { namespace, state: d.state, count: d.count });
  }
  for (const d of byLabel.values()) storeDepthByNamespace.set({ namespace: d.namespace, state: d.state }, d.count);
  oldestPendingAge.set(s.oldestPendingAgeSeconds);
  storeSizeBytes.set({ file: "db" }, s.sizeBytes.db);
  storeSizeBytes.set({ file: "wal" }, s.sizeBytes.wal);
}

/** The hono app alone (no socket), for composing and for in-process benches. */
export function createAdminApp(options: AdminServerOptions) {
  const { store, log, token } = options;
  const depths = createDepthCache(store, {
    ...(options.dbPath !== undefined ? { dbPath: options.dbPath } : {}),
    depthCacheMs: options.depthCacheMs ?? 2000,
    log,
  });
  const rates = createRateHistory(options.rateSamples ?? 180);
  const sampler = startRateSampler(rates, options.rateSampleMs ?? 5000);
  const auth = createAdminAuth({ token, sessionTtlMs: options.sessionTtlMs ?? 12 * 3_600_000 });
  const allowedHosts = options.allowedHosts ?? [];
  const app = new Hono();

  const clientAddress = (c: Context): string => {
    try {
      return getConnInfo(c).remote.address ?? "?";
    } catch {
      return "?"; // in-process use (benches): no socket
    }
  };

  // Host and origin checks come before everything but the probes.
  app.use("*", async (c, next) => {
    if (c.req.path === "/health" || c.req.path === "/ready") return next();
    const host = c.req.header("host");
    if (
      !(token !== undefined && hasBearer(token, c.req.header("authorization"))) &&
      !isAllowedHost(host, allowedHosts)
    ) {
      return c.json(
        { error: `Host ${JSON.stringify(host ?? "")} is not allowed here; add it to TASKBROKER_ADMIN_ALLOWED_HOSTS` },
        403,
      );
    }
    if (!isSameOrigin(c.req.method, host, c.req.header("origin"), c.req.header("sec-fetch-site"))) {
      return c.json({ error: "cross-site request refused" }, 403);
    }
    return next();
  });

  app.get("/health", (c) => c.text("ok\n"));
  app.get("/ready", (c) => {
    const checks: Record<string, { ok: boolean; detail?: string }> = {};
    // The store is ready while it commits. A disk too full for new activations
    // only pauses ingest (shown in the detail): the broker must stay reachable
    // so workers can drain it, which is what frees space again.
    const w = store.writeHealth();
    const free = Number.isFinite(w.freeBytes) ? `; ${w.freeBytes} bytes free` : "";
    checks.store = w.ok
      ? { ok: true, detail: w.ingestError !== null ? `ingest failing: ${w.ingestError}${free}` : `writable${free}` }
      : { ok: false, detail: `commits failing since ${new Date(w.sinceMs ?? 0).toISOString()}: ${w.error}${free}` };
    const upkeepAgeMs = Date.now() - options.upkeepLastCompletedAtMs();
    checks.upkeep = { ok: upkeepAgeMs < options.upkeepUnhealthyAfterMs, detail: `last pass ${upkeepAgeMs} ms ago` };
    if (options.kafkaReady)
      checks.kafka = { ok: options.kafkaReady(), detail: options.kafkaDetail?.() ?? "consumers assigned" };
    const ready = Object.values(checks).every((x) => x.ok);
    return c.json({ ready, checks }, ready ? 200 : 503);
  });

  app.get("/login", (c) => c.html(loginHtml(false)));
  app.post("/login", async (c) => {
    if (!token) return c.redirect("/", 303);
    const form = await c.req.parseBody();
    const typed = typeof form.token === "string" ? form.token : "";
    const result = auth.login(typed, clientAddress(c));
    if (result.retryAfterSec !== undefined) {
      log.warn("admin_login_throttled", { client: clientAddress(c) });
      return c.html(loginHtml(true), 429, { "retry-after": String(result.retryAfterSec) });
    }
    if (!result.ok || result.session === undefined) return c.html(loginHtml(true), 401);
    setCookie(c, SESSION_COOKIE, result.session, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/",
      maxAge: Math.floor((options.sessionTtlMs ?? 12 * 3_600_000) / 1000),
    });
    return c.redirect("/", 303);
  });
  app.post("/logout", (c) => {
    auth.logout(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.redirect("/login", 303);
  });

  app.use("*", async (c, next) => {
    if (auth.authenticated(c.req.header("authorization"), getCookie(c, SESSION_COOKIE))) return next();
    const wantsHtml = c.req.method === "GET" && (c.req.header("accept") ?? "").includes("text/html");
    if (wantsHtml) return c.redirect("/login", 303);
    return c.json({ error: "admin token required (Authorization: Bearer <token>)" }, 401);
  });

  app.get("/metrics", async (c) => {
    refreshStoreGauges(await depths.get(), store);
    return c.body(await registry.metrics(), 200, { "content-type": registry.contentType });
  });

  app.get("/", (c) => c.html(dashboardHtml));

  // Scripts and `inspect --admin` get an exact count; the dashboard (overview) a recent one.
  app.get("/api/depths", async (c) => {
    const s = await depths.get({ fresh: true });
    return c.json({
      totals: s.totals,
      byNamespace: s.byNamespace,
      oldestPendingAgeSeconds: s.oldestPendingAgeSeconds,
      atMs: s.atMs,
    });
  });
  const sampleMs = options.rateSampleMs ?? 5000;
  /**
   * latest: the last sample interval (the right end of the chart's lines); lastMinute: averages over a
   * minute; byNamespace: dispatches/s per namespace over the last minute (steadier than one sample).
   */
  const rateView = () => {
    const latest = rates.latest();
    const minute = rates.recent(60_000);
    const byNamespace: Record<string, number> = {};
    for (const [k, v] of Object.entries(minute))
      if (k.startsWith("dispatched:")) byNamespace[k.slice("dispatched:".length)] = v;
    const pick = (r: Record<string, number>) => Object.fromEntries(CHART_SERIES.map((n) => [n, r[n] ?? 0]));
    const lastMinuteSpanMs = rates.recentSpanMs(60_000);
    return {
      sampleMs,
      latest: pick(latest),
      lastMinute: pick(minute),
      lastMinuteSpanMs,
      byNamespace,
      series: rates.series(CHART_SERIES),
    };
  };
  app.get("/api/rates", (c) => c.json(rateView()));
  app.get("/api/overview", async (c) => {
    const [s, counted] = await Promise.all([depths.get({ waitForStale: true }), readCounterTotals()]);
    return c.json({
      generatedAtMs: Date.now(),
      depthsAtMs: s.atMs,
      byNamespaceAtMs: s.byNamespaceAtMs,
      totals: s.totals,
      byNamespace: s.byNamespace,
      oldestPendingAgeSeconds: s.oldestPendingAgeSeconds,
      sizeBytes: s.sizeBytes,
      // Finished work leaves the store (completed rows are deleted): these counters show it ran.
      sinceStart: {
        startedAtMs: Math.round(performance.timeOrigin),
        ...Object.fromEntries(
          ["ingested", "completed", "retried", "failed", "deadlettered", "expired"].map((n) => [n, counted[n] ?? 0]),
        ),
      },
      rates: rateView(),
    });
  });

  app.get("/api/deadletters", (c) => {
    const limit = Math.min(500, Math.max(1, Number(c.req.query("limit") ?? 50) || 50));
    const after = c.req.query("after") || undefined;
    // Bounded by bytes too (the dashboard polls this every 5 s); big parameters are not decoded for the list.
    const page = store.listDeadLetters({
      limit,
      maxBytes: DEAD_LETTER_PAGE_BYTES,
      ...(after !== undefined ? { afterId: after } : {}),
    });
    const items = page.items.map((d) => deadLetterRow(d, { maxParameterBytes: LIST_PARAMETER_BYTES }));
    return c.json({ items, total: page.total, nextAfter: page.nextAfter });
  });

  app.post("/api/deadletters/:id/replay", async (c) => {
    const id = c.req.param("id");
    const newId = await store.replayDeadLetter(id);
    if (newId === null) return c.json({ error: `${id} is not a dead letter` }, 404);
    depths.invalidate();
    log.info("deadletter_replayed", { id, new_id: newId, via: "admin_http" });
    return c.json({ id, newId });
  });
  app.post("/api/deadletters/:id/discard", async (c) => {
    const id = c.req.param("id");
    if (!(await store.discardDeadLetter(id))) return c.json({ error: `${id} is not a dead letter` }, 404);
    depths.invalidate();
    log.info("deadletter_discarded", { id, via: "admin_http" });
    return c.json({ id, discarded: true });
  });

  app.get("/api/activations/:id", (c) => {
    const id = c.req.param("id");
    const row = store.getActivation(id);
    if (!row) return c.json({ error: `no activation ${id} in the store` }, 404);
    return c.json({
      ...describeActivation(row.activation),
      state: row.state,
      processingAttempts: row.processingAttempts,
      processingDeadlineMs: row.processingDeadlineMs,
      origin: row.origin,
    });
  });

  app.onError((err, c) => {
    log.error("admin_request_failed", { path: c.req.path, error: err });
    return c.json({ error: err.message }, 500);
  });

  return {
    app,
    stop: async () => {
      sampler.stop();
      await depths.close();
    },
  };
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { app, stop } = createAdminApp(options);
  const server = Bun.serve({ hostname: options.host, port: options.port, fetch: app.fetch });
  const port = server.port ?? options.port;
  options.log.info("admin_listening", { host: options.host, port, auth: options.token ? "token" : "none" });
  if (!options.token && !isLoopbackHost(options.host)) {
    options.log.warn("admin_unauthenticated", {
      host: options.host,
      port,
      detail:
        "TASKBROKER_ADMIN_TOKEN is not set: anyone who can reach this port can read activations and replay or discard dead letters",
    });
  }
  return {
    port,
    async stop() {
      await stop();
      await server.stop(true);
    },
  };
}
