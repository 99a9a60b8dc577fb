// Applies the kill switch to rows already stored: pages through the rows of
// the task names that have a kill rule, in any state (as the reference broker
// does: a killed task is neither run, retried nor dead-lettered), decides per
// row with the same pure logic as ingest, and removes the matching ones. Runs
// at start-up and whenever the rules change, so a rule added to the file
// empties the store of its tasks within one reload period; rows arriving later
// are filtered at ingest (and retries on the way back in).
import type { Logger } from "../log.ts";
import { runtimeKillTotal, statsd } from "../metrics.ts";
import type { RuntimeConfig } from "./reload.ts";
import { killedTasknames } from "./rules.ts";

/** The store methods the sweep needs (implemented by src/store/sqlite.ts). */
export interface KillSweepStore {
  /** Rows with one of these task names, any state, ordered by id, after `afterId`. */
  killableByTaskname(
    tasknames: string[],
    afterId: string | null,
    limit: number,
  ): Array<{ id: string; namespace: string; taskname: string; activation: Uint8Array }>;
  /** Deletes those ids (if still stored); returns how many were deleted. */
  removeKilled(ids: string[]): number;
}

export interface SweepReport {
  examined: number;
  removed: number;
}

/** Pages of `pageSize` rows; yields to the event loop between pages so RPCs keep flowing. */
export async function sweepStoredRows(
  store: KillSweepStore,
  runtime: Pick<RuntimeConfig, "rules" | "decide">,
  log: Logger,
  pageSize = 500,
): Promise<SweepReport> {
  const tasknames = killedTasknames(runtime.rules());
  const report: SweepReport = { examined: 0, removed: 0 };
  if (tasknames.length === 0) return report;
  const began = performance.now();
  let afterId: string | null = null;
  for (;;) {
    const page = store.killableByTaskname(tasknames, afterId, pageSize);
    if (page.length === 0) break;
    report.examined += page.length;
    const doomed: string[] = [];
    let undecodable = 0;
    for (const row of page) {
      const decision = runtime.decide(row);
      if (decision.kill) doomed.push(row.id);
      else if (decision.undecodable) undecodable++;
    }
    // Counted once removed (a row may have finished meanwhile).
    const removed = doomed.length > 0 ? store.removeKilled(doomed) : 0;
    if (removed) runtimeKillTotal.inc({ stage: "stored", decision: "killed" }, removed);
    if (undecodable) runtimeKillTotal.inc({ stage: "stored", decision: "undecodable_kept" }, undecodable);
    report.removed += removed;
    afterId = page[page.length - 1]!.id;
    if (page.length < pageSize) break;
    await new Promise((resolve) => setImmediate(resolve));
  }
  statsd.histogram("upkeep.remove_killswitched", (performance.now() - began) / 1000);
  if (report.removed > 0) log.info("killswitch_swept", { ...report, tasknames });
  return report;
}
