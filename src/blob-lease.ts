/**
 * The upload's lease on its page blob and the races it fences: a second writer can neither replace the
 * blob meanwhile nor leave its pages in one it lost.
 */
import type { PageBlobClient } from '@azure/storage-blob';
import { DEFAULT_REQUEST_TIMEOUT_MS, PageBlobError } from './storage-calls.js';
import type { StorageCalls } from './storage-calls.js';

/** A conditional delete or create that lost a race with another upload: retry later, which resumes it. */
export async function replaceGuard<T>(
  where: string,
  what: 'changed' | 'created',
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const status = (error as { statusCode?: unknown }).statusCode;
    if (storageCodeOf(error) === 'LeaseIdMissing') {
      throw new PageBlobError(
        `Another upload is writing ${where} (it holds the blob's lease, at most ${UPLOAD_LEASE_SECONDS} s after it stops); retried later.`,
        { transient: true, cause: error },
      );
    }
    if (status === 409 || status === 412) {
      throw new PageBlobError(
        `Another upload ${what} ${where} meanwhile; retry resumes it (or replaces it when it holds other content).`,
        { transient: true, cause: error },
      );
    }
    throw error;
  }
}

/**
 * How long an upload's lease on its blob lasts without renewal (seconds, the longest finite lease): a writer
 * that dies blocks the blob for at most this long.
 */
export const UPLOAD_LEASE_SECONDS = 60;
const UPLOAD_LEASE_RENEWAL_MS = 15_000;

/** An upload's lease on its page blob, renewed in the background until released. */
export interface UploadLease {
  id: string;
  /** Fires when a renewal finds the lease gone: another writer has the blob now. */
  lost: AbortSignal;
  release(): Promise<void>;
}

// Lease errors that say the blob is someone else's now (Storage error codes, 409 and 412).
const LEASE_LOST_CODES = new Set([
  'LeaseIdMismatchWithBlobOperation',
  'LeaseIdMismatchWithLeaseOperation',
  'LeaseLost',
  'LeaseNotPresentWithBlobOperation',
  'LeaseNotPresentWithLeaseOperation',
  'LeaseIsBrokenAndCannotBeRenewed',
]);

function storageCodeOf(error: unknown): string | undefined {
  const details = (error as { details?: { errorCode?: unknown } } | undefined)?.details;
  const code = details?.errorCode ?? (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function leaseLostError(where: string, cause: unknown): PageBlobError {
  return new PageBlobError(
    `The upload lost its lease on ${where}: another upload has taken the blob over; a retry resumes or replaces it.`,
    { transient: true, cause },
  );
}

/** Takes the blob's lease, only while it is still the blob this upload created or inspected (`etag`). */
export async function holdUploadLease(
  blob: PageBlobClient,
  etag: string | undefined,
  where: string,
  calls: StorageCalls,
  requestTimeoutMs: number | undefined,
): Promise<UploadLease> {
  const client = blob.getBlobLeaseClient();
  try {
    await calls.run('acquireLease', (abortSignal) =>
      client.acquireLease(UPLOAD_LEASE_SECONDS, {
        ...(etag === undefined ? {} : { conditions: { ifMatch: etag } }),
        abortSignal,
      }),
    );
  } catch (error) {
    const status = (error as { statusCode?: unknown }).statusCode;
    if (status === 409) {
      throw new PageBlobError(
        `Another upload is writing ${where} (it holds the blob's lease, at most ${UPLOAD_LEASE_SECONDS} s after it stops); retried later.`,
        { transient: true, cause: error },
      );
    }
    if (status === 412 || status === 404) {
      throw new PageBlobError(
        `Another upload changed ${where} meanwhile; retry resumes it (or replaces it when it holds other content).`,
        { transient: true, cause: error },
      );
    }
    throw error;
  }
  const lost = new AbortController();
  const timeoutMs = requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const renewal = setInterval(() => {
    client.renewLease({ abortSignal: AbortSignal.timeout(timeoutMs) }).catch((error: unknown) => {
      // A renewal without answer is tried again; the lease outlives a few of them.
      if (LEASE_LOST_CODES.has(storageCodeOf(error) ?? '')) lost.abort(leaseLostError(where, error));
    });
  }, UPLOAD_LEASE_RENEWAL_MS);
  renewal.unref();
  return {
    id: client.leaseId,
    lost: lost.signal,
    async release() {
      clearInterval(renewal);
      // Not under the caller's signal: an aborted upload still frees the blob for the next one at once.
      await client.releaseLease({ abortSignal: AbortSignal.timeout(timeoutMs) }).catch(() => undefined);
    },
  };
}

/** A call under the upload's lease that finds the lease gone is a lost race, retried later. */
export async function leaseGuard<T>(where: string, lease: UploadLease, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (LEASE_LOST_CODES.has(storageCodeOf(error) ?? '')) throw leaseLostError(where, error);
    if (lease.lost.aborted) throw lease.lost.reason as Error;
    throw error;
  }
}
