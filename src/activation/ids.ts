// Activation ids: 32 lowercase hex characters shaped like a UUID4, the format
// Sentry's producers use.

/** A random UUID4 as 32 lowercase hex chars (the producers' id format). */
export function newActivationId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}
