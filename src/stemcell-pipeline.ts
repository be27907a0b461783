/**
 * The stages a stemcell tarball flows through in one pass, each with one job:
 *
 *   download -> Coalesce (1 MiB pieces) -> DigestTap (tarball) -> gunzip -> TarSink (outer tar) -> StemcellContents
 *     stemcell.MF -> readManifest
 *     image       -> ImageExtraction: DigestTap (image) -> gunzip -> TarSink (inner tar) -> RootVhd
 *                      root.vhd -> RootVhd -> SparseFileWriter
 *
 * A failure anywhere stops every stage; `streamStemcell` resolves only when all of them finished.
 */

import type { Hash } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { Readable, TransformCallback } from 'node:stream';
import { Transform } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { ReadEntry } from 'tar';
import type { StemcellRelease } from './boshio.js';
import type { StemcellManifest } from './manifest.js';
import { StemcellError, parseStemcellManifest } from './manifest.js';
import type { Extent, VhdObserver } from './vhd.js';
import { MIB, SparseFileWriter } from './vhd.js';
import type { StemcellBounds } from './stemcell-bounds.js';
import { BEFORE_MANIFEST_BYTES, MAX_MANIFEST_BYTES, stemcellBounds } from './stemcell-bounds.js';
import { TarSink, checkEntry, entryName, isRegularFile } from './tar-entries.js';
import { VHD_FILE } from './workdir.js';

export const MANIFEST_ENTRY = 'stemcell.MF';
export const IMAGE_ENTRY = 'image';
const ZLIB_OPTIONS = { chunkSize: MIB };

export interface Digests {
  sha1: string;
  sha256: string;
}

/** The tarball's digests: SHA-1 only when it is what verifies the tarball (bosh.io lists no SHA-256). */
export interface TarballDigests {
  sha1?: string;
  sha256: string;
  bytes: number;
}

export interface StreamedVhd {
  extents: Extent[];
  dataBytes: number;
  size: number;
}

/** Where root.vhd goes, and who follows it there. */
export interface VhdTarget {
  path: string;
  observer?: VhdObserver | undefined;
}

export interface StreamedStemcell {
  manifest: StemcellManifest;
  tarball: TarballDigests;
  image: Digests;
  vhd: StreamedVhd;
}

/**
 * Passes bytes through unchanged while computing SHA-256, and SHA-1 unless told it is not needed
 * (each costs about 0.55 s of CPU per GiB), and counting them.
 */
export class DigestTap extends Transform {
  readonly #sha1: Hash | undefined;
  readonly #sha256 = createHash('sha256');
  bytes = 0;
  constructor(options: { sha1: boolean } = { sha1: true }) {
    super();
    this.#sha1 = options.sha1 ? createHash('sha1') : undefined;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#sha1?.update(chunk);
    this.#sha256.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
  /** SHA-256, and SHA-1 when it was computed. */
  tarballDigests(): TarballDigests {
    const sha1 = this.#sha1?.digest('hex');
    return { ...(sha1 !== undefined ? { sha1 } : {}), sha256: this.#sha256.digest('hex'), bytes: this.bytes };
  }
  digests(): Digests {
    const { sha1, sha256 } = this.tarballDigests();
    if (sha1 === undefined) throw new Error('DigestTap: SHA-1 was not computed');
    return { sha1, sha256 };
  }
}

/**
 * Joins the network's small chunks (tens of KiB) into pieces of `size` bytes: each chunk costs a round
 * trip to zlib's thread in both inflaters and a file write, so 16 KiB chunks took 1.7x the CPU of 1 MiB
 * ones. Chunks already that large pass through uncopied; what waits is passed on after `idleMs` without
 * more, so a slow or stalled source is never held back.
 */
export class Coalesce extends Transform {
  readonly #size: number;
  readonly #idleMs: number;
  #pending: Buffer | undefined;
  #filled = 0;
  #idle: NodeJS.Timeout | undefined;
  constructor(size: number, idleMs = 20) {
    super();
    this.#size = size;
    this.#idleMs = idleMs;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#filled === 0 && chunk.length >= this.#size) return callback(null, chunk);
    for (let at = 0; at < chunk.length;) {
      this.#pending ??= Buffer.allocUnsafe(this.#size);
      const copied = chunk.copy(this.#pending, this.#filled, at);
      this.#filled += copied;
      at += copied;
      if (this.#filled === this.#size) this.#passOn();
    }
    if (this.#filled > 0) {
      this.#idle ??= setTimeout(() => this.#passOn(), this.#idleMs);
      this.#idle.refresh();
    }
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.#passOn();
    callback();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#idle);
    callback(error);
  }
  #passOn(): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    if (this.#pending === undefined || this.#filled === 0) return;
    this.push(this.#pending.subarray(0, this.#filled));
    this.#pending = undefined;
    this.#filled = 0;
  }
}

/** Reads stemcell.MF (at most 1 MiB) and hands over the manifest once it is checked against bosh.io. */
export function readManifest(
  entry: ReadEntry,
  release: StemcellRelease,
  onManifest: (manifest: StemcellManifest) => void,
  onError: (error: unknown) => void,
): void {
  const subject = subjectOf(release);
  if (entry.size > MAX_MANIFEST_BYTES) {
    throw new StemcellError(
      `${subject}: ${MANIFEST_ENTRY} is ${entry.size} bytes, more than the ${MIB} allowed`,
    );
  }
  const chunks: Buffer[] = [];
  entry.on('data', (chunk: Buffer) => chunks.push(chunk));
  entry.on('end', () => {
    try {
      onManifest(checkedManifest(Buffer.concat(chunks).toString('utf8'), release));
    } catch (error) {
      onError(error);
    }
  });
}

/** The manifest must describe the release bosh.io lists, and its cloud_properties must agree with it. */
function checkedManifest(text: string, release: StemcellRelease): StemcellManifest {
  const subject = subjectOf(release);
  let manifest: StemcellManifest;
  try {
    manifest = parseStemcellManifest(text);
  } catch (error) {
    throw new StemcellError(`${subject}: ${(error as Error).message}`);
  }
  if (manifest.name !== release.series || manifest.version !== release.version) {
    throw new StemcellError(
      `${subject}: ${MANIFEST_ENTRY} describes ${manifest.name}/${manifest.version}, expected ${release.series}/${release.version}; bosh.io lists the wrong file`,
    );
  }
  // The gallery definition is named after cloud_properties.name, the lookup goes by the series: they must agree.
  const cloud = manifest.cloudProperties;
  for (const [key, expected, actual] of [
    ['name', manifest.name, cloud.name],
    ['version', manifest.version, cloud.version],
  ] as const) {
    if (actual !== expected) {
      throw new StemcellError(
        `${subject}: ${MANIFEST_ENTRY} has cloud_properties.${key} ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)} (its ${key}); the stemcell contradicts itself`,
      );
    }
  }
  return manifest;
}

/** root.vhd from the image's tar, written to a sparse file; checks it arrived whole. */
class RootVhd {
  readonly #writer: SparseFileWriter;
  readonly #expectedBytes: number;
  readonly #subject: string;
  /** Resolves once the file handle is closed, so a failed attempt can delete the file for good. */
  readonly closed: Promise<unknown>;

  constructor(
    entry: ReadEntry,
    target: VhdTarget,
    bounds: StemcellBounds,
    subject: string,
    onError: (error: unknown) => void,
  ) {
    if (entry.size > bounds.vhdBytes) {
      throw new StemcellError(
        `${subject}: ${VHD_FILE} is ${entry.size} bytes, larger than the ${bounds.vhdBytes} expected (${bounds.reason}); refused before writing it`,
      );
    }
    this.#subject = subject;
    this.#expectedBytes = entry.size;
    const { path, observer } = target;
    observer?.start({ path, size: entry.size });
    const writer = new SparseFileWriter(path, observer ? { onData: (run) => observer.data(run) } : {});
    this.#writer = writer;
    this.closed = new Promise((resolve) => writer.once('close', resolve));
    writer.on('error', onError);
    entry.pipe(writer);
  }

  async written(): Promise<StreamedVhd> {
    const writer = this.#writer;
    await finished(writer);
    if (writer.bytesWritten !== this.#expectedBytes) {
      throw new StemcellError(
        `${this.#subject}: ${VHD_FILE} ended after ${writer.bytesWritten} of ${this.#expectedBytes} bytes; the image is truncated`,
      );
    }
    return { extents: writer.extents, dataBytes: writer.dataBytes, size: writer.bytesWritten };
  }

  destroy(error: Error): void {
    this.#writer.destroy(error);
  }
}

/** The `image` entry: its digests, then gunzip and tar down to root.vhd; checks the SHA-1 of stemcell.MF. */
class ImageExtraction {
  readonly #digests = new DigestTap();
  readonly #innerTar: TarSink;
  readonly #subject: string;
  readonly #target: VhdTarget;
  readonly #bounds: StemcellBounds;
  readonly #onError: (error: unknown) => void;
  #vhd: RootVhd | undefined;
  readonly done: Promise<{ image: Digests; vhd: StreamedVhd }>;

  constructor(
    entry: ReadEntry,
    stemcell: { manifest: StemcellManifest; bounds: StemcellBounds },
    target: VhdTarget,
    subject: string,
    onError: (error: unknown) => void,
  ) {
    const { manifest, bounds } = stemcell;
    if (entry.size > bounds.imageBytes) {
      throw new StemcellError(
        `${subject}: ${IMAGE_ENTRY} is ${entry.size} bytes, larger than the ${bounds.imageBytes} a compressed root.vhd can be (${bounds.reason})`,
      );
    }
    this.#subject = subject;
    this.#target = target;
    this.#bounds = bounds;
    this.#onError = onError;
    this.#innerTar = new TarSink(`${subject} image`, (vhdEntry) => this.#accept(vhdEntry), {
      bytes: bounds.imageTarBytes,
      reason: bounds.reason,
    });
    this.done = this.#run(manifest.sha1);
    this.done.catch(onError);
    entry.pipe(this.#digests);
  }

  /** Resolves once root.vhd's file is closed (at once when there is none). */
  get closed(): Promise<unknown> {
    return this.#vhd?.closed ?? Promise.resolve();
  }

  #accept(entry: ReadEntry): void {
    try {
      checkEntry(entry, `${this.#subject} image`, [VHD_FILE]);
      if (!isRegularFile(entry) || entryName(entry) !== VHD_FILE) return void entry.resume();
      if (this.#vhd) throw new StemcellError(`${this.#subject}: the image holds ${VHD_FILE} twice`);
      this.#vhd = new RootVhd(entry, this.#target, this.#bounds, this.#subject, this.#onError);
    } catch (error) {
      entry.resume();
      this.#onError(error);
    }
  }

  async #run(expectedSha1: string): Promise<{ image: Digests; vhd: StreamedVhd }> {
    await pipeline(this.#digests, createGunzip(ZLIB_OPTIONS), this.#innerTar);
    const image = this.#digests.digests();
    if (image.sha1 !== expectedSha1) {
      throw new StemcellError(
        `${this.#subject}: SHA-1 of ${IMAGE_ENTRY} is ${image.sha1}, expected ${expectedSha1} (from ${MANIFEST_ENTRY}); the tarball is damaged, download it again`,
      );
    }
    if (!this.#vhd) throw new StemcellError(`${this.#subject}: image has no ${VHD_FILE}`);
    return { image, vhd: await this.#vhd.written() };
  }

  abort(error: Error): void {
    this.#digests.destroy(error);
    this.#innerTar.destroy(error);
    this.#vhd?.destroy(error);
  }
}

/** The outer tar's entries: stemcell.MF first, then `image`; everything else is skipped unread. */
class StemcellContents {
  readonly #release: StemcellRelease;
  readonly #subject: string;
  readonly #target: VhdTarget;
  readonly #tar: TarSink;
  #firstEntry = true;
  #stemcell: { manifest: StemcellManifest; bounds: StemcellBounds } | undefined;
  #image: ImageExtraction | undefined;
  #failure: Error | undefined;

  /** `tar` is the stemcell tar whose entries these are: bounded by the manifest, stopped on failure. */
  constructor(release: StemcellRelease, target: VhdTarget, tar: TarSink) {
    this.#release = release;
    this.#subject = subjectOf(release);
    this.#target = target;
    this.#tar = tar;
  }

  accept(entry: ReadEntry): void {
    try {
      this.#route(entry);
    } catch (error) {
      entry.resume();
      this.fail(error);
    }
  }

  #route(entry: ReadEntry): void {
    checkEntry(entry, `${this.#subject} tarball`, [MANIFEST_ENTRY, IMAGE_ENTRY]);
    const name = entryName(entry);
    if (entry.type === 'Directory') return void entry.resume();
    if (this.#firstEntry && name !== MANIFEST_ENTRY) {
      throw new StemcellError(
        `${this.#subject}: the first entry of the tarball is ${JSON.stringify(name)}, expected ${MANIFEST_ENTRY}; this is not a BOSH stemcell tarball`,
      );
    }
    this.#firstEntry = false;
    if (!isRegularFile(entry)) return void entry.resume();
    if (name === MANIFEST_ENTRY) return this.#startManifest(entry);
    if (name === IMAGE_ENTRY) return this.#startImage(entry);
    entry.resume();
  }

  #startManifest(entry: ReadEntry): void {
    if (this.#stemcell)
      throw new StemcellError(`${this.#subject}: the tarball holds ${MANIFEST_ENTRY} twice`);
    const fail = (error: unknown): void => this.fail(error);
    readManifest(entry, this.#release, (manifest) => this.#onManifest(manifest), fail);
  }

  #onManifest(manifest: StemcellManifest): void {
    let bounds: StemcellBounds;
    try {
      bounds = stemcellBounds(manifest);
    } catch (error) {
      throw new StemcellError(`${this.#subject}: ${(error as Error).message}`);
    }
    this.#tar.limitTo(bounds.tarballTarBytes, bounds.reason);
    this.#stemcell = { manifest, bounds };
  }

  #startImage(entry: ReadEntry): void {
    if (!this.#stemcell)
      throw new StemcellError(`${this.#subject}: ${IMAGE_ENTRY} comes before a valid ${MANIFEST_ENTRY}`);
    if (this.#image) throw new StemcellError(`${this.#subject}: the tarball holds ${IMAGE_ENTRY} twice`);
    const fail = (error: unknown): void => this.fail(error);
    this.#image = new ImageExtraction(entry, this.#stemcell, this.#target, this.#subject, fail);
  }

  /** Records the first failure and stops every stage. */
  fail(error: unknown): void {
    this.#failure ??= error instanceof Error ? error : new Error(String(error));
    this.#tar.destroy(error as Error);
    this.#image?.abort(error as Error);
  }

  /** What the entries gave, once the outer tar has ended. */
  async result(): Promise<{ manifest: StemcellManifest; image: Digests; vhd: StreamedVhd }> {
    if (this.#failure) throw this.#failure;
    if (!this.#stemcell)
      throw new StemcellError(`${this.#subject}: stemcell tarball has no ${MANIFEST_ENTRY} entry`);
    if (!this.#image)
      throw new StemcellError(`${this.#subject}: stemcell tarball has no \`${IMAGE_ENTRY}\` entry`);
    return { manifest: this.#stemcell.manifest, ...(await this.#image.done) };
  }

  /** Stops every stage and waits until no file is open; returns the error to report. */
  async abort(error: unknown): Promise<unknown> {
    this.fail(error);
    await this.#image?.closed;
    return this.#failure ?? error;
  }
}

function subjectOf(release: StemcellRelease): string {
  return `stemcell ${release.series}/${release.version}`;
}

/** Runs every stage; resolves once the sparse VHD file is complete and the image digests match. */
export async function streamStemcell(
  source: Readable,
  release: StemcellRelease,
  target: VhdTarget,
  signal: AbortSignal | undefined,
): Promise<StreamedStemcell> {
  // bosh.io's SHA-256 verifies the tarball when listed; its SHA-1 is computed only when it is all there is.
  const tarballDigests = new DigestTap({ sha1: release.sha256 === undefined });
  const outerTar = new TarSink(`${subjectOf(release)} tarball`, (entry) => contents.accept(entry), {
    bytes: BEFORE_MANIFEST_BYTES,
    reason: `${MANIFEST_ENTRY} comes first and is at most ${MAX_MANIFEST_BYTES} bytes`,
  });
  const contents = new StemcellContents(release, target, outerTar);
  try {
    await pipeline(
      source,
      new Coalesce(MIB),
      tarballDigests,
      createGunzip(ZLIB_OPTIONS),
      outerTar,
      signal ? { signal } : {},
    );
    const { manifest, image, vhd } = await contents.result();
    return { manifest, tarball: tarballDigests.tarballDigests(), image, vhd };
  } catch (error) {
    throw await contents.abort(error);
  }
}
