// Runtime configuration (hot reloaded kill switch and namespace demotion):
// the entry points other components use. broker.ts starts it before ingest
// and hands `shouldDrop` to ingest, `demotedTopic` to the Kafka consumer, and
// with Kafka starts the demotion of stored rows (demote.ts).
export { startRuntimeConfig, decideForBytes } from "./reload.ts";
export type { RuntimeConfig, RuntimeConfigOptions, KillCandidate, ReloadOutcome } from "./reload.ts";
export { sweepStoredRows } from "./sweep.ts";
export type { KillSweepStore, SweepReport } from "./sweep.ts";
export { startStoredDemotion } from "./demote.ts";
export type { DemotionOptions, DemotionPass, DemotionPublisher, StoredDemotion } from "./demote.ts";
export {
  parseRuntimeConfig,
  killDecision,
  demotedTopic,
  InvalidRuntimeConfig,
  emptyRules,
  DEFAULT_LONG_TOPIC,
} from "./rules.ts";
export type { RuntimeRules, KillRule, KillDecision, ParameterReaders } from "./rules.ts";
export { selectorParameters, sameValue, MsgpackFloat, UnreadableSelectorParameters } from "./selector.ts";

import type { Logger } from "../log.ts";
import { startRuntimeConfig, type RuntimeConfig } from "./reload.ts";
import { sweepStoredRows, type KillSweepStore } from "./sweep.ts";

/**
 * Runtime configuration wired to the store: after every read of the file the
 * kill switch is applied to stored rows. `path` undefined disables it all.
 */
export function startRuntime(options: {
  path: string | undefined;
  reloadMs: number;
  store: KillSweepStore;
  log: Logger;
  /** kafka_long_topic: where namespaces listed without demoted_topic go. */
  longTopic?: string;
  /** Whether Kafka is configured (without it demotion has nothing to forward to). */
  kafka?: boolean;
}): RuntimeConfig {
  const log = options.log.child({ component: "runtime_config" });
  let handle: RuntimeConfig | null = null;
  handle = startRuntimeConfig({
    path: options.path,
    reloadMs: options.reloadMs,
    log,
    longTopic: options.longTopic,
    kafka: options.kafka,
    onReload: async () => {
      if (handle) await sweepStoredRows(options.store, handle, log);
    },
  });
  return handle;
}
