// Taking back rows whose offsets a rebalance left uncommitted (pipeline.ts):
// delete the rows of those (topic, partition, offset) origins that were never
// handed out (Pending / Delay), so the partition's next owner stores them and
// each offset is stored exactly once across brokers.
//
// Bridge: the store does not offer `discardUncommitted` yet (requested in
// /work/coord/kafka.md). Until it does, this opens its own connection to the
// same SQLite file (WAL; writes serialise on the file lock) and then asks the
// store to recount, so its in-memory depth counters stay right. Remove the
// bridge once the store method exists; index.ts prefers the store's method.
import { Database } from "bun:sqlite";
import { STATE_CODE, type KafkaOrigin } from "../store/types.ts";

export type TakeBack = (origins: KafkaOrigin[]) => number;

export function takeBackFor(store: object | undefined, dbPath: string): TakeBack {
  const own = (store as { discardUncommitted?: unknown } | undefined)?.discardUncommitted;
  if (typeof own === "function") return (origins) => (own as TakeBack).call(store, origins);
  const recount = (store as { recount?: unknown } | undefined)?.recount;
  let db: Database | null = null;
  return (origins) => {
    if (origins.length === 0) return 0;
    db ??= new Database(dbPath);
    db.run("PRAGMA busy_timeout = 5000");
    const del = db.query(
      `DELETE FROM inflight WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset = ?
         AND state IN (${STATE_CODE.pending}, ${STATE_CODE.delay})`,
    );
    let n = 0;
    db.transaction(() => {
      for (const o of origins) n += del.run(o.topic, o.partition, BigInt(o.offset)).changes;
    })();
    if (n > 0 && typeof recount === "function") recount.call(store);
    return n;
  };
}
