// Keeps the current runtime rules: reads the file at start-up, re-reads it
// every `reloadMs`, and keeps the previous rules (logging why) when the new
// text is malformed or the file is unreadable. The decisions themselves are
// pure (rules.ts); this file is only the timer, the file and the logging.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { Logger } from "../log.ts";
import { runtimeConfigReloadTotal, runtimeKillTotal } from "../metrics.ts";
import { activationParameters } from "../activation/parameters.ts";
import {
  demotedTopic,
  emptyRules,
  killDecision,
  parseRuntimeConfig,
  type KillDecision,
  type RuntimeRules,
} from "./rules.ts";

/** What the kill switch needs to know about one activation. */
export interface KillCandidate {
  taskname: string;
  namespace: string;
  /** The TaskActivation protobuf bytes; decoded only when a rule needs argument values. */
  activation: Uint8Array;
}

export type ReloadOutcome = "loaded" | "unchanged" | "invalid" | "unreadable" | "disabled";

export interface RuntimeConfig {
  /** The rules in force. */
  rules(): RuntimeRules;
  /** Kill switch at ingest: true when the activation must be dropped. Never throws (fails open). */
  shouldDrop(candidate: KillCandidate, stage?: "ingest" | "stored"): boolean;
  /** Kafka mode: topic to forward a demoted namespace's activations to, or null. */
  demotedTopic(namespace: string): string | null;
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
}

/** Decision for one activation's bytes; exported for the stored-row sweep. */
export function decideForBytes(rules: RuntimeRules, candidate: KillCandidate): KillDecision {
  return killDecision(rules, candidate, () => activationParameters(fromBinary(TaskActivationSchema, candidate.activation)));
}

function summary(rules: RuntimeRules) {
  let killRules = 0;
  for (const list of rules.killByTaskname.values()) killRules += list.length;
  return { kill_rules: killRules, killed_tasknames: rules.killByTaskname.size, demoted_namespaces: rules.demoted.size };
}

export function startRuntimeConfig(options: RuntimeConfigOptions): RuntimeConfig {
  const { path, log } = options;
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
      if (text !== lastBadText) log.warn("runtime_config_invalid", { path, reason: (err as Error).message, kept: "previous" });
      lastBadText = text;
      return "invalid";
    }
    lastText = text;
    lastBadText = null;
    log.info("runtime_config_loaded", { path, ...summary(current) });
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
      : setInterval(() => {
          void reload();
        }, Math.max(10, options.reloadMs));
  timer?.unref?.();
  // Apply to stored rows once at start-up too, without waiting a whole period.
  if (path !== undefined && options.onReload) queueMicrotask(() => void reload());

  return {
    rules: () => current,
    shouldDrop(candidate, stage = "ingest") {
      const decision = decideForBytes(current, candidate);
      if (decision === "undecodable") {
        runtimeKillTotal.inc({ stage, decision: "undecodable_kept" });
        return false;
      }
      if (decision === "kill") runtimeKillTotal.inc({ stage, decision: "killed" });
      return decision === "kill";
    },
    demotedTopic: (namespace) => demotedTopic(current, namespace),
    reload,
    stop() {
      stopped = true;
      if (timer) clearInterval(timer);
    },
  };
}
