// Client-side balancing over several brokers (docs/spec/worker.md): each fetch loop
// starts at a random broker and moves to another after N tasks (default 32)
// or when its broker has nothing; a broker that answers UNAVAILABLE three
// times in a row is skipped for 20 s. Pure: clock and randomness are injected.

export interface BrokerHealth {
  consecutiveUnavailable: number;
  skipUntilMs: number;
}

export interface BalancerOptions {
  brokers: string[];
  rebalanceAfter?: number;
  unavailableThreshold?: number;
  skipMs?: number;
  now?: () => number;
  random?: () => number;
}

export interface Balancer {
  readonly brokers: readonly string[];
  /** A cursor for one fetch loop, starting at a random available broker. */
  cursor(): BrokerCursor;
  unavailable(broker: string): void;
  succeeded(broker: string): void;
  isSkipped(broker: string): boolean;
}

export interface BrokerCursor {
  current(): string;
  /** Counts a task fetched from the current broker; true when it is time to move on. */
  fetched(): boolean;
  /** Moves to another available broker (random among the others). */
  move(): string;
}

export function createBalancer(options: BalancerOptions): Balancer {
  if (options.brokers.length === 0) throw new Error("at least one broker address is required");
  const brokers = [...options.brokers];
  const rebalanceAfter = options.rebalanceAfter ?? 32;
  const threshold = options.unavailableThreshold ?? 3;
  const skipMs = options.skipMs ?? 20_000;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const health = new Map<string, BrokerHealth>(brokers.map((b) => [b, { consecutiveUnavailable: 0, skipUntilMs: 0 }]));

  const isSkipped = (b: string) => health.get(b)!.skipUntilMs > now();
  const pick = (exclude?: string): string => {
    let candidates = brokers.filter((b) => b !== exclude && !isSkipped(b));
    if (candidates.length === 0) candidates = brokers.filter((b) => !isSkipped(b));
    if (candidates.length === 0) candidates = brokers; // all skipped: keep trying rather than stall
    return candidates[Math.floor(random() * candidates.length)]!;
  };

  return {
    brokers,
    isSkipped,
    cursor() {
      let current = pick();
      let count = 0;
      return {
        current: () => (isSkipped(current) && brokers.length > 1 ? (current = pick(current)) : current),
        fetched() {
          count++;
          return brokers.length > 1 && count >= rebalanceAfter;
        },
        move() {
          count = 0;
          current = brokers.length > 1 ? pick(current) : current;
          return current;
        },
      };
    },
    unavailable(b) {
      const h = health.get(b)!;
      if (++h.consecutiveUnavailable >= threshold) {
        h.consecutiveUnavailable = 0;
        h.skipUntilMs = now() + skipMs;
      }
    },
    succeeded(b) {
      health.get(b)!.consecutiveUnavailable = 0;
    },
  };
}
