/**
 * The source blob of an image version another tool made, compared with a verified root.vhd before the mirror
 * adopts that version: byte for byte, reading only what the blob holds (its written page ranges) and checking
 * that every non-zero extent of the local VHD lies inside them, so the zeros between need no reading.
 */

import { open } from 'node:fs/promises';
import type { PageBlobClient } from '@azure/storage-blob';
import { errorCodeOf, errorMessage, httpStatusOf } from './failures.js';
import type { Extent } from './vhd.js';

export type SourceComparison =
  /** Every byte is the same. */
  | { outcome: 'same'; bytesCompared: number }
  /** The blob no longer exists: there is nothing to compare. */
  | { outcome: 'gone' }
  | { outcome: 'different'; reason: string };

export interface LocalVhd {
  vhdPath: string;
  /** Bytes of root.vhd, footer included. */
  size: number;
  /** Its non-zero extents. */
  extents: readonly Extent[];
}

// Azure serves at most 4 MiB of page data per ranged read at full speed; larger reads gain nothing.
const CHUNK = 4 * 1024 * 1024;

function covered(extent: Extent, ranges: readonly Extent[]): boolean {
  let position = extent.offset;
  const end = extent.offset + extent.length;
  for (const range of ranges) {
    if (range.offset > position) break;
    if (range.offset + range.length > position) position = range.offset + range.length;
    if (position >= end) return true;
  }
  return position >= end;
}

async function pageRanges(blob: PageBlobClient): Promise<Extent[]> {
  const ranges: Extent[] = [];
  for await (const range of blob.listPageRanges()) {
    ranges.push({ offset: range.start, length: range.end - range.start + 1 });
  }
  return ranges.sort((a, b) => a.offset - b.offset);
}

/** Compares `blob` with `local`; throws when the blob cannot be read (403: the identity may not read it). */
export async function compareSourceBlob(blob: PageBlobClient, local: LocalVhd): Promise<SourceComparison> {
  let size: number;
  try {
    const properties = await blob.getProperties();
    size = properties.contentLength ?? 0;
  } catch (error) {
    if (httpStatusOf(error) === 404) return { outcome: 'gone' };
    throw error;
  }
  if (size !== local.size) {
    return { outcome: 'different', reason: `it is ${size} bytes, the verified root.vhd ${local.size}` };
  }
  const ranges = await pageRanges(blob);
  const missing = local.extents.find((extent) => !covered(extent, ranges));
  if (missing !== undefined) {
    return {
      outcome: 'different',
      reason: `it holds zeros at byte ${missing.offset}, where the verified root.vhd holds data`,
    };
  }
  const file = await open(local.vhdPath, 'r');
  let bytesCompared = 0;
  try {
    const expected = Buffer.alloc(CHUNK);
    for (const range of ranges) {
      for (let offset = range.offset; offset < range.offset + range.length; offset += CHUNK) {
        const length = Math.min(CHUNK, range.offset + range.length - offset);
        const remote = await blob.downloadToBuffer(offset, length);
        const { bytesRead } = await file.read(expected, 0, length, offset);
        // Past the end of a sparse file, or in a hole, the disk reads as zeros.
        expected.fill(0, bytesRead, length);
        if (remote.length !== length || !remote.equals(expected.subarray(0, length))) {
          return { outcome: 'different', reason: `its bytes ${offset}-${offset + length - 1} differ` };
        }
        bytesCompared += length;
      }
    }
  } finally {
    await file.close();
  }
  return { outcome: 'same', bytesCompared };
}

/**
 * A blob in a storage account of the cloud whose endpoint is `blobEndpoint` (https, `<account>.blob.<suffix>`,
 * or that very host, as for an emulator): the only places the mirror's storage credential is sent to.
 */
export function isBlobOfThisCloud(url: string, blobEndpoint: string): boolean {
  let source: URL;
  try {
    source = new URL(url);
  } catch {
    return false;
  }
  const own = new URL(blobEndpoint);
  if (source.protocol !== 'https:' || source.username !== '' || source.password !== '') return false;
  if (source.host === own.host) return true;
  const suffix = /^[a-z0-9]{3,24}\.(blob\..+)$/.exec(own.hostname)?.[1];
  if (suffix === undefined || source.port !== own.port) return false;
  const account = source.hostname.slice(0, source.hostname.length - suffix.length - 1);
  return source.hostname.endsWith(`.${suffix}`) && /^[a-z0-9]{3,24}$/.test(account);
}

/**
 * Why `what` (the source blob, named) could not be read, saying what to do: a 403 is a role the mirror's
 * identity lacks, as on the storage account another tool wrote to (infra grants it roles on its own only).
 */
/** Storage's `x-ms-error-code` (AuthorizationPermissionMismatch, ...), as the SDK keeps it. */
function storageErrorCodeOf(error: unknown): string | undefined {
  const details = (error as { details?: { errorCode?: unknown } } | undefined)?.details;
  return typeof details?.errorCode === 'string' ? details.errorCode : errorCodeOf(error);
}

export function unreadableSourceBlob(what: string, error: unknown): Error {
  const status = httpStatusOf(error);
  // A HEAD answer has no body: Storage's error code and the status are all there is to say.
  const answer =
    errorMessage(error) ||
    [storageErrorCodeOf(error), status !== undefined ? `HTTP ${status}` : undefined]
      .filter(Boolean)
      .join(', ');
  const advice =
    status === 403
      ? "the mirror's identity may not read it (its roles cover the mirror's own storage account only): give it " +
        'Storage Blob Data Reader on that account or container, then run again'
      : 'run again once it can be read';
  return new Error(
    `${what} could not be read to compare it with the verified stemcell (${answer}): ${advice}`,
    {
      cause: error,
    },
  );
}
