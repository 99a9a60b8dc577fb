// Namespace -> Kafka topic routing. The default topic is `taskworker`; a JSON
// mapping (TASKWORKER_ROUTES) moves heavy or latency-sensitive namespaces to
// their own topic, broker and worker pool, and runtime overrides win over
// both. Topic names are checked for Kafka legality and, when the deployment
// declares its topics (TASKWORKER_TOPICS), against that list. The producing
// side's: the SDK's producers (producers.ts) and the scheduler route with it.
import type { TopicRouter } from "./producer.ts";

export const DEFAULT_TOPIC = "taskworker";

/** Raised for a bad route or topic; the message is one line naming the problem. */
export class RoutingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RoutingError";
  }
}

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

export function validateTopic(topic: string, declared: ReadonlySet<string> | null, where: string): string {
  if (!TOPIC.test(topic) || topic === "." || topic === "..") {
    throw new RoutingError(
      `${where}: topic ${JSON.stringify(topic)} is not a valid Kafka topic name (1-249 of [A-Za-z0-9._-])`,
    );
  }
  if (declared && !declared.has(topic)) {
    throw new RoutingError(
      `${where}: topic ${JSON.stringify(topic)} is not one of the declared topics (${[...declared].join(", ")})`,
    );
  }
  return topic;
}

/** Parses the TASKWORKER_ROUTES JSON object {namespace: topic}. */
export function parseRoutes(json: string | undefined, source = "TASKWORKER_ROUTES"): Record<string, string> {
  if (json === undefined || json.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new RoutingError(`${source}: not valid JSON; expected an object like {"ingest.errors":"taskworker-ingest"}`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new RoutingError(`${source}: expected a JSON object of namespace -> topic`);
  }
  const out: Record<string, string> = {};
  for (const [ns, topic] of Object.entries(value)) {
    if (typeof topic !== "string")
      throw new RoutingError(`${source}: topic for namespace ${JSON.stringify(ns)} must be a string`);
    out[ns] = topic;
  }
  return out;
}

export interface RouterOptions {
  /** Topic for namespaces without a route. Default "taskworker". */
  defaultTopic?: string;
  /** namespace -> topic from configuration. */
  routes?: Record<string, string>;
  /** The topics the deployment declares; when given, every route must name one of them. */
  declaredTopics?: readonly string[];
}

export interface Router extends TopicRouter {
  /** Routes a namespace at run time, over configuration; validated like configured routes. */
  override(namespace: string, topic: string): void;
  clearOverride(namespace: string): void;
  /** The effective mapping (configuration with overrides applied). */
  routes(): Record<string, string>;
  readonly defaultTopic: string;
}

export function createRouter(options: RouterOptions = {}): Router {
  const declared = options.declaredTopics && options.declaredTopics.length > 0 ? new Set(options.declaredTopics) : null;
  const defaultTopic = validateTopic(options.defaultTopic ?? DEFAULT_TOPIC, declared, "default topic");
  const configured = new Map<string, string>();
  for (const [ns, topic] of Object.entries(options.routes ?? {}))
    configured.set(ns, validateTopic(topic, declared, `route ${ns}`));
  const overrides = new Map<string, string>();
  return {
    defaultTopic,
    topicFor: (ns) => overrides.get(ns) ?? configured.get(ns) ?? defaultTopic,
    override(ns, topic) {
      overrides.set(ns, validateTopic(topic, declared, `override ${ns}`));
    },
    clearOverride(ns) {
      overrides.delete(ns);
    },
    routes: () => ({ ...Object.fromEntries(configured), ...Object.fromEntries(overrides) }),
  };
}

/** TASKWORKER_ROUTES (JSON), TASKWORKER_DEFAULT_TOPIC, TASKWORKER_TOPICS (comma-separated declared topics). */
export function routerFromEnv(env: Record<string, string | undefined>): Router {
  const declared = (env.TASKWORKER_TOPICS ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  return createRouter({
    defaultTopic: env.TASKWORKER_DEFAULT_TOPIC || undefined,
    routes: parseRoutes(env.TASKWORKER_ROUTES),
    declaredTopics: declared,
  });
}
