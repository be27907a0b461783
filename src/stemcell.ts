/**
 * A stemcell tarball in one streaming pass: download -> digests -> gunzip -> tar -> stemcell.MF
 * and `image` -> gunzip -> tar -> root.vhd -> sparse file. Nothing but root.vhd reaches the disk,
 * and nothing is kept unless every check passed.
 */

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, TransformCallback } from 'node:stream';
import { Transform, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { ReadEntry } from 'tar';
import { Parser } from 'tar';
import type { StemcellRelease } from './boshio.js';
import { DownloadError, downloadStream } from './download.js';
import type { StemcellManifest } from './manifest.js';
import { StemcellError, parseStemcellManifest } from './manifest.js';
import type { Extent } from './vhd.js';
import {
  MIB,
  SparseFileWriter,
  VHD_FOOTER_SIZE,
  VhdError,
  checkFixedVhd,
  parseVhdFooter,
  writeExtents,
} from './vhd.js';

export { StemcellError } from './manifest.js';

export interface ExtractedStemcell {
  series: string;
  version: string;
  manifest: StemcellManifest;
  tarballSha256: string;
  tarballSha1: string;
  /** Digests of the `image` entry (the CPI tags versions with `image_sha256`). */
  imageSha1: string;
  imageSha256: string;
  vhdPath: string;
  extentsPath: string;
  /** Bytes of root.vhd, footer included. */
  vhdSize: number;
  /** Bytes inside the non-zero extents. */
  dataBytes: number;
  tarballBytes: number;
}

const MANIFEST_ENTRY = 'stemcell.MF';
const IMAGE_ENTRY = 'image';
const VHD_ENTRY = 'root.vhd';
const MAX_MANIFEST_BYTES = MIB;
const MAX_VHD_BYTES = 64 * 1024 * MIB;
// Each gunzip stage may inflate to at most the largest VHD plus room for the small side files.
const MAX_INFLATED_BYTES = MAX_VHD_BYTES + 256 * MIB;
const ZLIB_OPTIONS = { chunkSize: MIB };
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const RESULT_FILE = 'stemcell.json';
const REGULAR_FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/** Where one series+version is extracted; the same inputs always give the same paths. */
export function stemcellWorkPaths(
  workDir: string,
  series: string,
  version: string,
): { dir: string; vhdPath: string; extentsPath: string; resultPath: string } {
  for (const [what, value] of [
    ['series', series],
    ['version', version],
  ] as const) {
    if (!SAFE_NAME.test(value) || value.includes('..')) {
      throw new StemcellError(
        `stemcell ${what} ${JSON.stringify(value)} is not usable in a file name (expected letters, digits, '.', '_', '-')`,
      );
    }
  }
  const dir = join(workDir, `${series}_${version}`);
  return {
    dir,
    vhdPath: join(dir, VHD_ENTRY),
    extentsPath: join(dir, `${VHD_ENTRY}.extents.json`),
    resultPath: join(dir, RESULT_FILE),
  };
}

/** `<file>.partial-<pid>-<hex>`: what an extraction writes before it is complete. */
const PARTIAL_FILE = /\.partial-(\d+)-[0-9a-f]+$/;
/** A partial file untouched this long belongs to no running extraction, whoever wrote it. */
const STALE_PARTIAL_MS = 60 * 60 * 1000;
/** Suffixes of the extractions running in this process right now. */
const activeSuffixes = new Set<string>();

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code === 'EPERM';
  }
}

/**
 * Deletes the partial files that an interrupted earlier attempt (a killed process) left in the
 * version's directory; files of an extraction still running (here or in a live process) and a
 * complete extraction are kept.
 */
async function removeStalePartials(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    names.map(async (name) => {
      const match = PARTIAL_FILE.exec(name);
      if (!match) return;
      const suffix = match[0];
      if (activeSuffixes.has(suffix)) return;
      const pid = Number(match[1]);
      const path = join(dir, name);
      const mtime = (await stat(path).catch(() => undefined))?.mtimeMs;
      if (mtime === undefined) return;
      const old = Date.now() - mtime > STALE_PARTIAL_MS;
      if (pid === process.pid || !isProcessAlive(pid) || old) await rm(path, { force: true });
    }),
  );
}

/** Passes bytes through unchanged while computing SHA-1 and SHA-256 and counting them. */
class DigestTap extends Transform {
  readonly #sha1 = createHash('sha1');
  readonly #sha256 = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#sha1.update(chunk);
    this.#sha256.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
  digests(): { sha1: string; sha256: string } {
    return { sha1: this.#sha1.digest('hex'), sha256: this.#sha256.digest('hex') };
  }
}

/** Tar entry names as archivers write them: `./root.vhd` and `root.vhd` are the same file. */
function entryName(entry: ReadEntry): string {
  return entry.path.replace(/^(\.\/)+/, '');
}

function isRegularFile(entry: ReadEntry): boolean {
  return REGULAR_FILE_TYPES.has(entry.type);
}

/**
 * A Writable front for node-tar's Parser: passes its backpressure on, caps the inflated bytes, turns
 * its warnings (truncation, bad headers) into errors, and finishes only after the parser has ended.
 */
class TarSink extends Writable {
  readonly parser: Parser;
  #bytes = 0;
  #sawEndOfArchive = false;
  readonly label: string;

  constructor(label: string, onEntry: (entry: ReadEntry) => void) {
    super({ highWaterMark: 4 * MIB });
    this.label = label;
    this.parser = new Parser({
      onReadEntry: onEntry,
      onwarn: (code: string, message: string | Error) => this.#onWarning(code, message),
    });
    this.parser.on('eof', () => (this.#sawEndOfArchive = true));
    this.parser.on('error', (error: Error) => this.destroy(this.#corrupt(error.message)));
  }

  #corrupt(message: string): StemcellError {
    return new StemcellError(`${this.label} is not a valid tar archive: ${message}`);
  }

  #onWarning(code: string, message: string | Error): void {
    const text = typeof message === 'string' ? message : message.message;
    // An archive with no entries at all is well-formed; the missing entry is reported by name later.
    if (code === 'TAR_BAD_ARCHIVE' && /Unrecognized archive format/.test(text) && this.#sawEndOfArchive)
      return;
    this.destroy(this.#corrupt(`${code} ${text}`));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#bytes += chunk.length;
    if (this.#bytes > MAX_INFLATED_BYTES) {
      return callback(
        new StemcellError(`${this.label} inflates to more than ${MAX_INFLATED_BYTES} bytes: refusing it`),
      );
    }
    if (this.parser.write(chunk) || this.destroyed) return callback();
    this.parser.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.parser.once('end', () => callback());
    this.parser.end();
  }
}

interface StreamedStemcell {
  manifest: StemcellManifest;
  tarball: { sha1: string; sha256: string; bytes: number };
  image: { sha1: string; sha256: string };
  vhd: { extents: Extent[]; dataBytes: number; size: number };
}

/** Runs the nested streams; resolves once the sparse VHD file is complete and the image digests match. */
async function streamStemcell(
  source: Readable,
  release: StemcellRelease,
  vhdPartialPath: string,
  signal: AbortSignal | undefined,
): Promise<StreamedStemcell> {
  const subject = `stemcell ${release.series}/${release.version}`;
  let failure: Error | undefined;
  let manifest: StemcellManifest | undefined;
  let imageDone: Promise<StreamedStemcell['image'] & { vhd: StreamedStemcell['vhd'] }> | undefined;
  let firstEntry = true;
  const cleanups: Array<(error: Error) => void> = [];
  // Resolves once the VHD file handle is closed, so a failed attempt can delete the file for good.
  let vhdWriterClosed: Promise<unknown> = Promise.resolve();

  const tarballTap = new DigestTap();
  const outer = new TarSink(`${subject} tarball`, (entry) => {
    try {
      onStemcellEntry(entry);
    } catch (error) {
      entry.resume();
      fail(error);
    }
  });
  const fail = (error: unknown) => {
    failure ??= error instanceof Error ? error : new Error(String(error));
    outer.destroy(error as Error);
    for (const cleanup of cleanups) cleanup(error as Error);
  };

  function onStemcellEntry(entry: ReadEntry): void {
    const name = entryName(entry);
    if (entry.type === 'Directory') return void entry.resume();
    if (firstEntry && name !== MANIFEST_ENTRY) {
      throw new StemcellError(
        `${subject}: the first entry of the tarball is ${JSON.stringify(name)}, expected ${MANIFEST_ENTRY}; this is not a BOSH stemcell tarball`,
      );
    }
    firstEntry = false;
    if (!isRegularFile(entry)) return void entry.resume();
    if (name === MANIFEST_ENTRY) return readManifest(entry);
    if (name === IMAGE_ENTRY) return startImage(entry);
    entry.resume();
  }

  function readManifest(entry: ReadEntry): void {
    if (manifest) throw new StemcellError(`${subject}: the tarball holds ${MANIFEST_ENTRY} twice`);
    if (entry.size > MAX_MANIFEST_BYTES) {
      throw new StemcellError(
        `${subject}: ${MANIFEST_ENTRY} is ${entry.size} bytes, more than the ${MIB} allowed`,
      );
    }
    const chunks: Buffer[] = [];
    entry.on('data', (chunk: Buffer) => chunks.push(chunk));
    entry.on('end', () => {
      try {
        manifest = checkedManifest(Buffer.concat(chunks).toString('utf8'), release);
      } catch (error) {
        fail(error);
      }
    });
  }

  function startImage(entry: ReadEntry): void {
    if (!manifest)
      throw new StemcellError(`${subject}: ${IMAGE_ENTRY} comes before a valid ${MANIFEST_ENTRY}`);
    if (imageDone) throw new StemcellError(`${subject}: the tarball holds ${IMAGE_ENTRY} twice`);
    const expectedSha1 = manifest.sha1;
    const imageTap = new DigestTap();
    const gunzip = createGunzip(ZLIB_OPTIONS);
    let vhdWriter: SparseFileWriter | undefined;
    let vhdEntrySize = 0;
    const inner = new TarSink(`${subject} image`, (vhdEntry) => {
      if (!isRegularFile(vhdEntry) || entryName(vhdEntry) !== VHD_ENTRY) return void vhdEntry.resume();
      try {
        if (vhdWriter) throw new StemcellError(`${subject}: the image holds ${VHD_ENTRY} twice`);
        if (vhdEntry.size > MAX_VHD_BYTES) {
          throw new StemcellError(
            `${subject}: ${VHD_ENTRY} is ${vhdEntry.size} bytes, more than the ${MAX_VHD_BYTES} allowed`,
          );
        }
        vhdEntrySize = vhdEntry.size;
        vhdWriter = new SparseFileWriter(vhdPartialPath);
        const writer = vhdWriter;
        vhdWriterClosed = new Promise((resolve) => writer.once('close', resolve));
        writer.on('error', fail);
        vhdEntry.pipe(vhdWriter);
      } catch (error) {
        vhdEntry.resume();
        fail(error);
      }
    });
    cleanups.push((error) => {
      imageTap.destroy(error);
      inner.destroy(error);
      vhdWriter?.destroy(error);
    });
    imageDone = (async () => {
      await pipeline(imageTap, gunzip, inner);
      const image = imageTap.digests();
      if (image.sha1 !== expectedSha1) {
        throw new StemcellError(
          `${subject}: SHA-1 of ${IMAGE_ENTRY} is ${image.sha1}, expected ${expectedSha1} (from ${MANIFEST_ENTRY}); the tarball is damaged, download it again`,
        );
      }
      if (!vhdWriter) throw new StemcellError(`${subject}: image has no ${VHD_ENTRY}`);
      await finished(vhdWriter);
      if (vhdWriter.bytesWritten !== vhdEntrySize) {
        throw new StemcellError(
          `${subject}: ${VHD_ENTRY} ended after ${vhdWriter.bytesWritten} of ${vhdEntrySize} bytes; the image is truncated`,
        );
      }
      return {
        ...image,
        vhd: { extents: vhdWriter.extents, dataBytes: vhdWriter.dataBytes, size: vhdWriter.bytesWritten },
      };
    })();
    imageDone.catch(fail);
    entry.pipe(imageTap);
  }

  try {
    await pipeline(source, tarballTap, createGunzip(ZLIB_OPTIONS), outer, signal ? { signal } : {});
    if (failure) throw failure;
    if (!manifest) throw new StemcellError(`${subject}: stemcell tarball has no ${MANIFEST_ENTRY} entry`);
    if (!imageDone) throw new StemcellError(`${subject}: stemcell tarball has no \`${IMAGE_ENTRY}\` entry`);
    const image = await imageDone;
    return {
      manifest,
      tarball: { ...tarballTap.digests(), bytes: tarballTap.bytes },
      image: { sha1: image.sha1, sha256: image.sha256 },
      vhd: image.vhd,
    };
  } catch (error) {
    fail(error);
    await vhdWriterClosed;
    throw failure ?? error;
  }
}

function checkedManifest(text: string, release: StemcellRelease): StemcellManifest {
  const subject = `stemcell ${release.series}/${release.version}`;
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

function checkTarballDigest(release: StemcellRelease, tarball: StreamedStemcell['tarball']): void {
  const subject = `stemcell ${release.series}/${release.version}`;
  const [algorithm, expected, actual] = release.sha256
    ? (['SHA-256', release.sha256, tarball.sha256] as const)
    : release.sha1
      ? (['SHA-1', release.sha1, tarball.sha1] as const)
      : [undefined, undefined, undefined];
  if (!algorithm)
    throw new StemcellError(`${subject}: bosh.io gives neither sha256 nor sha1 to verify the tarball`);
  if (expected.toLowerCase() !== actual) {
    throw new StemcellError(
      `${subject}: tarball ${algorithm} is ${actual}, expected ${expected.toLowerCase()} (from bosh.io); ${tarball.bytes} bytes were read, download it again`,
    );
  }
}

async function checkVhdFile(path: string, size: number, subject: string): Promise<void> {
  if (size < VHD_FOOTER_SIZE) {
    throw new StemcellError(`${subject}: ${VHD_ENTRY} is ${size} bytes, smaller than a VHD footer`);
  }
  const file = await open(path, 'r');
  try {
    const footer = Buffer.alloc(VHD_FOOTER_SIZE);
    await file.read(footer, 0, VHD_FOOTER_SIZE, size - VHD_FOOTER_SIZE);
    checkFixedVhd(parseVhdFooter(footer), size);
  } catch (error) {
    if (error instanceof VhdError) throw new StemcellError(`${subject}: ${error.message}`);
    throw error;
  } finally {
    await file.close();
  }
}

/** Archive and decompression failures are permanent; download, disk and abort errors pass through. */
function asFailure(error: unknown, subject: string, sourceError: unknown): unknown {
  if (error instanceof StemcellError || error instanceof DownloadError) return error;
  if (sourceError !== undefined && error === sourceError) return error;
  if (error instanceof Error && error.name === 'AbortError') return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('Z_') || code.startsWith('TAR_'))) {
    return new StemcellError(
      `${subject}: the tarball is corrupt or truncated (${(error as Error).message}); download it again`,
    );
  }
  return error;
}

/**
 * Extracts root.vhd from a stemcell tarball stream into the work directory and verifies it all.
 * On any failure no file of this attempt is left behind.
 */
export async function extractStemcellFrom(
  source: Readable,
  release: StemcellRelease,
  options: { workDir: string; signal?: AbortSignal },
): Promise<ExtractedStemcell> {
  const subject = `stemcell ${release.series}/${release.version}`;
  const paths = stemcellWorkPaths(options.workDir, release.series, release.version);
  // A unique suffix: a second attempt running at the same time must not write into our files.
  const suffix = `.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  const vhdPartial = paths.vhdPath + suffix;
  const extentsPartial = paths.extentsPath + suffix;
  const resultPartial = paths.resultPath + suffix;
  let sourceError: unknown;
  source.once('error', (error) => (sourceError ??= error));
  activeSuffixes.add(suffix);
  try {
    await mkdir(paths.dir, { recursive: true });
    await removeStalePartials(paths.dir);
    const streamed = await streamStemcell(source, release, vhdPartial, options.signal);
    checkTarballDigest(release, streamed.tarball);
    await checkVhdFile(vhdPartial, streamed.vhd.size, subject);
    await writeExtents(extentsPartial, streamed.vhd.extents);
    const result: ExtractedStemcell = {
      series: release.series,
      version: release.version,
      manifest: streamed.manifest,
      tarballSha256: streamed.tarball.sha256,
      tarballSha1: streamed.tarball.sha1,
      imageSha1: streamed.image.sha1,
      imageSha256: streamed.image.sha256,
      vhdPath: paths.vhdPath,
      extentsPath: paths.extentsPath,
      vhdSize: streamed.vhd.size,
      dataBytes: streamed.vhd.dataBytes,
      tarballBytes: streamed.tarball.bytes,
    };
    await rename(vhdPartial, paths.vhdPath);
    await rename(extentsPartial, paths.extentsPath);
    // Written last: its presence means the VHD and extents beside it are complete.
    await writeFile(resultPartial, JSON.stringify(result));
    await rename(resultPartial, paths.resultPath);
    return result;
  } catch (error) {
    await Promise.all([vhdPartial, extentsPartial, resultPartial].map((p) => rm(p, { force: true })));
    await rmdir(paths.dir).catch(() => undefined); // only succeeds when nothing else is in it
    throw asFailure(error, subject, sourceError);
  } finally {
    activeSuffixes.delete(suffix);
  }
}

/** Downloads a stemcell from its bosh.io URL and extracts it (see extractStemcellFrom). */
export async function downloadAndExtractStemcell(
  release: StemcellRelease,
  options: {
    workDir: string;
    timeoutMs: number;
    signal?: AbortSignal;
    onProgress?: (p: { phase: 'download'; bytes: number; total?: number }) => void;
  },
): Promise<ExtractedStemcell> {
  const onProgress = options.onProgress;
  const source = downloadStream(release.url, {
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(onProgress
      ? {
          onProgress: (bytes: number, total: number | undefined) => {
            const known = total ?? (release.size > 0 ? release.size : undefined);
            onProgress(
              known === undefined ? { phase: 'download', bytes } : { phase: 'download', bytes, total: known },
            );
          },
        }
      : {}),
  });
  return extractStemcellFrom(source, release, {
    workDir: options.workDir,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

function isExtractedStemcell(value: unknown): value is ExtractedStemcell {
  const v = value as Partial<ExtractedStemcell> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.imageSha256 === 'string' &&
    typeof v.tarballSha256 === 'string' &&
    typeof v.vhdSize === 'number' &&
    typeof v.dataBytes === 'number' &&
    typeof v.manifest === 'object' &&
    v.manifest !== null
  );
}

/** A previous complete extraction of this series+version, or undefined (absent, incomplete or another image). */
export async function findExtractedStemcell(
  workDir: string,
  series: string,
  version: string,
  expectedImageSha256?: string,
): Promise<ExtractedStemcell | undefined> {
  const paths = stemcellWorkPaths(workDir, series, version);
  let result: unknown;
  try {
    result = JSON.parse(await readFile(paths.resultPath, 'utf8'));
  } catch {
    return undefined;
  }
  if (!isExtractedStemcell(result) || result.series !== series || result.version !== version)
    return undefined;
  if (expectedImageSha256 !== undefined && result.imageSha256 !== expectedImageSha256.toLowerCase())
    return undefined;
  const [vhd, extents] = await Promise.all([
    stat(paths.vhdPath).catch(() => undefined),
    stat(paths.extentsPath).catch(() => undefined),
  ]);
  if (!vhd || !extents || vhd.size !== result.vhdSize) return undefined;
  // The work directory may be mounted elsewhere now: paths follow workDir, not the saved file.
  return { ...result, vhdPath: paths.vhdPath, extentsPath: paths.extentsPath };
}

/** Removes everything extracted for this series+version (a no-op when nothing is there). */
export async function removeStemcellWorkFiles(
  workDir: string,
  series: string,
  version: string,
): Promise<void> {
  await rm(stemcellWorkPaths(workDir, series, version).dir, { recursive: true, force: true });
}
