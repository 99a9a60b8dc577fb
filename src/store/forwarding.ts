// Stored rows leaving the broker for another topic (runtime config namespace
// demotion, src/runtime/demote.ts): Pending rows of the demoted namespaces
// are claimed with a lease (so no worker takes them meanwhile), and marked
// Complete only once their publish was acknowledged, or handed back to Pending
// when it failed. A crash between the two leaves them Claimed until the lease
// runs out; upkeep's claim expiry then makes them Pending again.
import type { StoreContext } from "./context.ts";
import { STATE_CODE, type ForwardRow, type Forwarding } from "./types.ts";

const S = STATE_CODE;

/** Bound on the ids in one IN (...) list (SQLite's default variable limit is far above it). */
const IDS_PER_STATEMENT = 500;

export function createForwarding(ctx: StoreContext): Forwarding {
  const { db } = ctx;

  function moveClaimed(ids: string[], to: "complete" | "pending"): number {
    if (ids.length === 0) return 0;
    return ctx.transaction((delta) => {
      let n = 0;
      for (let i = 0; i < ids.length; i += IDS_PER_STATEMENT) {
        const chunk = ids.slice(i, i + IDS_PER_STATEMENT);
        n += db
          .query(
            `UPDATE inflight SET state = ${S[to]}, claim_expires_ms = NULL
             WHERE state = ${S.claimed} AND id IN (${chunk.map(() => "?").join(", ")})`,
          )
          .run(...chunk).changes;
      }
      delta.move("claimed", to, n);
      return n;
    });
  }

  return {
    claimForForward(namespaces, limit, leaseMs) {
      if (namespaces.length === 0 || limit <= 0) return [];
      const marks = namespaces.map(() => "?").join(", ");
      return ctx.transaction((delta) => {
        const nowMs = Date.now();
        const rows = db
          .query<ForwardRow, (string | number)[]>(
            `UPDATE inflight SET state = ${S.claimed}, claim_expires_ms = ?
             WHERE seq IN (SELECT seq FROM inflight INDEXED BY inflight_pending WHERE state = ${S.pending}
                           AND namespace IN (${marks}) AND (expires_at_ms IS NULL OR expires_at_ms > ?)
                           ORDER BY seq LIMIT ?)
             RETURNING id, namespace, taskname, activation`,
          )
          .all(nowMs + leaseMs, ...namespaces, nowMs, limit);
        delta.move("pending", "claimed", rows.length);
        return rows;
      });
    },
    completeForwarded: (ids) => moveClaimed(ids, "complete"),
    releaseForwarded: (ids) => moveClaimed(ids, "pending"),
  };
}
