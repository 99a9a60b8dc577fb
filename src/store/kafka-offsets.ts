// What the store knows about each Kafka partition it stores rows from
// (table kafka_partitions), so no activation is dispatched again after its
// completion was acknowledged, even when offset commits failed (Kafka away)
// and the broker was then killed:
//   stored_next     one past the highest offset stored, written in the same
//                   transaction as the rows;
//   committing_next the offset a commit is about to ask for, written before
//                   the commit is sent (and taken back when Kafka answers
//                   that it refused it);
//   committed_next  the highest offset known committed for the group (our
//                   acknowledged commits, and the group's own at each join).
// Completed rows at or above committed_next are kept (upkeep's cleanup skips
// them): a redelivered message then meets its row and is ignored as a
// duplicate, instead of being stored and dispatched again. And rows this
// broker stored but never committed, at or above committing_next, that the
// group has since committed past were re-consumed by another broker: the
// ones never handed out are dropped when the group's offsets are seen.
import { STATE_BY_CODE, type Delta, type StoreContext } from "./context.ts";
import { STATE_CODE, type KafkaPartitionCommit, type NewRow } from "./types.ts";

const S = STATE_CODE;

export const KAFKA_PARTITIONS_DDL = `
CREATE TABLE IF NOT EXISTS kafka_partitions (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  stored_next INTEGER NOT NULL,
  committing_next INTEGER,
  committed_next INTEGER,
  PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
`;

/**
 * Upkeep's cleanup condition for a Complete row: not from Kafka, or its
 * offset is below what is known committed for its partition. (A partition
 * with no record predates this table: nothing is held.)
 */
export const DELETABLE_COMPLETE_SQL = `(kafka_topic IS NULL OR NOT EXISTS (
  SELECT 1 FROM kafka_partitions k WHERE k.topic = inflight.kafka_topic AND k.partition = inflight.kafka_partition
    AND (k.committed_next IS NULL OR inflight.kafka_offset >= k.committed_next)))`;

export interface KafkaOffsets {
  /** In the insert's transaction: remembers the highest stored offset per partition of `rows`. */
  noteStored(rows: NewRow[]): void;
  /** Before an offset commit is sent. */
  committing(topic: string, partition: number, next: string): void;
  /** After Kafka acknowledged an offset commit. */
  committed(topic: string, partition: number, next: string): void;
  /** Kafka refused the commit announced by committing(): it certainly did not happen. */
  commitFailed(topic: string, partition: number): void;
  /**
   * The group's committed offsets as Kafka reports them (at each join): raises
   * committed_next, and drops never-handed-out rows this broker stored but did
   * not commit that the group committed past. Returns rows dropped.
   */
  reconcile(commits: KafkaPartitionCommit[]): number;
  /** Topics this broker no longer consumes: their completed rows are no longer held. */
  releaseExcept(consumedTopics: string[]): void;
}

export function createKafkaOffsets(ctx: StoreContext): KafkaOffsets {
  const { db } = ctx;
  const upsertStored = db.query(
    `INSERT INTO kafka_partitions (topic, partition, stored_next) VALUES (?1, ?2, ?3)
     ON CONFLICT (topic, partition) DO UPDATE SET stored_next = max(stored_next, excluded.stored_next)`,
  );
  const setCommitting = db.query(
    `INSERT INTO kafka_partitions (topic, partition, stored_next, committing_next) VALUES (?1, ?2, 0, ?3)
     ON CONFLICT (topic, partition) DO UPDATE SET committing_next = max(coalesce(committing_next, 0), excluded.committing_next)`,
  );
  const setCommitted = db.query(
    `INSERT INTO kafka_partitions (topic, partition, stored_next, committed_next) VALUES (?1, ?2, 0, ?3)
     ON CONFLICT (topic, partition) DO UPDATE SET committed_next = max(coalesce(committed_next, 0), excluded.committed_next)`,
  );
  const undoCommitting = db.query(
    "UPDATE kafka_partitions SET committing_next = committed_next WHERE topic = ?1 AND partition = ?2",
  );
  const record = db.query<{ ours: number | bigint | null; known: number | bigint | null }, [string, number]>(
    `SELECT max(coalesce(committing_next, -1), coalesce(committed_next, -1)) AS ours, committed_next AS known
     FROM kafka_partitions WHERE topic = ? AND partition = ?`,
  );
  const dropReconsumed = db.query<{ state: number }, [string, number, bigint, bigint]>(
    `DELETE FROM inflight WHERE kafka_topic = ?1 AND kafka_partition = ?2 AND kafka_offset >= ?3 AND kafka_offset < ?4
       AND state IN (${S.pending}, ${S.delay}) RETURNING state`,
  );
  const raiseCommitted = db.query(
    `UPDATE kafka_partitions SET committed_next = max(coalesce(committed_next, 0), ?3) WHERE topic = ?1 AND partition = ?2`,
  );

  return {
    releaseExcept(consumedTopics) {
      db.query(
        `UPDATE kafka_partitions SET committed_next = max(stored_next, coalesce(committed_next, 0))
         WHERE topic NOT IN (SELECT value FROM json_each(?))`,
      ).run(JSON.stringify(consumedTopics));
    },
    noteStored(rows) {
      let last: { topic: string; partition: number; next: bigint } | null = null;
      const flush = () => {
        if (last) upsertStored.run(last.topic, last.partition, last.next);
      };
      for (const r of rows) {
        const o = r.origin;
        if (!o) continue;
        const next = BigInt(o.offset) + 1n;
        if (last && last.topic === o.topic && last.partition === o.partition) {
          if (next > last.next) last.next = next;
          continue;
        }
        flush();
        last = { topic: o.topic, partition: o.partition, next };
      }
      flush();
    },
    committing(topic, partition, next) {
      setCommitting.run(topic, partition, BigInt(next));
    },
    committed(topic, partition, next) {
      setCommitted.run(topic, partition, BigInt(next));
    },
    commitFailed(topic, partition) {
      undoCommitting.run(topic, partition);
    },
    reconcile(commits) {
      return ctx.transaction((d: Delta) => {
        let dropped = 0;
        for (const c of commits) {
          const group = BigInt(c.next);
          if (group < 0n) continue; // the group has committed nothing here
          const rec = record.get(c.topic, c.partition);
          if (!rec) continue; // nothing stored from this partition (or rows from before this table): keep as is
          const ours = BigInt(rec.ours ?? -1);
          if (group > ours) {
            // Offsets [ours, group) were committed by another member: its copies are the live ones.
            const gone = dropReconsumed.all(c.topic, c.partition, ours < 0n ? 0n : ours, group);
            for (const row of gone) d.add(STATE_BY_CODE[row.state]!, -1);
            dropped += gone.length;
          }
          raiseCommitted.run(c.topic, c.partition, group);
        }
        return dropped;
      });
    },
  };
}
