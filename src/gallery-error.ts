/**
 * How a gallery call fails: GalleryError, the per-request deadline that turns a silent Azure Resource
 * Manager into a transient error, and the reading of ARM's answers into errors a person can act on.
 */
import type { ComputeManagementClient } from '@azure/arm-compute';
import { signInErrorOf } from './credentials.js';
import { errorCodeOf, errorMessage, httpStatusOf, isTransientError } from './failures.js';

/** A failed gallery call. `transient` (network, 408, 429, 5xx) means "retry later"; otherwise fix the cause first. */
export class GalleryError extends Error {
  readonly code?: string;
  readonly statusCode?: number;
  readonly transient: boolean;
  constructor(message: string, options: { code?: string; statusCode?: number; transient?: boolean } = {}) {
    super(message);
    this.name = 'GalleryError';
    if (options.code !== undefined) this.code = options.code;
    if (options.statusCode !== undefined) this.statusCode = options.statusCode;
    this.transient = options.transient ?? false;
  }
}

type PipelinePolicy = Parameters<ComputeManagementClient['pipeline']['addPolicy']>[0];

/** One ARM request that got no complete answer in time. */
class RequestTimeoutError extends Error {
  readonly code = 'RequestTimeout';
  constructor(method: string, url: string, timeoutMs: number) {
    super(`Azure Resource Manager gave no answer to ${method} ${urlPath(url)} within ${duration(timeoutMs)}`);
    this.name = 'RequestTimeoutError';
  }
}

/**
 * Bounds one request (headers and body) by its own abort signal; core-rest-pipeline's `request.timeout` stops
 * at the headers and surfaces as an AbortError that says nothing of a timeout.
 */
export function requestTimeoutPolicy(timeoutMs: number): PipelinePolicy {
  return {
    name: 'basmRequestTimeout',
    async sendRequest(request, next) {
      const outer = request.abortSignal;
      const controller = new AbortController();
      const forward = () => controller.abort();
      if (outer?.aborted === true) controller.abort();
      else outer?.addEventListener('abort', forward);
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new RequestTimeoutError(request.method, request.url, timeoutMs));
          controller.abort();
        }, timeoutMs);
      });
      request.abortSignal = controller.signal;
      try {
        const sent = next(request);
        sent.catch(() => undefined);
        return await Promise.race([sent, deadline]);
      } finally {
        clearTimeout(timer);
        outer?.removeEventListener('abort', forward);
        request.abortSignal = outer;
      }
    },
  };
}

function urlPath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/** A duration as people write it: `30 min`, `60 s` or `1500 ms`. */
export function duration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

function requestTimeoutOf(error: unknown): RequestTimeoutError | undefined {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof RequestTimeoutError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Wraps any failure as a GalleryError that says what was being done, Azure's answer and whether to retry. */
export function galleryError(error: unknown, what: string): GalleryError {
  if (error instanceof GalleryError) return error;
  // Nobody signed in: that one line is the whole story, whatever the call was.
  const signIn = signInErrorOf(error);
  if (signIn !== undefined) {
    const notSignedIn = new GalleryError(signIn.message, { code: 'NotSignedIn' });
    Object.defineProperty(notSignedIn, 'cause', { value: signIn });
    return notSignedIn;
  }
  const timeout = requestTimeoutOf(error);
  if (timeout !== undefined) {
    return new GalleryError(`${what} failed: ${timeout.message}. This looks temporary; it is retried.`, {
      code: timeout.code,
      transient: true,
    });
  }
  const statusCode = httpStatusOf(error);
  const code = errorCodeOf(error);
  const message = errorMessage(error);
  const transient = isTransientError(error);
  const answer = [code, statusCode === undefined ? undefined : `HTTP ${statusCode}`]
    .filter(Boolean)
    .join(', ');
  const advice = transient
    ? 'This looks temporary; it is retried.'
    : statusCode === 401 || statusCode === 403
      ? 'Check the role assignments of the managed identity on the gallery and on the storage account.'
      : 'Fix the cause above and run the mirror again.';
  const options: { code?: string; statusCode?: number; transient: boolean } = { transient };
  if (code !== undefined) options.code = code;
  if (statusCode !== undefined) options.statusCode = statusCode;
  return new GalleryError(
    `${what} failed: ${message}${answer === '' ? '' : ` (${answer})`}. ${advice}`,
    options,
  );
}
