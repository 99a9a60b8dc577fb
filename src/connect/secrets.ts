// Shared secrets for request signing: a JSON array string (as Sentry's Python
// client reads it), or a single plain string; the first one signs. Read by
// every signing client (the scheduler, the producer), beside signing.ts.

export function parseSecrets(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const text = raw.trim();
  if (text.startsWith("[")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new Error("TASKWORKER_GRPC_SHARED_SECRET: not valid JSON; expected a JSON array of strings");
    }
    if (!Array.isArray(value) || value.some((s) => typeof s !== "string" || s === "")) {
      throw new Error("TASKWORKER_GRPC_SHARED_SECRET: expected a JSON array of non-empty strings");
    }
    return value.length > 0 ? (value as string[]) : undefined;
  }
  return [text];
}
