// Namespace demotion of rows already stored (the reference broker's upkeep
// step "forward demoted namespaces"): every interval, Pending rows of the
// demoted namespaces are claimed (no worker takes them meanwhile), each one's
// activation bytes are published to its demotion topic, and a row becomes
// Complete only once its publish was acknowledged; a failed publish hands the
// row back to Pending for the next pass. Rows consumed from Kafka are
// forwarded at ingest instead (src/kafka/pipeline.ts); this catches the rows
// stored before a namespace was demoted and the ones that came in over RPC.
// Demoting to a topic this broker consumes from the same cluster would loop,
// so such namespaces are left alone (as the reference broker does).
import type { Logger } from "../log.ts";
import { runtimeForwardTotal, statsd } from "../metrics.ts";
import type { Forwarding } from "../store/types.ts";
import type { RuntimeConfig } from "./reload.ts";

/** What demotion needs of the Kafka publisher (src/kafka/publisher.ts). */
export interface DemotionPublisher {
  /** Resolves once acknowledged; `cluster` is demoted_topic_cluster (null: the producer's own). */
  publishDemoted(topic: string, message: { value: Uint8Array }, cluster?: string | null): Promise<void>;
}

export interface DemotionOptions {
  store: Forwarding;
  runtime: Pick<RuntimeConfig, "rules" | "demotedTopic" | "demotedCluster">;
  publisher: DemotionPublisher;
  /** Topics this broker consumes, with their cluster's bootstrap address (the loop guard). */
  consumed: Array<{ topic: string; address: string }>;
  /** Bootstrap address demotion publishes to, given demoted_topic_cluster. */
  addressOf(cluster: string | null): string;
  /** Pass period, ms (upkeep_task_interval_ms, as upkeep in the reference broker). */
  intervalMs: number;
  log: Logger;
  /** How long a claimed row may wait for its publish before claim expiry frees it. Default 60 s. */
  leaseMs?: number;
  /** Rows claimed per batch; a pass takes batches while they come back full, up to maxBatches. */
  batchSize?: number;
  maxBatches?: number;
}

export interface DemotionPass {
  forwarded: number;
  failed: number;
  /** Namespaces skipped because their topic is consumed here (forwarding would loop). */
  looping: string[];
}

export interface StoredDemotion {
  /** One pass now (the timer calls this); passes never overlap. */
  runOnce(): Promise<DemotionPass>;
  /** Stops the timer and waits for a running pass. */
  stop(): Promise<void>;
}

export function startStoredDemotion(o: DemotionOptions): StoredDemotion {
  const leaseMs = o.leaseMs ?? 60_000;
  const batchSize = o.batchSize ?? 500;
  const maxBatches = o.maxBatches ?? 20;
  const log = o.log.child({ component: "demotion" });
  const consumed = new Set(o.consumed.map((c) => `${c.address}\u0000${c.topic}`));
  let warnedLoop = "";

  async function pass(): Promise<DemotionPass> {
    const report: DemotionPass = { forwarded: 0, failed: 0, looping: [] };
    const rules = o.runtime.rules();
    if (rules.demoted.size === 0) return report;
    const cluster = o.runtime.demotedCluster();
    const address = o.addressOf(cluster);
    const topicOf = new Map<string, string>();
    for (const ns of rules.demoted.keys()) {
      const topic = o.runtime.demotedTopic(ns)!;
      if (consumed.has(`${address}\u0000${topic}`)) report.looping.push(ns);
      else topicOf.set(ns, topic);
    }
    const loopKey = report.looping.join(",");
    if (loopKey && loopKey !== warnedLoop) {
      log.warn("demotion_skipped", {
        namespaces: loopKey,
        reason: "their topic is consumed by this broker from the same cluster",
      });
    }
    warnedLoop = loopKey;
    if (topicOf.size === 0) return report;

    const began = performance.now();
    for (let batch = 0; batch < maxBatches; batch++) {
      const rows = o.store.claimForForward([...topicOf.keys()], batchSize, leaseMs);
      if (rows.length === 0) break;
      const results = await Promise.allSettled(
        rows.map((row) => o.publisher.publishDemoted(topicOf.get(row.namespace)!, { value: row.activation }, cluster)),
      );
      const ok: string[] = [];
      const failed: string[] = [];
      let error: unknown;
      results.forEach((r, i) => {
        const row = rows[i]!;
        const topic = topicOf.get(row.namespace)!;
        const tags: Array<[string, string]> = [
          ["namespace", row.namespace],
          ["taskname", row.taskname],
        ];
        statsd.count("upkeep.forward_task_demoted_namespace", 1, tags);
        if (r.status !== "fulfilled") statsd.count("upkeep.forward_task_demoted_namespace.publish_failure", 1, tags);
        if (r.status === "fulfilled") {
          ok.push(row.id);
          runtimeForwardTotal.inc({ namespace: row.namespace, topic, result: "ok" });
        } else {
          failed.push(row.id);
          error ??= r.reason;
          runtimeForwardTotal.inc({ namespace: row.namespace, topic, result: "error" });
        }
      });
      report.forwarded += o.store.completeForwarded(ok);
      if (failed.length > 0) {
        o.store.releaseForwarded(failed);
        report.failed += failed.length;
        log.warn("demotion_forward_failed", { rows: failed.length, error, retry: "next pass" });
        break; // the cluster is failing: wait for the next pass
      }
      if (rows.length < batchSize) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    // The reference broker's per-pass figures, sent whenever demotion is active.
    statsd.count("upkeep.forwarded_tasks", report.forwarded);
    statsd.histogram("upkeep.forward_task_demoted_namespaces", (performance.now() - began) / 1000);
    if (report.forwarded > 0) log.info("demotion_forwarded", { rows: report.forwarded });
    return report;
  }

  let running: Promise<unknown> = Promise.resolve();
  const runOnce = (): Promise<DemotionPass> => {
    const next = running.then(pass, pass);
    running = next.catch(() => undefined);
    return next;
  };
  let busy = false;
  const timer = setInterval(
    () => {
      if (busy) return; // a slow publish must not pile passes up behind it
      busy = true;
      runOnce()
        .catch((err: unknown) => log.error("demotion_failed", { error: err }))
        .finally(() => {
          busy = false;
        });
    },
    Math.max(10, o.intervalMs),
  );
  timer.unref?.();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
