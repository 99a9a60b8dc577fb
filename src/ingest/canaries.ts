// Start-up canaries (canary_tasks, as the reference broker has them): at
// start-up the broker stores N activations of the internal canary task for
// every application of worker_map, so each worker pool runs a task right
// after a deploy and a pool that runs nothing shows. Workers of our SDK and
// Sentry's Python client both register internal:canary_task (a no-op).
import { buildActivation, type ActivationTemplate } from "../activation/build.ts";

export const CANARY_NAMESPACE = "internal";
export const CANARY_TASKNAME = "canary_task";
/** The reference's deadline for canaries, seconds. */
const CANARY_DEADLINE_S = 10;

/** `count` canary activations (encoded) for each application. */
export function canaryActivations(applications: readonly string[], count: number, nowMs = Date.now()): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const application of applications) {
    const template: ActivationTemplate = {
      application,
      namespace: CANARY_NAMESPACE,
      taskname: CANARY_TASKNAME,
      retry: { times: 1, onAttemptsExceeded: "discard", delaySec: undefined },
      expiresSec: undefined,
      processingDeadlineS: CANARY_DEADLINE_S,
      atMostOnce: false,
      compression: "none",
    };
    for (let i = 0; i < count; i++) out.push(buildActivation(template, {}, {}, nowMs).bytes);
  }
  return out;
}
