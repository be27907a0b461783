/**
 * Page ranges: the pure arithmetic of a sparse page-blob upload, which Put Page writes cover a VHD's
 * data extents and which of them a partly written blob still lacks.
 */
import type { Extent } from './vhd.js';

/** The largest single Put Page the service accepts. */
export const MAX_PAGE_WRITE = 4 * 1024 * 1024;

/** Page blob writes and sizes are whole 512-byte pages. */
export const PAGE_SIZE = 512;

/**
 * The Put Page writes that cover exactly the extents: each rounded out to whole pages, touching or
 * overlapping ones joined, zero gaps between them never written, each split into writes of at most
 * `maxWrite` bytes.
 */
export function planPageWrites(extents: readonly Extent[], maxWrite: number = MAX_PAGE_WRITE): Extent[] {
  if (
    !Number.isInteger(maxWrite) ||
    maxWrite < PAGE_SIZE ||
    maxWrite > MAX_PAGE_WRITE ||
    maxWrite % PAGE_SIZE !== 0
  ) {
    throw new RangeError(
      `A page write must be a multiple of ${PAGE_SIZE} bytes up to ${MAX_PAGE_WRITE}, not ${maxWrite}.`,
    );
  }
  const writes: Extent[] = [];
  for (const range of mergeRanges(extents.map(alignOutward))) {
    const stop = endOf(range);
    for (let offset = range.offset; offset < stop; offset += maxWrite) {
      writes.push({ offset, length: Math.min(maxWrite, stop - offset) });
    }
  }
  return writes;
}

/**
 * What of the planned writes is not yet on the blob, given the page ranges it reports: only the
 * missing parts of a partly written range, still whole pages.
 */
export function remainingWrites(planned: readonly Extent[], written: readonly Extent[]): Extent[] {
  const present = mergeRanges(written.map(alignInward));
  const missing: Extent[] = [];
  for (const write of planned) {
    const stop = endOf(write);
    let cursor = write.offset;
    for (let i = firstEndingAfter(present, cursor); i < present.length && cursor < stop; i++) {
      const range = present[i]!;
      if (range.offset >= stop) break;
      if (range.offset > cursor) missing.push({ offset: cursor, length: range.offset - cursor });
      cursor = Math.max(cursor, endOf(range));
    }
    if (cursor < stop) missing.push({ offset: cursor, length: stop - cursor });
  }
  return missing;
}

function alignOutward(extent: Extent): Extent {
  const offset = Math.floor(extent.offset / PAGE_SIZE) * PAGE_SIZE;
  return { offset, length: Math.ceil(endOf(extent) / PAGE_SIZE) * PAGE_SIZE - offset };
}

/** Only whole pages inside the range count as written. */
function alignInward(extent: Extent): Extent {
  const offset = Math.ceil(extent.offset / PAGE_SIZE) * PAGE_SIZE;
  return { offset, length: Math.max(0, Math.floor(endOf(extent) / PAGE_SIZE) * PAGE_SIZE - offset) };
}

/** Sorted, with empty ranges dropped and overlapping or touching ones joined. */
function mergeRanges(ranges: readonly Extent[]): Extent[] {
  const sorted = ranges.filter((range) => range.length > 0).sort((a, b) => a.offset - b.offset);
  const merged: Extent[] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last !== undefined && range.offset <= endOf(last)) {
      last.length = Math.max(endOf(last), endOf(range)) - last.offset;
    } else {
      merged.push({ ...range });
    }
  }
  return merged;
}

/** Index of the first of the sorted, disjoint ranges that ends after `offset`. */
function firstEndingAfter(ranges: readonly Extent[], offset: number): number {
  let low = 0;
  let high = ranges.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (endOf(ranges[middle]!) <= offset) low = middle + 1;
    else high = middle;
  }
  return low;
}

export function endOf(extent: Extent): number {
  return extent.offset + extent.length;
}

export function totalLength(extents: readonly Extent[]): number {
  return extents.reduce((sum, extent) => sum + extent.length, 0);
}
