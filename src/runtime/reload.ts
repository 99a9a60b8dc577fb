// Keeps the current runtime rules: reads the file at start-up, re-reads it
// every `reloadMs`, and keeps the previous rules (logging why) when the new
// text is malformed or the file is unreadable. The decisions themselves are
// pure (rules.ts); this file is only the timer, the file and the logging.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema, type TaskActivation } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { Logger } from "../log.ts";
import { runtimeConfigReloadTotal, runtimeKillTotal, statsd } from "../metrics.ts";
import { activationParameters } from "../activation/parameters.ts";
import {
  DEFAULT_LONG_TOPIC,
  demotedTopic,
  emptyRules,
  killDecision,
  parseRuntimeConfig,
  type KillDecision,
  type RuntimeRules,
} from "./rules.ts";
import { selectorParameters } from "./selector.ts";

/** What the kill switch needs to know about one activation. */
export interface KillCandidate {
  taskname: string;
  namespace: string;
  /** The TaskActivation protobuf bytes; decoded only when a rule needs argument values. */
  activation: Uint8Array;
}

export type ReloadOutcome = "loaded" | "unchanged" | "invalid" | "unreadable" | "disabled";

export interface IngestKillGate {
  drop(row: KillCandidate & { origin?: { topic: string } | null }): boolean;
  commit(): void;
  discard(): void;
}

export interface RuntimeConfig {
  /** The rules in force. */
  rules(): RuntimeRules;
  /** Kill switch: true when the activation must be dropped, counted at once. Never throws (fails open). */
  shouldDrop(candidate: KillCandidate, stage?: "ingest" | "stored" | "retry"): boolean;
  /** The decision alone, counted by nobody (the stored-row sweep counts what it removed). */
  decide(candidate: KillCandidate): KillDecision;
  /**
   * The kill switch for one ingest call: `drop` decides per row; `commit`
   * counts the decisions once the call's insert has committed (Prometheus and
   * the reference broker's filter.drop_task_killswitch statsd counter and
   * timer); `discard` forgets them when the call failed (it is retried).
   */
  ingestGate(): IngestKillGate;
  /**
   * Kafka mode: topic to forward a demoted namespace's activations to, or
   * null. Given the activation's bytes, an activation the kill switch drops
   * or one already expired is not forwarded (null): ingest then drops and
   * counts it, as the reference broker drops before it forwards.
   */
  demotedTopic(namespace: string, activation?: Uint8Array): string | null;
  /** demoted_topic_cluster: the address (or configured cluster name) to forward to; null: the producer's own cluster. */
  demotedCluster(): string | null;
  /** Re-reads the file now (the timer calls this); resolves after `onReload` finished. */
  reload(): Promise<ReloadOutcome>;
  stop(): void;
}

export interface RuntimeConfigOptions {
  /** The YAML file; undefined disables runtime configuration (no rules, no timer). */
  path: string | undefined;
  /** Re-read period, ms (config runtime_config_reload_ms, default 60 000). */
  reloadMs: number;
  log: Logger;
  /** Called after a read that changed the rules, and after the first timer read, e.g. to sweep stored rows. */
  onReload?: (rules: RuntimeRules) => Promise<void>;
  /** Topic of demoted namespaces listed without demoted_topic (config kafka_long_topic). */
  longTopic?: string;
  /** False when no Kafka is configured: demotion then has nothing to forward to, which the load line says. */
  kafka?: boolean;
}

/** Decision for one activation's bytes; the protobuf is decoded at most once, and only when a rule reads arguments. */
export function decideForBytes(
  rules: RuntimeRules,
  candidate: KillCandidate,
  decodedActivation?: TaskActivation,
): KillDecision {
  let decoded = decodedActivation;
  const activation = () => (decoded ??= fromBinary(TaskActivationSchema, candidate.activation));
  return killDecision(rules, candidate, {
    conditions: () => activationParameters(activation()),
    selector: () => selectorParameters(activation()),
  });
}

function summary(rules: RuntimeRules) {
  let killRules = 0;
  for (const list of rules.killByTaskname.values()) killRules += list.length;
  return { kill_rules: killRules, killed_tasknames: rules.killByTaskname.size, demoted_namespaces: rules.demoted.size };
}

/** Past its expires_at (the reference broker drops those before demoting). */
function expired(a: TaskActivation, nowMs: number): boolean {
  if (!a.expires || !a.receivedAt) return false;
  return Number(a.receivedAt.seconds) * 1000 + a.receivedAt.nanos / 1e6 + Number(a.expires) * 1000 < nowMs;
}

export function startRuntimeConfig(options: RuntimeConfigOptions): RuntimeConfig {
  const { path, log } = options;
  const longTopic = options.longTopic ?? DEFAULT_LONG_TOPIC;
  let current: RuntimeRules = emptyRules;
  let lastText: string | null = null;
  // A bad file is logged once, not every period, until its text changes.
  let lastBadText: string | null = null;
  let stopped = false;
  let inFlight: Promise<ReloadOutcome> | null = null;
  /** The start-up read's rules have not been applied to stored rows yet. */
  let sweepPending = path !== undefined;

  const accept = (text: string): ReloadOutcome => {
    if (text === lastText) return "unchanged";
    try {
      current = parseRuntimeConfig(text);
    } catch (err) {
      if (text !== lastBadText)
        log.warn("runtime_config_invalid", { path, reason: (err as Error).message, kept: "previous" });
      lastBadText = text;
      return "invalid";
    }
    lastText = text;
    lastBadText = null;
    log.info("runtime_config_loaded", { path, ...summary(current) });
    for (const note of current.notes) log.warn("runtime_config_note", { path, note });
    if (current.demoted.size > 0 && options.kafka === false) {
      log.warn("runtime_config_note", {
        path,
        note: "demoted_namespaces has no effect without Kafka: demotion forwards activations to a Kafka topic",
      });
    }
    return "loaded";
  };

  if (path !== undefined) {
    // Read synchronously at start-up so the first ingested batch already sees the rules.
    let outcome: ReloadOutcome;
    try {
      outcome = accept(readFileSync(path, "utf8"));
    } catch (err) {
      log.warn("runtime_config_unreadable", { path, reason: (err as Error).message });
      outcome = "unreadable";
    }
    runtimeConfigReloadTotal.inc({ outcome });
  }

  const reloadOnce = async (): Promise<ReloadOutcome> => {
    if (path === undefined) return "disabled";
    let outcome: ReloadOutcome;
    try {
      outcome = accept(await readFile(path, "utf8"));
    } catch (err) {
      log.warn("runtime_config_unreadable", { path, reason: (err as Error).message, kept: "previous" });
      outcome = "unreadable";
    }
    runtimeConfigReloadTotal.inc({ outcome });
    // Stored rows are swept when the rules change (and once at start-up), not on
    // every period: without a task-name index a sweep reads the whole table, and
    // rows arriving later are already filtered at ingest.
    if ((outcome === "loaded" || sweepPending) && options.onReload && !stopped) {
      sweepPending = false;
      try {
        await options.onReload(current);
      } catch (err) {
        log.error("runtime_config_apply_failed", { path, error: err });
      }
    }
    return outcome;
  };

  const reload = (): Promise<ReloadOutcome> => {
    // One reload at a time: a slow sweep must not pile up behind the timer.
    inFlight ??= reloadOnce().finally(() => {
      inFlight = null;
    });
    return inFlight;
  };

  const timer =
    path === undefined
      ? null
      : setInterval(
          () => {
            void reload();
          },
          Math.max(10, options.reloadMs),
        );
  timer?.unref?.();
  // Apply to stored rows once at start-up too, without waiting a whole period.
  if (path !== undefined && options.onReload) queueMicrotask(() => void reload());

  return {
    rules: () => current,
    decide: (candidate) => decideForBytes(current, candidate),
    ingestGate() {
      let killed: Array<{ topic: string | undefined; taskname: string; match: string }> = [];
      let timings: Array<{ topic: string | undefined; seconds: number }> = [];
      let undecodable = 0;
      return {
        drop(row) {
          // No rules, no cost (and no timer samples), as in the reference broker.
          if (current.killByTaskname.size === 0) return false;
          const began = performance.now();
          const decision = decideForBytes(current, row);
          const topic = row.origin?.topic;
          if (statsd.enabled) timings.push({ topic, seconds: (performance.now() - began) / 1000 });
          if (decision.kill) killed.push({ topic, taskname: row.taskname, match: decision.match });
          else if (decision.undecodable) undecodable++;
          return decision.kill;
        },
        commit() {
          if (killed.length) runtimeKillTotal.inc({ stage: "ingest", decision: "killed" }, killed.length);
          if (undecodable) runtimeKillTotal.inc({ stage: "ingest", decision: "undecodable_kept" }, undecodable);
          for (const k of killed) {
            const tags: Array<[string, string]> = [
              ["taskname", k.taskname],
              ["match", k.match],
            ];
            if (k.topic !== undefined) tags.unshift(["topic", k.topic]);
            statsd.count("filter.drop_task_killswitch", 1, tags);
          }
          for (const t of timings)
            statsd.histogram(
              "filter.drop_task_killswitch.duration",
              t.seconds,
              t.topic === undefined ? [] : [["topic", t.topic]],
            );
          this.discard();
        },
        discard() {
          killed = [];
          timings = [];
          undecodable = 0;
        },
      };
    },
    shouldDrop(candidate, stage = "ingest") {
      const decision = decideForBytes(current, candidate);
      if (decision.kill) {
        runtimeKillTotal.inc({ stage, decision: "killed" });
        return true;
      }
      if (decision.undecodable) runtimeKillTotal.inc({ stage, decision: "undecodable_kept" });
      return false;
    },
    demotedTopic(namespace, activation) {
      const topic = demotedTopic(current, namespace, longTopic);
      if (topic === null || activation === undefined) return topic;
      let decoded: TaskActivation;
      try {
        decoded = fromBinary(TaskActivationSchema, activation);
      } catch {
        return topic; // unreadable: forwarded as consumed, like any other message of the namespace
      }
      if (decideForBytes(current, { taskname: decoded.taskname, namespace, activation }, decoded).kill) return null;
      return expired(decoded, Date.now()) ? null : topic;
    },
    demotedCluster: () => current.demotedCluster,
    reload,
    stop() {
      stopped = true;
      if (timer) clearInterval(timer);
    },
  };
}
