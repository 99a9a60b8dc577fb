// Composes a running broker from its parts: inflight store, ingest, upkeep
// (with the local or the Kafka publisher), the RPC server and, when enabled,
// the admin HTTP server; and takes it down in the reverse order. Signals and
// exit codes are the command's business (cli/broker.ts), not this file's.
//
// Shutdown order and why: push delivery first (no new deliveries; in-flight
// pushes end delivered or released while the store is open); the RPC port (stop accepting, answer new calls
// UNAVAILABLE, let in-flight ones finish, so no answered SetTaskStatus is lost);
// then Kafka (finish and commit the in-flight batch); then upkeep (its current
// pass completes); then the store (flush pending group commits, checkpoint, close).
import { hostname } from "node:os";
import { deprioritizeCompilerThreads } from "./compiler-threads.ts";
import type { BrokerConfig } from "./config/broker.ts";
import { workerEndpoint } from "./config/load.ts";
import { canaryActivations } from "./ingest/canaries.ts";
import { createIngest } from "./ingest/ingest.ts";
import type { Logger } from "./log.ts";
import { openStore } from "./store/sqlite.ts";
import { setNamespaceLabelCap } from "./metrics.ts";
import { createLocalPublisher } from "./upkeep/publisher.ts";
import { startUpkeep } from "./upkeep/loop.ts";
import { startKafka } from "./kafka/index.ts";
import { startRpcServer } from "./connect/server.ts";
import { startRuntime, startStoredDemotion } from "./runtime/index.ts";
import { sampleStoreGauges, startAdminServer, startEventLoopMonitor, startStatsd } from "./admin/index.ts";
import { startPusher, type Pusher } from "./push/pusher.ts";
import type { Ingest } from "./ingest/ingest.ts";

export interface Broker {
  /** The RPC port actually bound (TASKBROKER_GRPC_PORT=0 picks one). */
  port: number;
  /** The admin HTTP port, when the admin server runs. */
  adminPort?: number;
  /** Graceful stop; safe to call twice (the second call waits for the first). */
  stop(): Promise<void>;
}

/** True while upkeep has completed a pass within upkeep_unhealthy_interval_ms (docs/spec/broker.md "Health"). */
export function upkeepHealthy(lastCompletedAtMs: number, startedAtMs: number, nowMs: number, limitMs: number): boolean {
  // Before the first pass completes, count from start-up so a fresh broker is healthy.
  return nowMs - Math.max(lastCompletedAtMs, startedAtMs) < limitMs;
}

/** How workers reach this broker when push_callback_address is not set: the bound host, or this machine's name. */
export function defaultCallbackAddress(grpcHost: string, port: number): string {
  const wildcard = grpcHost === "0.0.0.0" || grpcHost === "::" || grpcHost === "";
  const host = wildcard ? hostname() : grpcHost;
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startBroker(config: BrokerConfig, log: Logger): Promise<Broker> {
  const startedAtMs = Date.now();
  deprioritizeCompilerThreads();
  setNamespaceLabelCap(config.metrics_max_namespaces);
  const store = openStore({
    path: config.store.sqlite.path,
    synchronous: config.store.sqlite.synchronous,
    groupCommitWindowMs: config.store.group_commit_window_ms,
    processingDeadlineGraceSec: config.store.processing_deadline_grace_sec,
    maxDelaySec: config.max_delayed_task_allowed_sec,
    walMaxBytes: config.store.wal_max_bytes,
    minFreeBytes: config.store.min_free_bytes,
    idempotencyWindowMs: config.idempotency_window_sec * 1000,
    log: log.child({ component: "store" }),
  });
  // Everything opened so far is closed again if a later part fails to start.
  const cleanups: Array<() => Promise<void> | void> = [() => store.close()];
  // Statsd first, so every later part's counters reach it (their twins, src/metrics.ts).
  let upkeepHealth: () => "healthy" | "unhealthy" | "killswitched" = () => "healthy";
  const statsd = startStatsd({
    address: config.statsd_addr,
    prefix: config.statsd_prefix,
    defaultTags: config.default_metrics_tags,
    intervalMs: config.statsd_interval_ms,
    log: log.child({ component: "statsd" }),
    sample: (s) => sampleStoreGauges(s, store, upkeepHealth()),
  });
  cleanups.push(() => statsd.stop());
  const unwind = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  };
  try {
    // As the reference: compact the file before serving (full_vacuum_on_start); a failure is logged, not fatal.
    if (config.full_vacuum_on_start) {
      try {
        const ms = store.fullVacuum();
        log.info("full_vacuum", { on: "start", elapsed_ms: Math.round(ms) });
      } catch (err) {
        log.error("full_vacuum_failed", { on: "start", error: err });
      }
    }
    // Runtime config (kill switch, demotion) before ingest: ingest asks it about every row.
    const runtime = startRuntime({
      path: config.runtime_config_path,
      reloadMs: config.runtime_config_reload_ms,
      store,
      log,
      kafka: Object.keys(config.kafka_topics).length > 0,
      longTopic: config.kafka_long_topic,
    });
    cleanups.push(() => runtime.stop());
    const killGate = runtime.ingestGate();
    const stored = createIngest({
      store,
      config,
      log: log.child({ component: "ingest" }),
      drop: (row) => killGate.drop(row),
    });

    // canary_tasks: internal canaries for every worker_map application, stored before anything is served.
    if (config.canary_tasks > 0) {
      const apps = Object.keys(config.worker_map ?? {});
      const r = stored.produce(canaryActivations(apps, config.canary_tasks), "rpc");
      log.info("canary_tasks_stored", { count: r.accepted, worker_pools: apps.length });
    }

    // Push mode: the broker delivers to workers' PushTask ports; ingest wakes it
    // so a produced row goes out at once rather than at the next idle poll.
    let pusher: Pusher | null = null;
    let callbackAddress: string | undefined; // set once the RPC port is bound
    if (config.delivery_mode === "push") {
      // push_worker_addresses (ours) take every application; otherwise worker_map routes each application to its worker.
      const workers =
        config.push_worker_addresses.length > 0
          ? config.push_worker_addresses.map((address) => ({ address }))
          : Object.entries(config.worker_map ?? {}).map(([application, url]) => ({
              application,
              address: workerEndpoint(url)!,
            }));
      const p = startPusher({
        store,
        workers,
        timeoutMs: config.push.timeout,
        maxMessageBytes: config.grpc_max_message_size,
        secrets: config.grpc_shared_secret,
        concurrency: config.push_concurrency,
        leaseMs: config.store.claim_lease_ms,
        callbackAddress: () => callbackAddress,
        log: log.child({ component: "push" }),
      });
      pusher = p;
      cleanups.push(() => p.stop());
    }
    // produce is synchronous, so the kill decisions of one call are counted
    // exactly when its insert committed (and forgotten when it threw: retried).
    const ingest: Ingest = {
      produce(activations, source, origins) {
        try {
          const result = stored.produce(activations, source, origins);
          killGate.commit();
          if (result.accepted > 0) pusher?.wake();
          return result;
        } finally {
          killGate.discard();
        }
      },
    };

    // KAFKA: the one place Kafka joins the broker. With topics configured the
    // consumers feed ingest and upkeep publishes to the retry / dead-letter
    // topics; Kafka stops after the RPC port has drained (see stop()). The
    // runtime config's demoted namespaces are forwarded to their topics.
    // startKafka only checks the plan: connecting and joining the groups go on
    // in the background, so the RPC port opens at once and stored rows are
    // served while Kafka is unreachable; /ready waits for the groups.
    const kafka =
      Object.keys(config.kafka_topics).length > 0 ? await startKafka({ config, ingest, store, log, runtime }) : null;
    if (kafka) cleanups.push(() => kafka.stop());
    let stopDemotion: () => Promise<void> = async () => {};
    const publisher =
      kafka?.publisher ??
      createLocalPublisher(store, {
        maxDelaySec: config.max_delayed_task_allowed_sec,
        drop: (row) => runtime.shouldDrop(row, "retry"),
      });
    // Demoted namespaces' stored rows (RPC-ingested, or stored before the
    // demotion) are forwarded to their topic; without Kafka there is none.
    if (kafka) {
      const demotion = startStoredDemotion({
        store,
        runtime,
        publisher: kafka.publisher,
        consumed: kafka.consumed,
        addressOf: (cluster) => kafka.demotionAddress(cluster),
        intervalMs: config.upkeep_task_interval_ms,
        log,
      });
      cleanups.push(() => demotion.stop());
      stopDemotion = () => demotion.stop();
    }

    const upkeep = startUpkeep({ store, config, publisher, log: log.child({ component: "upkeep" }), startedAtMs });
    cleanups.push(() => upkeep.stop());
    const loop = startEventLoopMonitor({ intervalMs: config.runtime_metrics_interval, log });
    cleanups.push(() => loop.stop());
    upkeepHealth = () =>
      config.health_check_killswitched
        ? "killswitched"
        : upkeepHealthy(upkeep.lastCompletedAtMs(), startedAtMs, Date.now(), config.upkeep_unhealthy_interval_ms)
          ? "healthy"
          : "unhealthy";

    const rpc = await startRpcServer({
      config,
      store,
      ingest,
      // health_check_killswitched: SERVING whatever upkeep does (the operator's escape hatch, as in the reference).
      isHealthy: () =>
        config.health_check_killswitched ||
        upkeepHealthy(upkeep.lastCompletedAtMs(), startedAtMs, Date.now(), config.upkeep_unhealthy_interval_ms),
      log: log.child({ component: "rpc" }),
    });
    cleanups.push(() => rpc.close(config.shutdown_drain_ms));
    callbackAddress = config.push_callback_address ?? defaultCallbackAddress(config.grpc_addr, rpc.port);

    const admin =
      config.admin_port > 0 || config.admin_enabled
        ? await startAdminServer({
            host: config.admin_host,
            port: config.admin_port,
            token: config.admin_token,
            allowedHosts: config.admin_allowed_hosts,
            sessionTtlMs: config.admin_session_ttl_sec * 1000,
            store,
            dbPath: config.store.sqlite.path, // ADMIN: per-namespace depths counted off the event loop
            log: log.child({ component: "admin" }),
            upkeepLastCompletedAtMs: () => upkeep.lastCompletedAtMs(),
            upkeepUnhealthyAfterMs: config.health_check_killswitched ? Infinity : config.upkeep_unhealthy_interval_ms,
            rateSampleMs: config.admin_rate_sample_ms,
            kafkaReady: kafka ? () => kafka.status().ready : undefined,
            kafkaDetail: kafka ? () => kafka.status().detail : undefined,
          })
        : null;
    if (admin) cleanups.push(() => admin.stop());

    log.info("broker_started", { grpc_port: rpc.port, admin_port: admin?.port ?? 0 });

    let stopping: Promise<void> | null = null;
    return {
      port: rpc.port,
      adminPort: admin?.port,
      stop() {
        stopping ??= (async () => {
          const t0 = Date.now();
          log.info("broker_stopping", { drain_ms: config.shutdown_drain_ms });
          await pusher?.stop();
          await rpc.close(config.shutdown_drain_ms);
          log.info("rpc_drained", { elapsed_ms: Date.now() - t0 });
          // Admin last among the servers: /metrics stays readable while RPCs drain.
          await admin?.stop();
          runtime.stop();
          await stopDemotion();
          await kafka?.stop();
          await upkeep.stop();
          await statsd.stop().catch(() => {});
          await store.close();
          log.info("broker_stopped", { elapsed_ms: Date.now() - t0 });
        })();
        return stopping;
      },
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}
