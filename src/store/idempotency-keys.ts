// The idempotency-key table (our extension, docs/spec/idempotency.md): an
// activation carrying a key claims it inside the insert transaction; a second
// activation with a live key is a duplicate and is not stored, even when the
// first one has finished and its row is gone. Keys live for the configured
// window after the activation that claimed them arrived; an expired key may
// be claimed again. Upkeep deletes expired keys in bounded chunks.
import type { StoreContext } from "./context.ts";

export interface IdempotencyKeys {
  /** True when `key` was free (or expired) and now belongs to `activationId`. Inside a transaction. */
  claim(key: string, activationId: string, nowMs: number): boolean;
  /** Deletes at most `limit` keys that expired by `nowMs`; returns how many. */
  removeExpired(nowMs: number, limit: number): number;
  /** Live keys (tests and the admin view). */
  count(): number;
}

export function createIdempotencyKeys(ctx: StoreContext, windowMs: number): IdempotencyKeys {
  const { db } = ctx;
  // One statement: insert, or take over an expired key; a live key is left alone (0 changes).
  const claimKey = db.query<never, [string, number, string, number]>(
    `INSERT INTO idempotency_keys (key, expires_at_ms, activation_id) VALUES (?1, ?2, ?3)
     ON CONFLICT (key) DO UPDATE SET expires_at_ms = excluded.expires_at_ms, activation_id = excluded.activation_id
     WHERE idempotency_keys.expires_at_ms <= ?4`,
  );
  const sweep = db.query<never, [number, number]>(
    `DELETE FROM idempotency_keys WHERE key IN
       (SELECT key FROM idempotency_keys INDEXED BY idempotency_keys_expiry WHERE expires_at_ms <= ?1 LIMIT ?2)`,
  );
  const live = db.query<{ n: number }, [number]>("SELECT count(*) AS n FROM idempotency_keys WHERE expires_at_ms > ?");
  return {
    claim: (key, activationId, nowMs) => claimKey.run(key, nowMs + windowMs, activationId, nowMs).changes > 0,
    removeExpired: (nowMs, limit) => ctx.transaction(() => sweep.run(nowMs, limit).changes),
    count: () => live.get(Date.now())!.n,
  };
}
