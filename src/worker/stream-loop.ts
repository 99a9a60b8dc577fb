// The worker's streaming delivery loop (docs/streaming.md): one delivery
// stream per broker and application, on its own connection. The loop keeps
// the worker's capacity (`concurrency`) as credit spread over the streams,
// runs every activation a stream delivers as soon as it arrives, and sends
// the results back on the stream that delivered it, batched per turn of the
// event loop (each result returns its credit to that stream). Results stay
// held until the broker acknowledges them and are sent again on the next
// stream to the same broker if one breaks first; a broken stream is
// reconnected with back-off. With several streams, credit moves to where the
// work is: a stream that got nothing for a while keeps one credit (enough to
// be woken) and gives the rest to streams that use all of theirs.
// Beyond its concurrency the worker grants a prefetch: about as many
// activations as it finished in the last 100 ms (at most 3x the concurrency),
// which wait in batch-run.ts for a slot. Short tasks then keep the pipeline
// full (bigger batches, fewer round trips per task: drain rate up ~1.5-2x and
// CPU per task down ~25% at 64 slots in bench/drain-profile.ts), while slow
// tasks get little (only what finished in the last 100 ms), so a prefetched
// activation waits for about one run of the task ahead of it at most (measured:
// 546 ms at worst with 1 s tasks, 16 ms at p50), and its processing deadline,
// running since the broker sent it, is eaten up by no more than that.
import type { ConnectError } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { decodeWireActivation, type WireActivation } from "../activation/wire.ts";
import { openDeliveryStream, type DeliveryStream } from "../connect/delivery-client.ts";
import type { DecodedBrokerMessage } from "../protocol/delivery-messages.ts";
import type { Logger } from "../log.ts";
import type { Balancer } from "./balancer.ts";
import type { FetchFilter, StatusReport } from "./broker-client.ts";
import type { HealthFile } from "./health.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { BatchRunner, RunDone } from "./batch-run.ts";
import { STATUS_RETRY } from "../sdk/execute.ts";

export interface StreamLoopOptions {
  concurrency: number;
  /** One stream per broker and filter (one filter per application the worker claims for). */
  filters: FetchFilter[];
  brokers: readonly string[];
  secrets?: string[];
  runner: BatchRunner;
  balancer: Balancer;
  health: HealthFile;
  metrics: WorkerMetrics;
  log: Logger;
  maxBackoffMs: number;
  /** Free-form name sent with `open` (host, pid), for the broker's logs. */
  workerName: string;
  /** A broker answered UNIMPLEMENTED: it has no delivery stream (the caller falls back to the v1 calls). */
  onUnsupported(address: string): void;
  /** How often prefetch is sized and credit moved between streams. Default 100 ms. */
  rebalanceMs?: number;
}

export interface StreamLoop {
  /** Stop taking activations; let running tasks finish within graceMs, get their results acknowledged, close the streams. */
  stop(graceMs: number): Promise<void>;
  /** Resolves when every stream has ended after stop(). */
  done: Promise<void>;
}

/** Longest a result waits to be acknowledged after stop() once every task has finished. */
const ACK_WAIT_MS = 5000;

class Channel {
  stream: DeliveryStream | null = null;
  /** Credit the broker holds for us and has not used (our count). */
  unused = 0;
  /** Activations from this channel running now. */
  running = 0;
  /** Results to send with the next message (each returns a credit once sent). */
  outbox: StatusReport[] = [];
  /** Sent on the current stream, not yet acknowledged, oldest first. */
  unacked: StatusReport[] = [];
  /** Credits to take back / to grant with the next message. */
  revoke = 0;
  grant = 0;
  /** Activations received since the last rebalance tick. */
  activity = 0;
  /** Got work until all its credit was in use, and still has none spare (its broker likely has more). */
  saturated = false;
  failures = 0;
  retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** Resolved when the current stream has ended. */
  closed: Promise<void> = Promise.resolve();
  constructor(
    readonly address: string,
    readonly filter: FetchFilter,
  ) {}
  held(): number {
    return this.outbox.length + this.unacked.length;
  }
  /**
   * Credit this channel accounts for: held by the broker, about to be granted,
   * running, or riding on a result to send (and, while no stream is open, on
   * the unacknowledged results that go out again with the next one).
   */
  owned(): number {
    return (
      this.unused + this.grant + this.running + this.outbox.length + (this.stream === null ? this.unacked.length : 0)
    );
  }
}

export function startStreamLoop(o: StreamLoopOptions): StreamLoop {
  const channels: Channel[] = [];
  for (const address of o.brokers) for (const filter of o.filters) channels.push(new Channel(address, filter));
  let stopping = false;
  let flushScheduled = false;
  let rebalanceTimer: ReturnType<typeof setInterval> | null = null;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  /** Prefetch: credit beyond the concurrency, sized every tick from recent completions. */
  let prefetch = 0;
  let finishedThisTick = 0;
  let finishedPerTick = 0;
  const maxPrefetch = 3 * o.concurrency;
  const capacity = () => o.concurrency + prefetch;
  /** Credit nobody accounts for (pending revokes count as still owned until the broker answers); negative after prefetch shrank. */
  const free = () => {
    let used = 0;
    for (const c of channels) used += c.owned();
    return capacity() - used;
  };
  const live = () => channels.filter((c) => c.stream !== null);
  const setOccupancy = () => o.metrics.occupancy.set(o.runner.running() / o.concurrency);

  // Results go out as soon as a quarter of the capacity has finished, else within a
  // millisecond: each message then carries enough results for the broker to
  // commit and refill them in one transaction (a commit's cost is mostly per
  // transaction: ~2x per task between batches of 16 and 64, bench/store.ts).
  const flushAt = Math.max(1, Math.ceil(o.concurrency / 4));
  let flushTimer: ReturnType<typeof setTimeout> | null = null;
  let outboxed = 0;
  const scheduleFlush = (now = false) => {
    if (flushScheduled) return;
    if (!now && !stopping && outboxed < flushAt) {
      flushTimer ??= setTimeout(() => {
        flushTimer = null;
        scheduleFlush(true);
      }, 1);
      return;
    }
    flushScheduled = true;
    setImmediate(flushAll);
  };

  /** taskworker_results_held: results of brokers whose stream failed since it last opened (kept, sent again on the next one). */
  const setHeld = () => o.metrics.resultsHeld.set(channels.reduce((n, c) => n + (c.failures > 0 ? c.held() : 0), 0));

  /** Sends each channel's results, grant and revoke as one message per channel. */
  function flushAll(): void {
    flushScheduled = false;
    if (flushTimer !== null) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
    outboxed = 0;
    for (const c of channels) {
      if (c.stream === null) continue;
      const results = c.outbox;
      // While stopping, every credit a result returns is taken straight back (nothing new is wanted).
      const revoke = stopping ? c.unused + results.length : c.revoke;
      if (results.length === 0 && c.grant === 0 && revoke === 0) continue;
      if (!c.stream.send({ results, credit: c.grant, revoke })) continue; // over: its end handler keeps the results
      c.outbox = [];
      for (const r of results) c.unacked.push(r);
      c.unused += results.length + c.grant;
      c.grant = 0;
      c.revoke = 0; // the broker's `revoked` answer lowers `unused`
    }
    o.health.progress();
    setHeld();
  }

  /** Hands free credit to streams: first to those that used all of theirs, then up to an even share. */
  function distribute(): void {
    if (stopping) return;
    const before = free();
    let avail = before;
    if (avail <= 0) return;
    const open = live();
    if (open.length === 0) return;
    const share = Math.ceil(capacity() / open.length);
    const hungry =
      open.length > 1 ? open.filter((c) => c.unused + c.grant === 0 && (c.saturated || c.activity > 0)) : [];
    for (const [group, cap] of [
      [hungry, capacity()],
      [open, share],
    ] as const) {
      for (const c of group) {
        if (avail <= 0) break;
        const give = Math.min(avail, Math.max(0, cap - c.owned()));
        c.grant += give;
        avail -= give;
      }
    }
    if (avail < before) scheduleFlush(true);
  }

  /** Every tick: size the prefetch; with several streams, move credit from idle ones to busy ones. */
  function tick(): void {
    finishedPerTick = Math.round((finishedPerTick + finishedThisTick) / 2);
    finishedThisTick = 0;
    prefetch = Math.min(maxPrefetch, finishedPerTick);
    // Prefetch shrank below what the brokers hold: take back unused credit.
    let over = -free();
    for (const c of channels) {
      if (over <= 0) break;
      const take = Math.min(over, c.unused - c.revoke);
      if (take > 0) {
        c.revoke += take;
        over -= take;
      }
    }
    if (channels.length > 1) rebalance();
    else distribute();
    if (channels.some((c) => c.revoke > 0)) scheduleFlush(true);
  }

  /** Several streams: one whose broker had nothing since the last tick keeps one credit, the rest moves to busy ones. */
  function rebalance(): void {
    const open = live();
    // Saturated: all its credit is in use and it got work since it last had some spare (a stream without
    // credit gets nothing, so one tick of quiet does not mean its broker ran dry).
    for (const c of channels)
      c.saturated = c.unused + c.grant === 0 && c.running > 0 && (c.activity > 0 || c.saturated);
    if (open.some((c) => c.saturated)) {
      for (const c of open) if (c.activity === 0 && c.unused > 1) c.revoke = c.unused - 1;
      scheduleFlush(true);
    }
    for (const c of channels) c.activity = 0;
    distribute();
  }

  const onDone: RunDone = (a, status, delayOnRetry, tag) => {
    const c = tag as Channel;
    c.running--;
    finishedThisTick++;
    if (status === null) {
      // Nothing to report (an at-most-once repeat, a run aborted by shutdown): its credit is granted again.
      distribute();
    } else {
      c.outbox.push({
        id: a.id,
        status,
        maxAttempts: status === STATUS_RETRY ? a.maxAttempts : undefined,
        delayOnRetry:
          status === STATUS_RETRY && delayOnRetry !== undefined ? BigInt(Math.ceil(delayOnRetry)) : undefined,
      });
      outboxed++;
      scheduleFlush();
    }
    if (stopping) maybeFinish();
  };

  function onMessage(c: Channel, m: DecodedBrokerMessage): void {
    if (m.resultsCommitted > 0) {
      c.unacked.splice(0, m.resultsCommitted);
      if (stopping) maybeFinish();
    }
    if (m.revoked > 0) {
      c.unused -= m.revoked;
      distribute();
    }
    const n = m.activations.length;
    if (n === 0) return;
    o.health.progress();
    c.unused -= n;
    c.running += n;
    c.activity += n;
    o.metrics.fetches.inc({ broker: c.address, result: "task" }, n);
    const batch: WireActivation[] = new Array(n);
    for (let i = 0; i < n; i++) batch[i] = decodeWireActivation(m.activations[i]!);
    o.runner.start(batch, c, onDone);
    setOccupancy();
  }

  function connect(c: Channel): void {
    c.retryTimer = null;
    if (stopping && c.held() === 0) return;
    // Results kept from a stream that broke go first, with the opening message (each returns a credit there).
    const resend = c.unacked.concat(c.outbox);
    const credit = stopping ? 0 : Math.max(0, Math.min(free(), Math.ceil(capacity() / channels.length)));
    c.unacked = resend;
    c.outbox = [];
    c.unused = credit + resend.length;
    c.grant = 0;
    c.revoke = stopping ? c.unused : 0;
    let accepted = false;
    let closed!: () => void;
    c.closed = new Promise<void>((r) => (closed = r));
    const stream = openDeliveryStream({
      address: c.address,
      secrets: o.secrets,
      open: { ...c.filter, worker: o.workerName },
      credit,
      results: resend,
      onMessage: (m) => onMessage(c, m),
      onEnd: (err) => {
        closed();
        ended(c, stream, err, accepted);
      },
    });
    c.stream = stream;
    if (c.revoke > 0) scheduleFlush(true);
    stream.opened.then(
      () => {
        accepted = true;
        c.failures = 0;
        setHeld();
        o.balancer.succeeded(c.address);
        o.log.debug("delivery_stream_open", { broker: c.address, application: c.filter.application, credit });
        distribute();
      },
      () => {},
    );
  }

  function ended(c: Channel, stream: DeliveryStream, err: ConnectError | null, accepted: boolean): void {
    if (c.stream !== stream) return;
    c.stream = null;
    // The broker's unused credit went with the stream; what it sent and still runs reports on the next one.
    c.unused = 0;
    c.grant = 0;
    c.revoke = 0;
    if (err?.code === Code.Unimplemented) o.onUnsupported(c.address); // may stop this loop (auto: v1 calls from now on)
    if (stopping && c.running === 0 && c.held() === 0) return maybeFinish();
    if (err !== null && err.code !== Code.Unimplemented) {
      if (err.code === Code.Unavailable) o.balancer.unavailable(c.address);
      if (c.failures === 0 || c.failures % 20 === 0) {
        o.log.warn("delivery_stream_ended", {
          broker: c.address,
          code: Code[err.code],
          error: err.rawMessage,
          accepted,
          held_results: c.held(),
        });
      }
    }
    const delay =
      err?.code === Code.Unimplemented
        ? o.maxBackoffMs
        : Math.min(o.maxBackoffMs, 10 * 2 ** Math.min(c.failures++, 10));
    setHeld();
    c.retryTimer = setTimeout(() => connect(c), stopping ? Math.min(delay, 200) : delay);
    distribute();
  }

  let finishWaiters: Array<() => void> = [];
  /** While stopping: a channel with nothing running and nothing held half-closes; all done: stop() resumes. */
  function maybeFinish(): void {
    for (const c of channels) if (c.running > 0) return;
    scheduleFlush();
    for (const c of channels) if (c.held() === 0) c.stream?.finish();
    if (channels.every((c) => c.held() === 0)) {
      const w = finishWaiters;
      finishWaiters = [];
      for (const f of w) f();
    }
  }

  for (const c of channels) connect(c);
  rebalanceTimer = setInterval(tick, o.rebalanceMs ?? 100);
  rebalanceTimer.unref?.();

  return {
    done,
    async stop(graceMs) {
      if (!stopping) {
        stopping = true;
        if (rebalanceTimer !== null) clearInterval(rebalanceTimer);
        scheduleFlush(); // takes back every unused credit (flushAll while stopping)
      }
      const finished = new Promise<void>((r) => finishWaiters.push(r));
      maybeFinish();
      const graceOver = Bun.sleep(graceMs).then(() => "grace" as const);
      if ((await Promise.race([finished.then(() => "done" as const), graceOver])) === "grace") {
        o.log.warn("shutdown_grace_exceeded", { running: channels.reduce((n, c) => n + c.running, 0) });
        await o.runner.abort(); // runs end "aborted": unreported, the broker's deadline hands them out again
        maybeFinish();
        await Promise.race([finished, Bun.sleep(ACK_WAIT_MS)]);
      }
      for (const c of channels) {
        if (c.retryTimer !== null) clearTimeout(c.retryTimer);
        c.retryTimer = null;
        if (c.held() > 0)
          o.log.error("results_dropped", {
            broker: c.address,
            count: c.held(),
            reason: "not acknowledged by the end of shutdown",
          });
        c.stream?.finish();
      }
      // The broker ends each stream once it committed what it got; a broker that does not is cut off.
      await Promise.all(
        channels.map(async (c) => {
          const s = c.stream;
          if (s === null) return;
          if ((await Promise.race([c.closed.then(() => "closed"), Bun.sleep(ACK_WAIT_MS)])) !== "closed") s.destroy();
        }),
      );
      resolveDone();
    },
  };
}
