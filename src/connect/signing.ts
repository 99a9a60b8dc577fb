// Request signing (docs/spec/wire-contract.md "Request signing"): the `sentry-signature`
// header is lowercase hex HMAC-SHA256(secret, method path + ":" + serialized
// request message). Pure functions, used by the fast gRPC path, the Connect /
// gRPC-Web path and the client, so every transport checks the same way.
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "sentry-signature";

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
  if (typeof header !== "string" || !HEX_SHA256.test(header)) return false;
  const given = Buffer.from(header, "hex");
  let ok = false;
  for (const secret of secrets) {
    const h = createHmac("sha256", secret);
    h.update(path);
    h.update(":");
    h.update(message);
    // No early exit: every configured secret is tried, so timing does not say which matched.
    if (timingSafeEqual(h.digest(), given)) ok = true;
  }
  return ok;
}

/**
 * The message bytes a signature covers for a request body in the given
 * content type: the first enveloped message for gRPC, gRPC-Web and Connect
 * streaming (5-byte prefix stripped), the whole body for Connect unary.
 * Returns null when the body is too short to hold the envelope it claims.
 */
export function signedMessageBytes(contentType: string, body: Uint8Array): Uint8Array | null {
  const enveloped =
    contentType.startsWith("application/grpc") || contentType.startsWith("application/connect+");
  if (!enveloped) return body;
  if (body.byteLength < 5) return null;
  const len = ((body[1]! << 24) | (body[2]! << 16) | (body[3]! << 8) | body[4]!) >>> 0;
  if (5 + len > body.byteLength) return null;
  return body.subarray(5, 5 + len);
}
