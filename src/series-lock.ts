/**
 * Series lock: at most one run mirrors a series at a time, whichever runner starts it (command lines, Function
 * App instances, both at once). The lock is an infinite lease on the small blob `locks/<series>` in the VHD
 * container, so every runner that can upload shares it. The lease id is the run's own (the same in every
 * activity of a Durable run, whichever instance runs it); the holder stamps who it is and, at every step, a
 * heartbeat into the blob's metadata. A contender reports that holder, or breaks the lease once the heartbeat
 * is older than the staleness bound: a holder that died blocks the series for at most that long.
 */

import type { BlobGetPropertiesResponse, BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { errorMessage } from './failures.js';

/** The blob names of series locks start with this; no VHD blob does (those are `<series>/<version>/root.vhd`). */
export const SERIES_LOCK_PREFIX = 'locks/';

/** What every activity of a run needs to prove that the run still holds its series. */
export interface SeriesLockClaim {
  series: string;
  /** The lease id: a GUID the run derives once (deterministically, under Durable Functions). */
  leaseId: string;
}

const LEASE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The claim a step carries, as a claim on `series` (the step's own series, when it names one): a lease id that
 * is a GUID, so a lease condition is always sent (an empty one would let a write through on an unleased blob).
 */
export function requireClaim(claim: unknown, series: unknown): SeriesLockClaim {
  const { series: claimed, leaseId } = (claim ?? {}) as Partial<Record<keyof SeriesLockClaim, unknown>>;
  if (typeof claimed !== 'string' || typeof leaseId !== 'string' || !LEASE_ID.test(leaseId)) {
    throw new SeriesLockLost('This step carries no valid claim on a series lock; it does nothing.');
  }
  if (series !== undefined && series !== claimed) {
    throw new SeriesLockLost(
      `This step's claim is on series ${claimed}, not on ${JSON.stringify(series)}, the series it would act on; it does nothing.`,
    );
  }
  return { series: claimed, leaseId };
}

/** Who holds a series, as its lock blob says. */
export interface SeriesLockHolder {
  /** The run and the machine it runs on, e.g. `command line (pid 4242 on build-7)`. */
  holder: string;
  /** When it took the series (ISO 8601). */
  since: string;
  /** Its last sign of life (ISO 8601, the service's clock). */
  heartbeatAt: string;
}

export type SeriesLockAcquisition =
  { acquired: true; tookOverFrom?: SeriesLockHolder } | ({ acquired: false } & SeriesLockHolder);

/** The run no longer holds its series: another run took it over after the heartbeat went stale. */
export class SeriesLockLost extends Error {
  override name = 'SeriesLockLost';
}

export interface SeriesLocksOptions {
  /** The VHD container: every runner that uploads can write there. */
  container: ContainerClient;
  /** A holder whose last heartbeat is older than this has died; its lease may be broken (seconds). */
  staleAfterSeconds: number;
}

// Storage error codes that say the lease is not (or no longer) the caller's.
const NOT_OURS = new Set([
  'LeaseIdMismatchWithBlobOperation',
  'LeaseIdMismatchWithLeaseOperation',
  'LeaseLost',
  'LeaseNotPresentWithBlobOperation',
  'LeaseNotPresentWithLeaseOperation',
  'LeaseIdMissing',
]);

// Contenders that keep changing the blob under each other give up after this many looks; the workflow waits.
const ACQUIRE_ATTEMPTS = 4;

function storageCodeOf(error: unknown): string | undefined {
  const details = (error as { details?: { errorCode?: unknown } } | undefined)?.details;
  const code = details?.errorCode ?? (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

// Metadata values must be printable ASCII.
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

export class SeriesLocks {
  readonly #container: ContainerClient;
  readonly #staleAfterMs: number;

  constructor(options: SeriesLocksOptions) {
    if (!(options.staleAfterSeconds > 0)) {
      throw new RangeError(
        `The series lock's staleness bound must be positive, not ${options.staleAfterSeconds} s.`,
      );
    }
    this.#container = options.container;
    this.#staleAfterMs = options.staleAfterSeconds * 1000;
  }

  /** The blob whose lease is the series' lock. */
  blobName(series: string): string {
    return `${SERIES_LOCK_PREFIX}${series}`;
  }

  /**
   * Takes the series for the claim's run, or says who holds it. Taking it again with the same claim (a retried
   * activity) succeeds. A holder whose heartbeat is stale is broken and replaced; `tookOverFrom` names it.
   */
  async acquire(claim: SeriesLockClaim, holder: string): Promise<SeriesLockAcquisition> {
    const blob = this.#blob(claim.series);
    let tookOverFrom: SeriesLockHolder | undefined;
    let last: BlobGetPropertiesResponse | undefined;
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const properties = await this.#propertiesCreating(blob);
      last = properties;
      const wasLeased = properties.leaseState === 'leased';
      try {
        await blob.getBlobLeaseClient(claim.leaseId).acquireLease(-1, {
          conditions: { ifMatch: properties.etag ?? '*' },
        });
      } catch (error) {
        if (statusOf(error) === 412) continue; // changed since the look: look again
        if (statusOf(error) !== 409) throw error;
        const current = holderOf(properties);
        if (!this.#isStale(properties)) return { acquired: false, ...current };
        try {
          // Only the lease whose heartbeat was judged stale: a fresh heartbeat changes the ETag.
          await blob.getBlobLeaseClient().breakLease(0, { conditions: { ifMatch: properties.etag ?? '*' } });
          tookOverFrom = current;
        } catch (breakError) {
          if (statusOf(breakError) !== 412) throw breakError;
        }
        continue;
      }
      const now = new Date().toISOString();
      const since = wasLeased ? (properties.metadata?.['acquired_at'] ?? now) : now;
      try {
        // Confirms the lease: a contender that broke it between the acquisition and here makes this fail.
        await blob.setMetadata(
          { holder: printable(holder), acquired_at: since, heartbeat_at: now },
          { conditions: { leaseId: claim.leaseId } },
        );
      } catch (error) {
        if (NOT_OURS.has(storageCodeOf(error) ?? '')) continue;
        throw error;
      }
      return tookOverFrom === undefined ? { acquired: true } : { acquired: true, tookOverFrom };
    }
    return { acquired: false, ...holderOf(last) };
  }

  /** Proves the run still holds its series and records that it is alive; SeriesLockLost when it does not. */
  async heartbeat(claim: SeriesLockClaim): Promise<void> {
    const blob = this.#blob(claim.series);
    let properties: BlobGetPropertiesResponse;
    try {
      properties = await blob.getProperties();
    } catch (error) {
      if (statusOf(error) === 404) throw this.#lost(claim, undefined);
      throw error;
    }
    try {
      await blob.setMetadata(
        { ...(properties.metadata ?? {}), heartbeat_at: new Date().toISOString() },
        { conditions: { leaseId: claim.leaseId } },
      );
    } catch (error) {
      if (NOT_OURS.has(storageCodeOf(error) ?? '')) throw this.#lost(claim, properties);
      throw error;
    }
  }

  /**
   * Runs `work` for a run that must hold its series: a heartbeat first (SeriesLockLost stops the work before it
   * starts), then one every quarter of the staleness bound while it runs, so a long step never looks dead.
   */
  async holdDuring<T>(
    claim: SeriesLockClaim,
    work: () => Promise<T>,
    warn: (message: string) => void = () => undefined,
  ): Promise<T> {
    await this.heartbeat(claim);
    const timer = setInterval(
      () => {
        this.heartbeat(claim).catch((error: unknown) =>
          warn(`series ${claim.series}: heartbeat of its lock failed: ${errorMessage(error)}`),
        );
      },
      Math.max(250, this.#staleAfterMs / 4),
    );
    timer.unref();
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }

  /** Gives the series back; false when the run no longer held it (another run took it over, or it is gone). */
  async release(claim: SeriesLockClaim): Promise<boolean> {
    try {
      await this.#blob(claim.series).getBlobLeaseClient(claim.leaseId).releaseLease();
      return true;
    } catch (error) {
      if (statusOf(error) === 404 || NOT_OURS.has(storageCodeOf(error) ?? '')) return false;
      throw error;
    }
  }

  /** Who holds the series now, if anyone. */
  async holderOf(series: string): Promise<SeriesLockHolder | undefined> {
    try {
      const properties = await this.#blob(series).getProperties();
      return properties.leaseState === 'leased' ? holderOf(properties) : undefined;
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  #blob(series: string): BlockBlobClient {
    return this.#container.getBlockBlobClient(this.blobName(series));
  }

  // The heartbeat is the blob's Last-Modified against the service's Date: both from the service's clock.
  #isStale(properties: BlobGetPropertiesResponse): boolean {
    const now = properties.date?.getTime() ?? Date.now();
    const heartbeat = properties.lastModified?.getTime() ?? 0;
    return now - heartbeat > this.#staleAfterMs;
  }

  #lost(claim: SeriesLockClaim, properties: BlobGetPropertiesResponse | undefined): SeriesLockLost {
    const now = properties ? holderOf(properties) : undefined;
    return new SeriesLockLost(
      `This run no longer holds series ${claim.series}: ` +
        (now && properties?.leaseState === 'leased'
          ? `${now.holder} took it over at ${now.since}`
          : 'its lock was broken after its heartbeat went stale') +
        '; it stops here and leaves the series to that run.',
    );
  }

  /** The lock blob's properties, creating the (empty) blob on first use, and its container if need be. */
  async #propertiesCreating(blob: BlockBlobClient): Promise<BlobGetPropertiesResponse> {
    try {
      return await blob.getProperties();
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
    try {
      await blob.upload('', 0, { conditions: { ifNoneMatch: '*' } });
    } catch (error) {
      if (storageCodeOf(error) === 'ContainerNotFound') {
        await this.#container.createIfNotExists();
        return this.#propertiesCreating(blob);
      }
      // Another run created it first: fine, it is the same empty blob.
      if (statusOf(error) !== 409 && statusOf(error) !== 412) throw error;
    }
    return blob.getProperties();
  }
}

function holderOf(properties: BlobGetPropertiesResponse | undefined): SeriesLockHolder {
  const metadata = properties?.metadata ?? {};
  const heartbeat = properties?.lastModified?.toISOString() ?? metadata['heartbeat_at'] ?? 'unknown';
  return {
    holder: metadata['holder'] ?? 'an unknown run',
    since: metadata['acquired_at'] ?? 'an unknown time',
    heartbeatAt: heartbeat,
  };
}

/** What a contender reports: who holds the series, since when, and when it was last seen alive. */
export function describeHolder(series: string, holder: SeriesLockHolder): string {
  return `another run holds series ${series}: ${holder.holder}, since ${holder.since}, last heartbeat ${holder.heartbeatAt}`;
}
