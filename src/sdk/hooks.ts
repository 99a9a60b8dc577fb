// Context hooks (Sentry's ContextHook): carry application context (tenant,
// user, locale, a request id...) from the code that dispatches a task into
// the task's run, through activation headers. onDispatch adds headers when an
// activation is built; onExecute wraps the handler, restoring the context
// from those headers (for example with AsyncLocalStorage.run). Hooks belong
// to an application: createApp({ contextHooks: [...] }).
import type { HeaderValue } from "../activation/headers.ts";

export interface ContextHook {
  /** At dispatch: add (or change) headers describing the current context; values are scalars, sent as strings. */
  onDispatch?(headers: Record<string, HeaderValue>): void;
  /**
   * At execution: run `next` inside the context `headers` describe and return its result. Hooks nest in
   * order: the first one listed is outermost.
   */
  onExecute?<T>(headers: Readonly<Record<string, string>>, next: () => Promise<T>): Promise<T>;
}

/** Calls every hook's onDispatch on a copy of `headers`; the copy is what the activation carries. */
export function dispatchHeaders(
  hooks: readonly ContextHook[],
  headers: Record<string, HeaderValue> | undefined,
): Record<string, HeaderValue> | undefined {
  if (hooks.length === 0) return headers;
  const out: Record<string, HeaderValue> = { ...(headers ?? {}) };
  for (const hook of hooks) hook.onDispatch?.(out);
  return out;
}

/** Runs `fn` inside every hook's onExecute, the first hook outermost. */
export function executeWithHooks<T>(
  hooks: readonly ContextHook[],
  headers: Readonly<Record<string, string>>,
  fn: () => Promise<T>,
): Promise<T> {
  let run = fn;
  for (let i = hooks.length - 1; i >= 0; i--) {
    const hook = hooks[i]!;
    if (!hook.onExecute) continue;
    const inner = run;
    run = () => hook.onExecute!(headers, inner);
  }
  return run();
}
