/**
 * The source blob of an image version another tool made, compared with a verified root.vhd before the mirror
 * adopts that version: byte for byte, reading only what the blob holds (its written page ranges) and checking
 * that every non-zero extent of the local VHD lies inside them, so the zeros between need no reading.
 */

import { open } from 'node:fs/promises';
import type { PageBlobClient } from '@azure/storage-blob';
import { httpStatusOf } from './failures.js';
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
