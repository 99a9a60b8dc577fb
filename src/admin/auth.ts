// Admin token check for the admin HTTP server: when a token is configured,
// requests carry it as `Authorization: Bearer <token>` (scripts, Prometheus)
// or as a cookie set by the login form (browsers). The cookie holds a digest
// of the token, never the token itself; comparisons are constant-time.
import { createHash, timingSafeEqual } from "node:crypto";

export const SESSION_COOKIE = "taskplatform_admin";

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** The cookie value granted after a successful login. */
export function sessionValue(token: string): string {
  return createHash("sha256").update(`taskplatform-admin-session:${token}`).digest("hex");
}

/** Whether a request's Authorization header or cookie proves knowledge of `token`. */
export function isAuthorized(token: string, authorization: string | undefined, cookieValue: string | undefined): boolean {
  if (authorization !== undefined) {
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (m && sameSecret(m[1]!, token)) return true;
  }
  if (cookieValue !== undefined && sameSecret(cookieValue, sessionValue(token))) return true;
  return false;
}

/** Whether the token typed into the login form is right. */
export function isCorrectToken(token: string, typed: string): boolean {
  return sameSecret(typed, token);
}
