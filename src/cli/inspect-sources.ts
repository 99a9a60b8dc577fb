// Where `taskplatform inspect` reads a running broker from: its AdminService
// RPC (the broker's gRPC port) or its admin HTTP JSON API (the admin port).
// Both answer the same questions in the same shapes, so the command and its
// output do not care which one the operator can reach.
import { Code, ConnectError } from "@connectrpc/connect";
import { adminClient } from "../connect/client.ts";
import type { ActivationState } from "../store/types.ts";
import {
  deadLetterRow,
  describeActivation,
  type ActivationView,
  type DeadLetterRow,
} from "../admin/activation-view.ts";

export interface DepthsView {
  totals: Record<string, number>;
  byNamespace: Array<{ namespace: string; state: ActivationState | string; count: number }>;
  oldestPendingAgeSeconds: number;
}

export interface ActivationDetail extends ActivationView {
  state: string;
  processingAttempts: number;
  processingDeadlineMs: number | null;
  origin: { topic: string; partition: number; offset: string } | null;
}

export type { DeadLetterRow };

export interface DeadLetterPage {
  items: DeadLetterRow[];
  total: number;
  nextAfter: string | null;
}

export interface InspectSource {
  /** Human description of the endpoint, for error messages. */
  readonly endpoint: string;
  depths(): Promise<DepthsView>;
  /** null when the store does not hold the id. */
  activation(id: string): Promise<ActivationDetail | null>;
  deadLetters(limit: number, afterId?: string): Promise<DeadLetterPage>;
  /** The new activation id; null when `id` is not a dead letter. */
  replay(id: string): Promise<string | null>;
  /** false when `id` is not a dead letter. */
  discard(id: string): Promise<boolean>;
}

const notFound = (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound;

/** AdminService over gRPC on the broker's RPC port (signed when secrets are given). */
export function rpcSource(address: string, secrets: readonly string[], adminToken?: string): InspectSource {
  const client = adminClient(address, [...secrets], adminToken);
  return {
    endpoint: `broker ${address}`,
    async depths() {
      const r = await client.getDepths({});
      return {
        totals: Object.fromEntries(r.totals.map((t) => [t.state, Number(t.count)])),
        byNamespace: r.byNamespace.map((d) => ({ namespace: d.namespace, state: d.state, count: Number(d.count) })),
        oldestPendingAgeSeconds: r.oldestPendingAgeSeconds,
      };
    },
    async activation(id) {
      try {
        const r = await client.getActivation({ id });
        return {
          ...describeActivation(r.activation),
          state: r.state,
          processingAttempts: r.processingAttempts,
          processingDeadlineMs: r.processingDeadlineUnix === 0 ? null : r.processingDeadlineUnix * 1000,
          origin: r.topic ? { topic: r.topic, partition: r.partition, offset: r.offset.toString() } : null,
        };
      } catch (err) {
        if (notFound(err)) return null;
        throw err;
      }
    },
    async deadLetters(limit, afterId) {
      const r = await client.listDeadLetters({ limit, afterId: afterId ?? "" });
      const items = r.deadLetters.map((d) =>
        deadLetterRow({ ...d, deadLetteredAtMs: Math.round(d.deadLetteredAtUnix * 1000) }),
      );
      return { items, total: Number(r.total), nextAfter: r.nextAfterId || null };
    },
    async replay(id) {
      try {
        return (await client.replayDeadLetter({ id })).newId;
      } catch (err) {
        if (notFound(err)) return null;
        throw err;
      }
    },
    async discard(id) {
      try {
        await client.discardDeadLetter({ id });
        return true;
      } catch (err) {
        if (notFound(err)) return false;
        throw err;
      }
    },
  };
}

/** A failed admin HTTP call: status and the server's message. */
export class AdminHttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "AdminHttpError";
    this.status = status;
  }
}

/** The admin HTTP JSON API (src/admin/server.ts) at `baseUrl`, with the admin token when given. */
export function httpSource(baseUrl: string, token: string | undefined): InspectSource {
  const base = baseUrl.replace(/\/+$/, "");
  const call = async <T>(path: string, method = "GET"): Promise<T | null> => {
    const res = await fetch(base + path, {
      method,
      headers: { accept: "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status === 404) return null;
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {}
      throw new AdminHttpError(res.status, `${method} ${path}: HTTP ${res.status}: ${message}`);
    }
    return JSON.parse(text) as T;
  };
  const must = <T>(v: T | null, what: string): T => {
    if (v === null) throw new AdminHttpError(404, `${what}: not found (is ${base} a taskplatform admin port?)`);
    return v;
  };
  return {
    endpoint: `admin ${base}`,
    depths: async () => must(await call<DepthsView>("/api/depths"), "/api/depths"),
    activation: (id) => call<ActivationDetail>(`/api/activations/${encodeURIComponent(id)}`),
    async deadLetters(limit, afterId) {
      const q = `?limit=${limit}${afterId ? `&after=${encodeURIComponent(afterId)}` : ""}`;
      return must(await call<DeadLetterPage>(`/api/deadletters${q}`), "/api/deadletters");
    },
    async replay(id) {
      const r = await call<{ newId: string }>(`/api/deadletters/${encodeURIComponent(id)}/replay`, "POST");
      return r?.newId ?? null;
    },
    async discard(id) {
      return (await call(`/api/deadletters/${encodeURIComponent(id)}/discard`, "POST")) !== null;
    },
  };
}
