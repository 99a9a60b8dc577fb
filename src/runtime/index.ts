// Runtime configuration (hot reloaded kill switch and namespace demotion):
// the entry points other components use. broker.ts starts it before ingest
// and hands `shouldDrop` to ingest, `demotedTopic` to the Kafka consumer.
export { startRuntimeConfig, decideForBytes } from "./reload.ts";
export type { RuntimeConfig, RuntimeConfigOptions, KillCandidate, ReloadOutcome } from "./reload.ts";
export { sweepStoredRows } from "./sweep.ts";
export type { KillSweepStore, SweepReport } from "./sweep.ts";
export { parseRuntimeConfig, killDecision, demotedTopic, InvalidRuntimeConfig, emptyRules } from "./rules.ts";
export type { RuntimeRules, KillRule, KillDecision } from "./rules.ts";

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
}): RuntimeConfig {
  const log = options.log.child({ component: "runtime_config" });
  let handle: RuntimeConfig | null = null;
  handle = startRuntimeConfig({
    path: options.path,
    reloadMs: options.reloadMs,
    log,
    onReload: async () => {
      if (handle) await sweepStoredRows(options.store, handle, log);
    },
  });
  return handle;
}
