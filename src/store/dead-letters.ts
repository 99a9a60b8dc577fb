// The local dead-letter table, used when no Kafka dead-letter topic exists:
// upkeep writes failed DEADLETTER activations here; operators list, replay
// (re-queue as a fresh activation) or discard them via the admin API / CLI.
import { buildReplayActivation } from "../activation/rewrite.ts";
import { activationToRow } from "./row.ts";
import type { Delta, StoreContext } from "./context.ts";
import type { DeadLetter, DeadLetterPage, DeadLetterPageOptions, NewRow, UpkeepRow } from "./types.ts";

export const DEFAULT_DEAD_LETTER_PAGE_BYTES = 4 * 1024 * 1024;

export interface DeadLetters {
  addDeadLetter(row: UpkeepRow, nowMs: number): void;
  listDeadLetters(opts: DeadLetterPageOptions): DeadLetterPage;
  getDeadLetter(id: string): DeadLetter | null;
  replayDeadLetter(id: string): string | null;
  discardDeadLetter(id: string): boolean;
}

const COLUMNS = `id, namespace, taskname, application, dead_lettered_at_ms AS deadLetteredAtMs, activation`;

/** `insertRows` is the store's own insert, run inside the replay transaction. */
export function createDeadLetters(ctx: StoreContext, insertRows: (rows: NewRow[], delta: Delta) => void): DeadLetters {
  const { db } = ctx;
  // Idempotent: a publish repeated after a crash (before the row was marked Complete) adds nothing.
  const add = db.query(
    `INSERT OR IGNORE INTO dead_letters (id, namespace, taskname, application, dead_lettered_at_ms, activation)
     VALUES (?, ?, ?, ?, ?, ?)`,
  );
  // Sizes first (length() of a blob reads no content), then only the rows that fit the byte budget.
  const sizes = db.query<{ id: string; size: number }, [string, number]>(
    "SELECT id, length(activation) AS size FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?",
  );
  const page = db.query<DeadLetter, [string, string]>(
    `SELECT ${COLUMNS} FROM dead_letters WHERE id > ? AND id <= ? ORDER BY id`,
  );
  const total = db.query<{ n: number }, []>("SELECT count(*) AS n FROM dead_letters");
  const get = db.query<DeadLetter, [string]>(`SELECT ${COLUMNS} FROM dead_letters WHERE id = ?`);
  const remove = db.query("DELETE FROM dead_letters WHERE id = ?");

  return {
    addDeadLetter(row, nowMs) {
      add.run(row.id, row.namespace, row.taskname, row.application, nowMs, row.activation);
    },
    listDeadLetters({ limit, afterId, maxBytes = DEFAULT_DEAD_LETTER_PAGE_BYTES }) {
      const n = Math.max(1, Math.min(limit, 10_000));
      // One more than asked: whether a next page exists.
      const candidates = sizes.all(afterId ?? "", n + 1);
      let take = 0;
      let bytes = 0;
      while (take < Math.min(n, candidates.length)) {
        const size = candidates[take]!.size;
        if (take > 0 && bytes + size > maxBytes) break;
        bytes += size;
        take++;
      }
      const items = take === 0 ? [] : page.all(afterId ?? "", candidates[take - 1]!.id);
      const nextAfter = take < candidates.length ? candidates[take - 1]!.id : null;
      return { items, total: total.get()!.n, nextAfter };
    },
    getDeadLetter: (id) => get.get(id) ?? null,
    replayDeadLetter(id) {
      return ctx.transaction((delta) => {
        const dl = get.get(id);
        if (!dl) return null;
        const nowMs = Date.now();
        const replay = buildReplayActivation(dl.activation, nowMs);
        insertRows([activationToRow(replay.bytes, nowMs, { maxDelaySec: ctx.maxDelaySec }, null)], delta);
        remove.run(id);
        return replay.id;
      });
    },
    discardDeadLetter: (id) => remove.run(id).changes > 0,
  };
}
