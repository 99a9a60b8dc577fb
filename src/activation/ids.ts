// Activation ids: 32 lowercase hex characters shaped like a UUID4, the format
// Sentry's producers use. Random for new work; derived from a seed where a
// repeat must get the same id, so the store drops the second copy as a
// duplicate (a retry published twice, a redelivered raw Kafka message, a
// schedule slot produced again).
import { createHash } from "node:crypto";

/** A random UUID4 as 32 lowercase hex chars (the producers' id format). */
export function newActivationId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

/** The first 16 bytes of SHA-256(seed) with the UUID4 version and RFC 4122 variant bits set, as hex. */
export function derivedActivationId(seed: string): string {
  const h = createHash("sha256").update(seed).digest();
  h[6] = (h[6]! & 0x0f) | 0x40; // version 4
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  return h.subarray(0, 16).toString("hex");
}
