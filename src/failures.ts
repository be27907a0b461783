/**
 * Transient or permanent: the one question every retry decision asks of an error.
 */

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'REQUEST_SEND_ERROR',
]);

/**
 * Worth retrying later: network trouble, throttling (429), a server error (5xx) or a timeout. Errors
 * that know better carry `transient` themselves; checksum mismatches, corrupt archives, bad settings and
 * 4xx validation errors are permanent.
 */
export function isTransientError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as {
    transient?: unknown;
    statusCode?: unknown;
    status?: unknown;
    code?: unknown;
    name?: unknown;
    cause?: unknown;
  };
  if (typeof e.transient === 'boolean') return e.transient;
  const status =
    typeof e.statusCode === 'number' ? e.statusCode : typeof e.status === 'number' ? e.status : undefined;
  if (status !== undefined) return status === 408 || status === 429 || status >= 500;
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
  if (e.name === 'TimeoutError') return true;
  if (e.cause !== undefined && e.cause !== error) return isTransientError(e.cause);
  return false;
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
