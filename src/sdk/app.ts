// Applications, namespaces and task registration: the typed surface user code
// writes against. Registered apps live in a process-wide registry (on
// globalThis, so a second SDK copy loaded from disk shares it) where the worker
// looks tasks up by application, namespace and task name.
import {
  type ActivationTemplate,
  type BuiltActivation,
  buildActivation,
  DEFAULT_PROCESSING_DEADLINE_S,
  type DispatchOptions,
} from "../activation/build.ts";
import { currentTask } from "./context.ts";
import { type ErrorClass, TaskDefinitionError } from "./errors.ts";
import { PROPAGATE_TRACES_HEADER, traceHeaders } from "../activation/headers.ts";
import type { Compression } from "../activation/parameters.ts";
import type { ActivationProducer, TopicRouter } from "./producer.ts";
import { type ContextHook, dispatchHeaders } from "./hooks.ts";
import { NO_RETRY, type Retry } from "./retry.ts";

export const INTERNAL_NAMESPACE = "internal";
export const CANARY_TASK = "canary_task";

export interface NamespaceDefaults {
  retry?: Retry;
  /** Seconds after dispatch after which activations must not start. Default: never expire. */
  expires?: number;
  /** Seconds a worker gives one run before stopping it. Default 10. */
  processingDeadlineS?: number;
}

export interface TaskOptions<A extends unknown[], R> extends NamespaceDefaults {
  /** Stable name on the wire (taskname); never reuse it for a different task. */
  name: string;
  /** Receives the positional args; non-empty kwargs (and headers when `wantsHeaders`) arrive as one trailing object. */
  handler: (...args: A) => R | Promise<R>;
  /** Never run twice, even after a crash; excludes retries. Default false. */
  atMostOnce?: boolean;
  /** "zstd" forces compression; "auto" (default) compresses above 3,000,000 bytes; "none" never. */
  compression?: Compression;
  /** Pass the activation headers to the handler as kwargs.headers. Default false. */
  wantsHeaders?: boolean;
  /** Errors that are part of normal operation: logged without a stack, still retried per policy. */
  expectedErrors?: ErrorClass[];
}

export interface Task<A extends unknown[] = unknown[], R = unknown> {
  readonly app: App;
  readonly namespace: string;
  readonly name: string;
  readonly retry: Retry;
  readonly expiresSec: number | undefined;
  readonly processingDeadlineS: number;
  readonly atMostOnce: boolean;
  readonly compression: Compression;
  readonly wantsHeaders: boolean;
  readonly expectedErrors: readonly ErrorClass[];
  readonly handler: (...args: A) => R | Promise<R>;
  /** What shapes this task's activations (scheduler and tests build from it). */
  readonly template: ActivationTemplate;
  /** Dispatch with positional args; resolves to the activation id once the activation is accepted. */
  delay(...args: A): Promise<string>;
  /** Dispatch with kwargs, countdown (s), expires (s), headers and an idempotency key. */
  applyAsync(options?: DispatchOptions & { args?: A }): Promise<string>;
  /** The activation a dispatch would send, without sending it (scheduler, tests). */
  buildActivation(options?: DispatchOptions & { args?: A }): BuiltActivation;
}

export interface Namespace {
  readonly app: App;
  readonly name: string;
  readonly defaults: Required<Pick<NamespaceDefaults, "retry" | "processingDeadlineS">> & {
    expires: number | undefined;
  };
  register<A extends unknown[], R>(options: TaskOptions<A, R>): Task<A, R>;
  task(name: string): Task | undefined;
  tasks(): Task[];
}

/** Runs a built activation in-process (eager mode); set by the SDK index to avoid an import cycle. */
export type EagerRunner = (task: Task, built: BuiltActivation) => Promise<void>;

export interface AppOptions {
  /** Application name on every activation; default "default". */
  name?: string;
  /** Run dispatched tasks in-process (after encoding and decoding them) instead of producing. Default false. */
  eager?: boolean;
  producer?: ActivationProducer;
  router?: TopicRouter;
  /** Carry context from dispatch into the run through headers (see hooks.ts). Default none. */
  contextHooks?: ContextHook[];
}

export interface App {
  readonly name: string;
  eager: boolean;
  readonly contextHooks: readonly ContextHook[];
  namespace(name: string, defaults?: NamespaceDefaults): Namespace;
  namespaces(): Namespace[];
  lookup(namespace: string, taskname: string): Task | undefined;
  /** Where dispatches go; defaults to a producer built from the environment on first use. */
  setProducer(producer: ActivationProducer | undefined): void;
  setRouter(router: TopicRouter | undefined): void;
  dispatch(task: Task, built: BuiltActivation): Promise<string>;
  close(): Promise<void>;
}

interface Runtime {
  apps: App[];
  eagerRunner?: EagerRunner;
  defaultProducer?: () => Promise<{ producer: ActivationProducer; router: TopicRouter }>;
}
const RUNTIME_KEY = Symbol.for("taskplatform.runtime");
const g = globalThis as unknown as Record<symbol, Runtime | undefined>;
export const runtime: Runtime = (g[RUNTIME_KEY] ??= { apps: [] });

export function registeredApps(): App[] {
  return runtime.apps;
}

const NAME = /^[A-Za-z0-9_.:-]+$/;
function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) throw new TaskDefinitionError(`${kind} name ${JSON.stringify(name)} must match ${NAME}`);
}

export function createApp(options: AppOptions = {}): App {
  const name = options.name ?? "default";
  checkName("application", name);
  if (runtime.apps.some((a) => a.name === name)) {
    throw new TaskDefinitionError(`application ${JSON.stringify(name)} is already defined in this process`);
  }
  const spaces = new Map<string, Namespace>();
  let producer = options.producer;
  let router = options.router;
  let fromEnv: Promise<{ producer: ActivationProducer; router: TopicRouter }> | undefined;

  const makeNamespace = (nsName: string, defaults: NamespaceDefaults): Namespace => {
    const tasks = new Map<string, Task>();
    const ns: Namespace = {
      app,
      name: nsName,
      defaults: {
        retry: defaults.retry ?? NO_RETRY,
        expires: defaults.expires,
        processingDeadlineS: defaults.processingDeadlineS ?? DEFAULT_PROCESSING_DEADLINE_S,
      },
      register<A extends unknown[], R>(o: TaskOptions<A, R>): Task<A, R> {
        checkName("task", o.name);
        if (tasks.has(o.name)) throw new TaskDefinitionError(`task ${nsName}:${o.name} is registered twice`);
        const policy = o.retry ?? ns.defaults.retry;
        const atMostOnce = o.atMostOnce ?? false;
        if (atMostOnce && o.retry && o.retry.times > 1) {
          throw new TaskDefinitionError(`task ${nsName}:${o.name}: atMostOnce cannot be combined with retries`);
        }
        const deadline = o.processingDeadlineS ?? ns.defaults.processingDeadlineS;
        if (!(deadline > 0)) throw new TaskDefinitionError(`task ${nsName}:${o.name}: processingDeadlineS must be > 0`);
        const retry = atMostOnce ? NO_RETRY : policy;
        const template: ActivationTemplate = {
          application: name,
          namespace: nsName,
          taskname: o.name,
          retry,
          expiresSec: o.expires ?? ns.defaults.expires,
          processingDeadlineS: deadline,
          atMostOnce,
          compression: o.compression ?? "auto",
        };
        const build = (d: DispatchOptions = {}): BuiltActivation => {
          const ctx = currentTask();
          // Scheduled activations turn propagation off; follow-ups start their own trace then.
          const carry = ctx && ctx.headers[PROPAGATE_TRACES_HEADER] !== "False";
          const headers = dispatchHeaders(app.contextHooks, d.headers);
          return buildActivation(
            template,
            headers === d.headers ? d : { ...d, headers },
            carry ? traceHeaders(ctx.headers) : {},
          );
        };
        const task: Task<A, R> = {
          app,
          namespace: nsName,
          name: o.name,
          retry,
          expiresSec: template.expiresSec,
          processingDeadlineS: deadline,
          atMostOnce,
          compression: template.compression,
          wantsHeaders: o.wantsHeaders ?? false,
          expectedErrors: [...(o.expectedErrors ?? [])],
          handler: o.handler,
          template,
          delay: async (...args: A) => app.dispatch(task as Task, build({ args })),
          applyAsync: async (d = {}) => app.dispatch(task as Task, build(d)),
          buildActivation: (d = {}) => build(d),
        };
        tasks.set(o.name, task as Task);
        return task;
      },
      task: (t) => tasks.get(t),
      tasks: () => [...tasks.values()],
    };
    return ns;
  };

  const app: App = {
    name,
    eager: options.eager ?? false,
    contextHooks: Object.freeze([...(options.contextHooks ?? [])]),
    namespace(nsName, defaults = {}) {
      checkName("namespace", nsName);
      if (nsName === INTERNAL_NAMESPACE)
        throw new TaskDefinitionError(`namespace "internal" is reserved for the platform`);
      if (spaces.has(nsName))
        throw new TaskDefinitionError(`namespace ${JSON.stringify(nsName)} is defined twice in application ${name}`);
      const ns = makeNamespace(nsName, defaults);
      spaces.set(nsName, ns);
      return ns;
    },
    namespaces: () => [...spaces.values()],
    lookup: (nsName, taskname) => spaces.get(nsName)?.task(taskname),
    setProducer(p) {
      producer = p;
    },
    setRouter(r) {
      router = r;
    },
    async dispatch(task, built) {
      if (app.eager) {
        if (!runtime.eagerRunner) throw new Error("eager mode needs the SDK index to be imported");
        await runtime.eagerRunner(task, built);
        return built.activation.id;
      }
      let p = producer;
      let r = router;
      if (!p || !r) {
        if (!runtime.defaultProducer)
          throw new Error("no producer configured: call app.setProducer() or import the SDK index");
        fromEnv ??= runtime.defaultProducer();
        const env = await fromEnv;
        p ??= env.producer;
        r ??= env.router;
      }
      await p.send(r.topicFor(task.namespace), built.activation, built.bytes);
      return built.activation.id;
    },
    async close() {
      await producer?.close();
      if (fromEnv) await (await fromEnv).producer.close();
      const i = runtime.apps.indexOf(app);
      if (i >= 0) runtime.apps.splice(i, 1);
    },
  };
  // The reserved namespace with the canary every worker can run.
  const internal = makeNamespace(INTERNAL_NAMESPACE, {});
  internal.register({ name: CANARY_TASK, handler: () => undefined });
  spaces.set(INTERNAL_NAMESPACE, internal);
  runtime.apps.push(app);
  return app;
}

/** Finds a task across registered apps; an activation without application matches any app holding the namespace. */
export function findTask(application: string | undefined, namespace: string, taskname: string): Task | undefined {
  for (const a of runtime.apps) {
    if (application && a.name !== application) continue;
    const t = a.lookup(namespace, taskname);
    if (t) return t;
  }
  return undefined;
}

/** The activation template of a registered task, for producers outside the task's own code (the scheduler). */
export function findTaskTemplate(namespace: string, taskname: string, application?: string): ActivationTemplate | null {
  return findTask(application, namespace, taskname)?.template ?? null;
}
