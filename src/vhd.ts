/**
 * Fixed VHD images: the 512-byte footer that describes them, a sparse writer that keeps only the
 * non-zero sectors on disk together with a map of where they are, and the reads of ranges back from it.
 */

import type { FileHandle } from 'node:fs/promises';
import { open, readFile, writeFile } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';

export const VHD_FOOTER_SIZE = 512;
export const MIB = 1024 * 1024;

const SECTOR = 512;
const VHD_COOKIE = 'conectix';
const FIXED_DISK_TYPE = 2;
// Whole runs of zeros are skipped with one comparison before looking at single sectors.
const ZERO_PROBE = 64 * 1024;
const ZEROS = Buffer.alloc(ZERO_PROBE);

/** The VHD was not what Azure accepts as an image source. */
export class VhdError extends Error {
  override name = 'VhdError';
}

export interface VhdFooter {
  cookie: string;
  diskType: number;
  /** Virtual disk size in bytes (the file holds this many bytes plus the footer). */
  currentSize: number;
  originalSize: number;
  checksumValid: boolean;
}

/**
 * The most extents a VHD's map holds, whatever its data looks like: about 4 MiB of memory, 2 MiB of
 * JSON and as many page writes at most. A VHD fragmented beyond it gets extents that take in the small
 * zero gaps between its data (see SparseFileWriter).
 */
export const MAX_EXTENTS = 65_536;
/** The first zero gap taken into an extent when the map is over budget; it doubles until it fits. */
const FIRST_MERGE_GAP = 8 * SECTOR;

/**
 * A byte range of a VHD that holds its non-zero data: 512-aligned, sorted, non-overlapping,
 * neighbours merged; it may take in zero gaps between data when the VHD is very fragmented.
 */
export interface Extent {
  offset: number;
  length: number;
}

function readUint64(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, false);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VhdError(
      `VHD footer size field at byte ${offset} is ${value}, larger than any disk this tool accepts`,
    );
  }
  return Number(value);
}

/** Reads the fields Azure cares about from the last 512 bytes of a VHD. */
export function parseVhdFooter(footer: Uint8Array): VhdFooter {
  if (footer.length !== VHD_FOOTER_SIZE) {
    throw new VhdError(`VHD footer must be ${VHD_FOOTER_SIZE} bytes, got ${footer.length}`);
  }
  const view = new DataView(footer.buffer, footer.byteOffset, footer.byteLength);
  // The checksum is the ones' complement of the byte sum with the checksum field (64..67) left out.
  let sum = 0;
  for (const [i, byte] of footer.entries()) {
    if (i < 64 || i >= 68) sum += byte;
  }
  const expected = ~sum >>> 0;
  return {
    cookie: Buffer.from(footer.subarray(0, 8)).toString('latin1'),
    diskType: view.getUint32(60, false),
    originalSize: readUint64(view, 40),
    currentSize: readUint64(view, 48),
    checksumValid: view.getUint32(64, false) === expected,
  };
}

/** Throws VhdError unless the footer describes a fixed VHD of whole MiB that matches the file size. */
export function checkFixedVhd(footer: VhdFooter, fileSize: number): void {
  if (footer.cookie !== VHD_COOKIE) {
    throw new VhdError(
      `root.vhd footer cookie is ${JSON.stringify(footer.cookie)}, expected "${VHD_COOKIE}": not a VHD or the file is cut short`,
    );
  }
  if (!footer.checksumValid) {
    throw new VhdError('root.vhd footer checksum does not match its contents: the footer is corrupt');
  }
  if (footer.diskType !== FIXED_DISK_TYPE) {
    throw new VhdError(
      `root.vhd disk type is ${footer.diskType}, expected ${FIXED_DISK_TYPE} (fixed): Azure only accepts fixed VHDs`,
    );
  }
  if (footer.currentSize + VHD_FOOTER_SIZE !== fileSize) {
    throw new VhdError(
      `root.vhd is ${fileSize} bytes, expected ${footer.currentSize + VHD_FOOTER_SIZE} (virtual size ${footer.currentSize} + ${VHD_FOOTER_SIZE}-byte footer)`,
    );
  }
  if (footer.currentSize % MIB !== 0) {
    throw new VhdError(
      `root.vhd virtual size is ${footer.currentSize} bytes, expected a whole number of MiB (Azure refuses other sizes)`,
    );
  }
}

async function writeFully(
  file: FileHandle,
  data: Buffer,
  from: number,
  to: number,
  position: number,
): Promise<void> {
  while (from < to) {
    const { bytesWritten } = await file.write(data, from, to - from, position);
    from += bytesWritten;
    position += bytesWritten;
  }
}

function isZero(data: Buffer, from: number, to: number): boolean {
  return data.compare(ZEROS, 0, to - from, from, to) === 0;
}

/**
 * Follows a VHD while it is written (the overlapped upload): its size (from the tar header) before the
 * first byte, then each run of non-zero data once it is on disk, in the order of the file.
 */
export interface VhdObserver {
  start(vhd: { path: string; size: number }): void;
  data(run: Extent): void;
}

/**
 * Writes a byte stream to a sparse file: all-zero 512-byte sectors are skipped (the file is
 * truncated to the full logical size at the end) and the non-zero ones are recorded as extents.
 * The map never holds more than `maxExtents`: past it, extents separated by a zero gap smaller than
 * a merge gap are joined (the gap reads as zeros from the sparse file), and the gap doubles until
 * at most half the budget is used. An ordinary VHD never reaches it and keeps exact extents;
 * writing a few zero pages of a pathological one costs less than a Put Page per sector.
 */
export class SparseFileWriter extends Writable {
  readonly #path: string;
  #file: FileHandle | undefined;
  /** Logical offset of the first byte not yet accounted for (always sector-aligned). */
  #offset = 0;
  readonly #carry = Buffer.alloc(SECTOR);
  #carryLength = 0;
  #dataBytes = 0;
  readonly #extents: Extent[] = [];
  readonly #maxExtents: number;
  /** Zero bytes between two data runs that still join them into one extent. */
  #mergeGap = 0;
  readonly #onData: ((run: Extent) => void) | undefined;

  /** `onData` hears of each run of non-zero sectors once it is on disk, in the order of the file. */
  constructor(path: string, options: { maxExtents?: number; onData?: (run: Extent) => void } = {}) {
    // Stryker disable next-line ObjectLiteral: how much is buffered changes speed, not what is written
    super({ highWaterMark: 4 * MIB });
    this.#path = path;
    this.#maxExtents = Math.max(2, options.maxExtents ?? MAX_EXTENTS);
    this.#onData = options.onData;
  }

  get path(): string {
    return this.#path;
  }
  get extents(): Extent[] {
    return this.#extents;
  }
  /** Logical bytes received, zeros included. */
  get bytesWritten(): number {
    return this.#offset + this.#carryLength;
  }
  /** Bytes inside extents. */
  get dataBytes(): number {
    return this.#dataBytes;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.#path, 'w').then((file) => {
      this.#file = file;
      callback();
    }, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#consume(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#finish().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return callback(error);
    file.close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  #record(offset: number, length: number): void {
    const last = this.#extents.at(-1);
    const lastEnd = last ? last.offset + last.length : 0;
    if (last && offset - lastEnd <= this.#mergeGap) {
      this.#dataBytes += offset + length - lastEnd;
      last.length = offset + length - last.offset;
      return;
    }
    this.#dataBytes += length;
    this.#extents.push({ offset, length });
    if (this.#extents.length > this.#maxExtents) this.#coarsen();
  }

  /** Joins extents across ever larger zero gaps until at most half the budget is used. */
  #coarsen(): void {
    const extents = this.#extents;
    while (extents.length > this.#maxExtents / 2) {
      this.#mergeGap = Math.max(FIRST_MERGE_GAP, this.#mergeGap * 2);
      let kept = 0;
      for (const extent of extents) {
        const previous = extents[kept - 1];
        if (previous && extent.offset - (previous.offset + previous.length) <= this.#mergeGap) {
          previous.length = extent.offset + extent.length - previous.offset;
        } else extents[kept++] = extent;
      }
      extents.length = kept;
    }
    this.#dataBytes = extents.reduce((sum, extent) => sum + extent.length, 0);
  }

  async #consume(chunk: Buffer): Promise<void> {
    const file = this.#requireFile();
    const writes: Promise<void>[] = [];
    const runs: Extent[] = [];
    let start = 0;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: with an empty carry, the same sectors go the long way
    if (this.#carryLength > 0) {
      start = Math.min(SECTOR - this.#carryLength, chunk.length);
      chunk.copy(this.#carry, this.#carryLength, 0, start);
      this.#carryLength += start;
      if (this.#carryLength < SECTOR) return;
      if (!isZero(this.#carry, 0, SECTOR)) {
        this.#record(this.#offset, SECTOR);
        await writeFully(file, this.#carry, 0, SECTOR, this.#offset);
        this.#onData?.({ offset: this.#offset, length: SECTOR });
      }
      this.#offset += SECTOR;
      this.#carryLength = 0;
    }

    const end = start + Math.floor((chunk.length - start) / SECTOR) * SECTOR;
    const base = this.#offset - start;
    let runStart = -1;
    const closeRun = (runEnd: number) => {
      this.#record(base + runStart, runEnd - runStart);
      runs.push({ offset: base + runStart, length: runEnd - runStart });
      writes.push(writeFully(file, chunk, runStart, runEnd, base + runStart));
      runStart = -1;
    };
    for (let pos = start; pos < end;) {
      const probeEnd = Math.min(pos + ZERO_PROBE, end);
      // Stryker disable next-line ConditionalExpression,BlockStatement: skipping a zero run at once is a shortcut of the sector loop below
      if (isZero(chunk, pos, probeEnd)) {
        if (runStart >= 0) closeRun(pos);
        pos = probeEnd;
        continue;
      }
      for (; pos < probeEnd; pos += SECTOR) {
        const zero = isZero(chunk, pos, pos + SECTOR);
        if (!zero && runStart < 0) runStart = pos;
        else if (zero && runStart >= 0) closeRun(pos);
      }
    }
    if (runStart >= 0) closeRun(end);
    this.#offset = base + end;

    chunk.copy(this.#carry, 0, end);
    this.#carryLength = chunk.length - end;
    await Promise.all(writes);
    if (this.#onData) for (const run of runs) this.#onData(run);
  }

  async #finish(): Promise<void> {
    const file = this.#requireFile();
    // A trailing partial sector only occurs in files that are not whole sectors (never a valid VHD).
    if (!isZero(this.#carry, 0, this.#carryLength)) {
      this.#record(this.#offset, this.#carryLength);
      await writeFully(file, this.#carry, 0, this.#carryLength, this.#offset);
    }
    await file.truncate(this.bytesWritten);
    this.#file = undefined;
    await file.close();
  }

  #requireFile(): FileHandle {
    if (!this.#file) throw new Error(`sparse file ${this.#path} is not open`);
    return this.#file;
  }
}

/**
 * A worker's buffers, 1 MiB each: after an extraction the heap holds free 1 MiB blocks (the inflaters'
 * output) that these reuse, where one 4 MiB buffer per worker took 32 MiB more from the system.
 */
export function vhdReadBuffers(bytes: number): Buffer[] {
  return Array.from({ length: Math.ceil(bytes / MIB) }, () => Buffer.allocUnsafe(MIB));
}

/**
 * Fills the buffers with one page write's bytes by positioned reads (a read may return fewer bytes); the body
 * streams them, anew for each attempt of the call. They are reused only once the write is done.
 */
export async function readVhdRange(
  file: FileHandle,
  pieces: Buffer[],
  write: Extent,
  vhdPath: string,
): Promise<() => NodeJS.ReadableStream> {
  const parts: Buffer[] = [];
  for (let filled = 0, index = 0; filled < write.length; index++) {
    const part = pieces[index]!.subarray(0, Math.min(MIB, write.length - filled));
    for (let at = 0; at < part.length;) {
      const { bytesRead } = await file.read(part, at, part.length - at, write.offset + filled + at);
      if (bytesRead === 0) {
        throw new Error(
          `${vhdPath} ends before byte ${write.offset + write.length} that its extents cover; extract root.vhd and its extents again.`,
        );
      }
      at += bytesRead;
    }
    parts.push(part);
    filled += part.length;
  }
  return () => Readable.from(parts);
}

/** Saves the extent map beside the VHD as compact JSON: `{"extents":[[offset,length],...]}`. */
export async function writeExtents(path: string, extents: Extent[]): Promise<void> {
  const pairs = extents.map((e) => `[${e.offset},${e.length}]`).join(',');
  await writeFile(path, `{"extents":[${pairs}]}\n`);
}

/** Reads an extent map written by writeExtents; throws VhdError when it is damaged. */
export async function readExtents(path: string): Promise<Extent[]> {
  const text = await readFile(path, 'utf8');
  let pairs: unknown;
  try {
    pairs = (JSON.parse(text) as { extents?: unknown }).extents;
  } catch (error) {
    throw new VhdError(
      `extent map ${path} is not valid JSON (${(error as Error).message}): extract the stemcell again`,
    );
  }
  if (!Array.isArray(pairs))
    throw new VhdError(`extent map ${path} has no "extents" list: extract the stemcell again`);
  const extents: Extent[] = [];
  let end = 0;
  for (const pair of pairs as unknown[]) {
    const [offset, length] = Array.isArray(pair) ? (pair as unknown[]) : [];
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      (offset as number) < end ||
      (length as number) <= 0
    ) {
      throw new VhdError(
        `extent map ${path} holds ${JSON.stringify(pair)}, expected sorted, non-overlapping [offset, length] pairs: extract the stemcell again`,
      );
    }
    extents.push({ offset: offset as number, length: length as number });
    end = (offset as number) + (length as number);
  }
  return extents;
}
