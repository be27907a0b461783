/**
 * Storage calls with a deadline each: a call that gets no answer in time (a half-open connection)
 * fails with a transient PageBlobError instead of hanging the upload.
 */

import type { BlobGetPropertiesResponse, PageBlobClient } from '@azure/storage-blob';

/** How long one Storage call may go without an answer before it is given up (milliseconds). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/**
 * A Storage call that did not work out but may on a later run: `transient` is true for a call that
 * got no answer in time and for an upload that raced another one.
 */
export class PageBlobError extends Error {
  override name = 'PageBlobError';
  readonly transient: boolean;
  constructor(message: string, options: { transient: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.transient = options.transient;
  }
}

/** Runs Storage calls with the caller's signal plus a deadline per call. */
export interface StorageCalls {
  /**
   * Runs `call` with a signal that fires on the caller's abort (`signal`, default the upload's) or
   * after the deadline; a call cut by the deadline fails with a transient PageBlobError naming it.
   */
  run<T>(what: string, call: (abortSignal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T>;
}

export function storageCalls(
  where: string,
  callerSignal: AbortSignal | undefined,
  timeoutMs: number,
): StorageCalls {
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(
      `The Storage request timeout must be a positive number of milliseconds, not ${timeoutMs}.`,
    );
  }
  return {
    async run(what, call, signal = callerSignal) {
      const deadline = AbortSignal.timeout(timeoutMs);
      const abortSignal = signal === undefined ? deadline : AbortSignal.any([signal, deadline]);
      try {
        return await call(abortSignal);
      } catch (error) {
        if (deadline.aborted && !signal?.aborted) {
          throw new PageBlobError(
            `Azure Storage gave no answer to ${what} on ${where} within ${timeoutMs / 1000} s (a stalled or half-open connection); it is retried later.`,
            { transient: true, cause: error },
          );
        }
        throw error;
      }
    },
  };
}

/** The blob's properties, or undefined when it does not exist: one call under its deadline. */
export async function blobPropertiesIfExists(
  blob: PageBlobClient,
  calls: StorageCalls,
): Promise<BlobGetPropertiesResponse | undefined> {
  try {
    return await calls.run('getProperties', (abortSignal) => blob.getProperties({ abortSignal }));
  } catch (error) {
    if ((error as { statusCode?: unknown }).statusCode === 404) return undefined;
    throw error;
  }
}
