// taskplatform's task SDK: what user task modules import (as "taskplatform").
// Define an application and namespaces, register tasks with their retry
// policy, deadline, expiry and options, dispatch them with delay()/applyAsync(),
// and read the running task's context. The guide is docs/sdk.md; packed for
// other applications by scripts/pack-sdk.ts (build: tsconfig.sdk.json).
import { runtime } from "./app.ts";
import { runEagerly } from "./eager.ts";

runtime.eagerRunner ??= runEagerly;
runtime.defaultProducer ??= async () => {
  const { producerFromEnv } = await import("./producers.ts");
  return producerFromEnv(process.env);
};

export {
  type App,
  type AppOptions,
  CANARY_TASK,
  createApp,
  findTask,
  findTaskTemplate,
  INTERNAL_NAMESPACE,
  type Namespace,
  type NamespaceDefaults,
  registeredApps,
  type Task,
  type TaskOptions,
} from "./app.ts";
export {
  type ActivationTemplate,
  type BuiltActivation,
  buildActivation,
  DEFAULT_PROCESSING_DEADLINE_S,
  type DispatchOptions,
} from "../activation/build.ts";
export { newActivationId } from "../activation/ids.ts";
export { currentTask, type TaskContext } from "./context.ts";
export type { ContextHook } from "./hooks.ts";
export { EagerTaskFailed } from "./eager.ts";
export { ProcessingDeadlineExceeded, RetryTaskError, TaskDefinitionError, UnknownTaskError } from "./errors.ts";
export { type HeaderValue, PROPAGATE_TRACES_HEADER, stringifyHeaders, TRACE_HEADERS } from "../activation/headers.ts";
export { type Compression, decodeParameters, encodeParameters, type TaskParameters } from "../activation/parameters.ts";
export type { ActivationProducer, TopicRouter } from "./producer.ts";
export { isLastAttempt, NO_RETRY, type Retry, type RetryOptions, retry, shouldRetry } from "./retry.ts";
export { defineSchedules, type ScheduleDefinition, type ScheduleTable } from "./schedules.ts";
