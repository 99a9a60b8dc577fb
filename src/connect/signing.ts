// Request signing (docs/spec/wire-contract.md "Request signing"): the `sentry-signature`
// header is lowercase hex HMAC-SHA256(secret, method path + ":" + serialized
// request message). Pure functions, used by the fast gRPC path, the Connect /
// gRPC-Web path, the delivery stream, the worker's push port and the clients,
// so every transport checks the same way.
//
// That scheme alone lets anyone who captured a request send it again (a
// captured GetTask claims tasks). Our extension (docs/spec/signing.md), which
// Sentry's clients neither send nor need: `taskplatform-timestamp` (Unix
// seconds) and `taskplatform-signature` = HMAC(secret, timestamp + ":" + path
// + ":" + message). A request carrying them is accepted only within the
// configured window of the receiver's clock; a receiver told to require them
// refuses requests without. Our clients always send both headers with the
// Sentry one, so they work against either kind of server.
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "sentry-signature";
export const TIMESTAMP_HEADER = "taskplatform-timestamp";
export const TIMESTAMPED_SIGNATURE_HEADER = "taskplatform-signature";

/** Health checks stay reachable without a secret (load balancers, probes). */
export function isSigningExempt(path: string): boolean {
  return path.startsWith("/grpc.health.v1.Health/");
}

/** Lowercase hex HMAC-SHA256 over `path:message`. */
export function signRequest(secret: string, path: string, message: Uint8Array): string {
  const h = createHmac("sha256", secret);
  h.update(path);
  h.update(":");
  h.update(message);
  return h.digest("hex");
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * True when `header` is a valid signature of (path, message) under any of
 * `secrets`. A missing, non-hex or wrong-length header is simply false; the
 * comparison is constant-time over the 32 digest bytes.
 */
export function verifySignature(
  secrets: readonly string[],
  path: string,
  message: Uint8Array,
  header: string | string[] | undefined | null,
): boolean {
  if (typeof header !== "string") return false;
  // No early exit inside: every configured secret is tried, so timing does not say which matched.
  return verifyDigest(secrets, header, (h) => {
    h.update(path);
    h.update(":");
    h.update(message);
  });
}

/**
 * The message bytes a signature covers for a request body in the given
 * content type: the first enveloped message for gRPC, gRPC-Web and Connect
 * streaming (5-byte prefix stripped), the whole body for Connect unary.
 * Returns null when the body is too short to hold the envelope it claims.
 */
export function signedMessageBytes(contentType: string, body: Uint8Array): Uint8Array | null {
  const enveloped = contentType.startsWith("application/grpc") || contentType.startsWith("application/connect+");
  if (!enveloped) return body;
  if (body.byteLength < 5) return null;
  const len = ((body[1]! << 24) | (body[2]! << 16) | (body[3]! << 8) | body[4]!) >>> 0;
  if (5 + len > body.byteLength) return null;
  return body.subarray(5, 5 + len);
}

/** Lowercase hex HMAC-SHA256 over `timestamp:path:message` (our timestamped signature). */
export function signTimestamped(secret: string, timestamp: string, path: string, message: Uint8Array): string {
  const h = createHmac("sha256", secret);
  h.update(timestamp);
  h.update(":");
  h.update(path);
  h.update(":");
  h.update(message);
  return h.digest("hex");
}

/** The signature headers a client sends: Sentry's, and our timestamped pair. */
export function signatureHeaders(
  secret: string,
  path: string,
  message: Uint8Array,
  nowMs = Date.now(),
): Record<string, string> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    [SIGNATURE_HEADER]: signRequest(secret, path, message),
    [TIMESTAMP_HEADER]: timestamp,
    [TIMESTAMPED_SIGNATURE_HEADER]: signTimestamped(secret, timestamp, path, message),
  };
}

/** How a receiver checks signatures. */
export interface SignaturePolicy {
  /** Empty: signing off, every request accepted. */
  secrets: readonly string[];
  /** Largest distance, seconds, between a timestamped request's clock and ours. */
  maxAgeSec: number;
  /** Refuse requests without our timestamped signature (replay protection for every request). */
  requireTimestamp: boolean;
}

const DIGITS = /^\d{1,12}$/;

/**
 * Whether a request's signature headers are valid under `policy`. With our
 * timestamped pair present, it alone decides (in the window, and right);
 * without it, Sentry's header does, unless timestamps are required.
 */
export function verifyRequestSignature(
  policy: SignaturePolicy,
  path: string,
  message: Uint8Array,
  header: (name: string) => string | string[] | undefined | null,
  nowMs = Date.now(),
): boolean {
  if (policy.secrets.length === 0) return true;
  const timestamp = header(TIMESTAMP_HEADER);
  const timestamped = header(TIMESTAMPED_SIGNATURE_HEADER);
  if (typeof timestamp === "string" && typeof timestamped === "string") {
    if (!DIGITS.test(timestamp) || Math.abs(nowMs / 1000 - Number(timestamp)) > policy.maxAgeSec) return false;
    return verifyDigest(policy.secrets, timestamped, (h) => {
      h.update(timestamp);
      h.update(":");
      h.update(path);
      h.update(":");
      h.update(message);
    });
  }
  if (policy.requireTimestamp) return false;
  return verifySignature(policy.secrets, path, message, header(SIGNATURE_HEADER));
}

function verifyDigest(
  secrets: readonly string[],
  header: string,
  feed: (h: ReturnType<typeof createHmac>) => void,
): boolean {
  if (!HEX_SHA256.test(header)) return false;
  const given = Buffer.from(header, "hex");
  let ok = false;
  for (const secret of secrets) {
    const h = createHmac("sha256", secret);
    feed(h);
    if (timingSafeEqual(h.digest(), given)) ok = true;
  }
  return ok;
}
