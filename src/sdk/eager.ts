// Eager mode: a dispatch runs the task in-process, but only after the
// activation went through protobuf and msgpack both ways, so serialisation
// errors surface in tests exactly as they would in production. Retries are
// run immediately, in-process, until the policy says stop.
import { fromBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { BuiltActivation } from "../activation/build.ts";
import type { Task } from "./app.ts";
import { runActivation, STATUS_RETRY, type RunResult } from "./execute.ts";

/** A task run eagerly ended in FAILURE; `result` holds the status and error text. */
export class EagerTaskFailed extends Error {
  readonly result: RunResult;
  constructor(result: RunResult) {
    super(`eager task ${result.id} failed: ${result.error ?? result.outcome}`);
    this.name = "EagerTaskFailed";
    this.result = result;
  }
}

export async function runEagerly(task: Task, built: BuiltActivation): Promise<void> {
  const activation = fromBinary(TaskActivationSchema, built.bytes);
  const maxAttempts = activation.retryState?.maxAttempts ?? 1;
  for (let attempts = 0; ; attempts++) {
    const controller = new AbortController();
    const deadlineMs = Number(activation.processingDeadlineDuration) * 1000;
    const timer = setTimeout(() => controller.abort(), deadlineMs);
    let result: RunResult;
    try {
      result = await runActivation(
        {
          id: activation.id,
          application: activation.application ?? task.app.name,
          namespace: activation.namespace,
          taskname: activation.taskname,
          headers: activation.headers,
          parametersBytes: activation.parametersBytes,
          parameters: activation.parameters,
          attempts,
          maxAttempts,
          deadlineAtMs: Date.now() + deadlineMs,
        },
        controller.signal,
      );
    } finally {
      clearTimeout(timer);
    }
    if (result.status === STATUS_RETRY) continue;
    if (result.outcome !== "complete") throw new EagerTaskFailed(result);
    return;
  }
}
