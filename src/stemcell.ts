/**
 * A stemcell from bosh.io to a verified sparse root.vhd in the work directory: the one-pass stream
 * (stemcell-pipeline.ts), then the checks that need the whole tarball (its digest, the VHD footer).
 * Nothing but root.vhd and its extent map reaches the disk, and nothing is kept unless every check
 * passed.
 */

import { open, readFile, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { StemcellRelease } from './boshio.js';
import { DownloadError, downloadStream } from './download.js';
import { errorMessage, isDiskFull } from './failures.js';
import type { StemcellManifest } from './manifest.js';
import { StemcellError } from './manifest.js';
import type { StreamedStemcell } from './stemcell-pipeline.js';
import { streamStemcell } from './stemcell-pipeline.js';
import type { VhdObserver } from './vhd.js';
import { VHD_FOOTER_SIZE, VhdError, checkFixedVhd, parseVhdFooter, writeExtents } from './vhd.js';
import { ExtractionAttempt, VHD_FILE, stemcellWorkPaths } from './workdir.js';

export { StemcellError } from './manifest.js';
export { removeStemcellWorkFiles, stemcellWorkPaths } from './workdir.js';

export interface ExtractedStemcell {
  series: string;
  version: string;
  manifest: StemcellManifest;
  tarballSha256: string;
  /** Only when bosh.io listed no SHA-256: the SHA-1 is then what verified the tarball. */
  tarballSha1?: string;
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

/** Follows root.vhd while it is extracted (the overlapped upload) and hears how the extraction ended. */
export interface ExtractionFollower extends VhdObserver {
  /** Every check passed: the image's SHA-256 and the VHD's data bytes; resolves once done, never rejects. */
  verified(stemcell: { imageSha256: string; dataBytes: number }): Promise<void>;
  /** The extraction failed: undo what was done for it; never rejects. */
  failed(): Promise<void>;
}

function checkTarballDigest(release: StemcellRelease, tarball: StreamedStemcell['tarball']): void {
  const subject = `stemcell ${release.series}/${release.version}`;
  const [algorithm, expected, actual] = release.sha256
    ? (['SHA-256', release.sha256, tarball.sha256] as const)
    : release.sha1
      ? (['SHA-1', release.sha1, tarball.sha1 ?? ''] as const)
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
    throw new StemcellError(`${subject}: ${VHD_FILE} is ${size} bytes, smaller than a VHD footer`);
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
function asFailure(error: unknown, subject: string, sourceError: unknown, workDir: string): unknown {
  if (error instanceof StemcellError || error instanceof DownloadError) return error;
  if (isDiskFull(error)) {
    return new StemcellError(
      `${subject}: the temp directory ${workDir} (BASM_MOUNTED_DIRECTORY) is full (${errorMessage(error)}); ` +
        'the partial root.vhd was removed. Free space there or point BASM_MOUNTED_DIRECTORY at a larger volume: ' +
        "an extraction needs room for root.vhd's data, up to the stemcell's disk size.",
      { cause: error },
    );
  }
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
  options: { workDir: string; signal?: AbortSignal; follower?: ExtractionFollower },
): Promise<ExtractedStemcell> {
  const { follower } = options;
  const subject = `stemcell ${release.series}/${release.version}`;
  const paths = stemcellWorkPaths(options.workDir, release.series, release.version);
  let sourceError: unknown;
  source.once('error', (error) => (sourceError ??= error));
  const attempt = await ExtractionAttempt.start(paths);
  try {
    const target = { path: attempt.vhdPartial, observer: follower };
    const streamed = await streamStemcell(source, release, target, options.signal);
    checkTarballDigest(release, streamed.tarball);
    await checkVhdFile(attempt.vhdPartial, streamed.vhd.size, subject);
    await writeExtents(attempt.extentsPartial, streamed.vhd.extents);
    const result: ExtractedStemcell = {
      series: release.series,
      version: release.version,
      manifest: streamed.manifest,
      tarballSha256: streamed.tarball.sha256,
      ...(streamed.tarball.sha1 !== undefined ? { tarballSha1: streamed.tarball.sha1 } : {}),
      imageSha1: streamed.image.sha1,
      imageSha256: streamed.image.sha256,
      vhdPath: attempt.paths.vhdPath,
      extentsPath: attempt.paths.extentsPath,
      vhdSize: streamed.vhd.size,
      dataBytes: streamed.vhd.dataBytes,
      tarballBytes: streamed.tarball.bytes,
    };
    await follower?.verified(result);
    await attempt.complete(result);
    return result;
  } catch (error) {
    await follower?.failed();
    await attempt.discard();
    throw asFailure(error, subject, sourceError, options.workDir);
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
    follower?: ExtractionFollower;
  },
): Promise<ExtractedStemcell> {
  const onProgress = options.onProgress;
  const source = downloadStream(release.url, {
    timeoutMs: options.timeoutMs,
    expectedSize: release.size,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(onProgress
      ? {
          onProgress: (bytes: number, total: number | undefined) => {
            onProgress({ phase: 'download', bytes, total: total ?? release.size });
          },
        }
      : {}),
  });
  return extractStemcellFrom(source, release, {
    workDir: options.workDir,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.follower ? { follower: options.follower } : {}),
  });
}

function isExtractedStemcell(value: unknown): value is ExtractedStemcell {
  const v = value as Partial<ExtractedStemcell> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.imageSha256 === 'string' &&
    typeof v.tarballSha256 === 'string' &&
    (v.tarballSha1 === undefined || typeof v.tarballSha1 === 'string') &&
    typeof v.vhdSize === 'number' &&
    typeof v.dataBytes === 'number' &&
    typeof v.manifest === 'object' &&
    v.manifest !== null
  );
}

/** What an earlier extraction must match to be reused; an absent field is not checked. */
export interface ExtractionExpectations {
  /** SHA-256 of the `image` entry (the gallery version's content). */
  imageSha256?: string;
  /** The tarball's digests as bosh.io lists them now: SHA-256 when listed, else SHA-1. */
  listedTarball?: Pick<StemcellRelease, 'sha256' | 'sha1'>;
}

function isSameTarball(result: ExtractedStemcell, listed: Pick<StemcellRelease, 'sha256' | 'sha1'>): boolean {
  if (listed.sha256 !== undefined) return result.tarballSha256 === listed.sha256.toLowerCase();
  // An extraction verified by SHA-256 has no SHA-1 to compare: extracting again is the safe answer.
  if (listed.sha1 !== undefined) return result.tarballSha1 === listed.sha1.toLowerCase();
  return false;
}

/**
 * A previous complete extraction of this series+version, or undefined (absent, incomplete, another
 * image, or another tarball than the one bosh.io lists now).
 */
export async function findExtractedStemcell(
  workDir: string,
  series: string,
  version: string,
  expected: ExtractionExpectations = {},
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
  const { imageSha256, listedTarball } = expected;
  if (imageSha256 !== undefined && result.imageSha256 !== imageSha256.toLowerCase()) return undefined;
  if (listedTarball !== undefined && !isSameTarball(result, listedTarball)) return undefined;
  const [vhd, extents] = await Promise.all([
    stat(paths.vhdPath).catch(() => undefined),
    stat(paths.extentsPath).catch(() => undefined),
  ]);
  if (!vhd || !extents || vhd.size !== result.vhdSize) return undefined;
  // The work directory may be mounted elsewhere now: paths follow workDir, not the saved file.
  return { ...result, vhdPath: paths.vhdPath, extentsPath: paths.extentsPath };
}
