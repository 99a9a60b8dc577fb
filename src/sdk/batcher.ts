// Coalesces concurrent sends into batches: while one batch is in flight, new
// items queue up and go out together in the next call. Pure scheduling, no I/O.

export interface BatcherOptions<T> {
  /** Sends one batch; its rejection rejects every item in the batch. */
  flush(items: T[]): Promise<void>;
  /** Most items per batch. Default 1000. */
  maxItems?: number;
  /** Most summed weight (e.g. bytes) per batch. Default 4 MiB. */
  maxWeight?: number;
  weight?(item: T): number;
  /** Batches in flight at once. Default 1. */
  concurrency?: number;
}

export interface Batcher<T> {
  add(item: T): Promise<void>;
  /** Resolves when everything added so far has been flushed (or failed). */
  drain(): Promise<void>;
}

interface Pending<T> {
  item: T;
  resolve(): void;
  reject(err: unknown): void;
}

export function createBatcher<T>(options: BatcherOptions<T>): Batcher<T> {
  const maxItems = options.maxItems ?? 1000;
  const maxWeight = options.maxWeight ?? 4 * 1024 * 1024;
  const weight = options.weight ?? (() => 1);
  const concurrency = options.concurrency ?? 1;
  let queue: Pending<T>[] = [];
  let inFlight = 0;
  let scheduled = false;
  const idle: Array<() => void> = [];

  const pump = () => {
    scheduled = false;
    while (inFlight < concurrency && queue.length > 0) {
      let n = 0;
      let w = 0;
      while (n < queue.length && n < maxItems) {
        const iw = weight(queue[n]!.item);
        if (n > 0 && w + iw > maxWeight) break;
        w += iw;
        n++;
      }
      const batch = queue.slice(0, n);
      queue = queue.slice(n);
      inFlight++;
      options
        .flush(batch.map((p) => p.item))
        .then(
          () => batch.forEach((p) => p.resolve()),
          (err: unknown) => batch.forEach((p) => p.reject(err)),
        )
        .finally(() => {
          inFlight--;
          pump();
        });
    }
    if (inFlight === 0 && queue.length === 0) idle.splice(0).forEach((f) => f());
  };

  return {
    add(item) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        // Wait for the end of the current task (a microtask, not a turn of the event
        // loop): every dispatch made in it joins the batch, and a lone dispatch is
        // not held back behind the loop's I/O (enqueue -> start latency).
        if (!scheduled && inFlight < concurrency) {
          scheduled = true;
          queueMicrotask(pump);
        }
      });
    },
    drain() {
      if (inFlight === 0 && queue.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}
