// Admin HTTP (health, readiness, Prometheus metrics, dashboard, JSON API) and
// optional statsd output: the entry points broker.ts uses.
export { startAdminServer, createAdminApp } from "./server.ts";
export type { AdminServer, AdminServerOptions } from "./server.ts";
export type { AdminStore, DepthSnapshot } from "./store-view.ts";
export { startStatsd, formatStatsdLine, formatStatsdNumber, sampleStoreGauges } from "./statsd.ts";
export type { Statsd, StatsdOptions } from "./statsd.ts";
export { describeActivation } from "./activation-view.ts";
export { startEventLoopMonitor } from "./event-loop.ts";
export type { ActivationView } from "./activation-view.ts";
