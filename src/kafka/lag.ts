// Consumer lag per partition (the taskbroker_kafka_consumer_lag gauge of
// src/metrics.ts): the partition's high watermark minus the next offset this
// broker will commit. Set when a batch arrives (everything from its first
// offset on is not yet committed) and after each commit, so a consumer paused
// by backpressure shows its backlog and a drained one shows 0. Partitions the
// group takes away are dropped from the gauge so a stale lag is never shown.
import { kafkaLag } from "../metrics.ts";

export interface LagTracker {
  /** A fetched batch starting at `firstOffset`: that offset is the first not yet committed. */
  fetched(partition: number, highWatermark: string, firstOffset: string): void;
  /** `nextOffset` committed for the partition. */
  committed(partition: number, highWatermark: string, nextOffset: string): void;
  /** The group assigned these partitions to this member: forget the others. */
  assigned(partitions: number[]): void;
}

const OFFSET = /^-?\d+$/;

/** Messages from `next` up to (not including) the high watermark; never negative; null if either is not an offset. */
export function lagOf(highWatermark: string, next: string): number | null {
  if (!OFFSET.test(highWatermark) || !OFFSET.test(next)) return null;
  const lag = BigInt(highWatermark) - BigInt(next);
  return lag > 0n ? Number(lag) : 0;
}

export function createLagTracker(topic: string): LagTracker {
  const shown = new Set<number>();
  const set = (partition: number, value: number | null) => {
    if (value === null) return;
    shown.add(partition);
    kafkaLag.set({ topic, partition: String(partition) }, value);
  };
  return {
    fetched: (partition, highWatermark, firstOffset) => set(partition, lagOf(highWatermark, firstOffset)),
    committed: (partition, highWatermark, nextOffset) => set(partition, lagOf(highWatermark, nextOffset)),
    assigned(partitions) {
      const keep = new Set(partitions);
      for (const p of shown) {
        if (keep.has(p)) continue;
        kafkaLag.remove({ topic, partition: String(p) });
        shown.delete(p);
      }
    },
  };
}
