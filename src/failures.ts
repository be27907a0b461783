/**
 * Transient or permanent: the one question every retry decision asks of an error, answered here for HTTP
 * statuses and network failures. A module keeps locally only what its own service means differently (GitHub's
 * rate-limit 403, for example).
 */

const TRANSIENT_NETWORK_CODES = new Set([
  // The peer dropped or refused the connection (restart, load balancer, idle cut): a new one may work.
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'UND_ERR_SOCKET',
  // No answer in time: a slow or congested path, not a wrong request.
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  // Name resolution failed: DNS outages are common and short; a mistyped host fails again, boundedly.
  'EAI_AGAIN',
  'ENOTFOUND',
  // No route to the network or host: an outage on the path, which routing repairs.
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  // Azure core-rest-pipeline's wrapper of any failure to send a request (its cause is one of the above).
  'REQUEST_SEND_ERROR',
]);

/**
 * An HTTP status worth trying again later: 408 (the server gave up waiting), 429 (throttled: it asks to
 * come back later) and 5xx (the server failed, not the request). Every other status is an answer about
 * the request itself, which sending it again does not change.
 */
export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/** A Node.js or undici network error code worth trying again later (see the families above). */
export function isTransientNetworkCode(code: string): boolean {
  return TRANSIENT_NETWORK_CODES.has(code);
}

// The host cannot be reached at all: on a workstation that is a setting or the network to fix, not a blip.
const UNREACHABLE_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
]);

const MAX_CAUSE_DEPTH = 8;

/**
 * A name that does not resolve or a connection that is refused (anywhere in the cause chain). Transient for
 * a server in Azure, which waits; the command line gives up at once, so a typo or no network shows in seconds.
 */
export function isUnreachableError(error: unknown): boolean {
  for (let current = error, depth = 0; depth < MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== 'object' || current === null) return false;
    const code = errorCodeOf(current);
    if (code !== undefined && UNREACHABLE_CODES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The local file system is out of space (ENOSPC) or over its quota (EDQUOT). Permanent for the attempt:
 * the same extraction into the same directory needs the same room, so an immediate retry would download the
 * whole tarball again only to fail at the same byte; an operator frees space or mounts a larger volume, and
 * the next scheduled run tries again.
 */
export function isDiskFull(error: unknown): boolean {
  for (let current = error, depth = 0; depth < MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== 'object' || current === null) return false;
    const { code, cause } = current as { code?: unknown; cause?: unknown };
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
    current = cause;
  }
  return false;
}

/**
 * Worth retrying later: network trouble, a timeout, or a transient HTTP status (isTransientStatus). Errors
 * that know better carry `transient` themselves; checksum mismatches, corrupt archives, bad settings and
 * 4xx validation errors are permanent. A wrapped error (`cause`) is judged by what it wraps.
 */
export function isTransientError(error: unknown): boolean {
  // Bounded, so a chain of causes that loops back cannot hang the decision.
  for (let current = error, depth = 0; depth < MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== 'object' || current === null) return false;
    const e = current as { transient?: unknown; code?: unknown; name?: unknown; cause?: unknown };
    if (typeof e.transient === 'boolean') return e.transient;
    const status = httpStatusOf(current);
    if (status !== undefined) return isTransientStatus(status);
    if (typeof e.code === 'string' && isTransientNetworkCode(e.code)) return true;
    if (e.name === 'TimeoutError') return true;
    current = e.cause;
  }
  return false;
}

/** The HTTP status an error carries (`statusCode` in the Azure SDKs, `status` in Octokit and fetch wrappers). */
export function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { statusCode, status } = error as { statusCode?: unknown; status?: unknown };
  if (typeof statusCode === 'number') return statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The error's own code (`ECONNRESET`, `ResourceNotFound`, ...), when it has one. */
export function errorCodeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
