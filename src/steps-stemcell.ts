/** The steps that bring a stemcell from bosh.io to the page blob, and clear its temp files after. */

import type { StemcellRelease } from './boshio.js';
import { displayUrl } from './https-fetch.js';
import { OVERLAP_MAX_WRITES, OverlappedUpload } from './overlap-upload.js';
import { findCompletedVhdBlob, uploadSparseVhd, vhdBlobName } from './pageblob.js';
import {
  MANIFEST_METADATA,
  boshioRelease,
  manifestMetadata,
  requireConfiguredStemcell,
} from './provenance.js';
import type { MirrorServices } from './services.js';
import {
  downloadAndExtractStemcell,
  findExtractedStemcell,
  removeStemcellWorkFiles,
  type ExtractedStemcell,
  type ExtractionFollower,
} from './stemcell.js';
import { readExtents } from './vhd.js';
import type { ExtractedStemcellSummary, StepInputs, StepOutputs } from './workflow-contract.js';

function summarize(stemcell: ExtractedStemcell): ExtractedStemcellSummary {
  return {
    series: stemcell.series,
    version: stemcell.version,
    manifest: stemcell.manifest,
    tarballSha256: stemcell.tarballSha256,
    imageSha1: stemcell.imageSha1,
    imageSha256: stemcell.imageSha256,
    vhdSize: stemcell.vhdSize,
    dataBytes: stemcell.dataBytes,
  };
}

function extract(
  services: MirrorServices,
  release: StemcellRelease,
  follower?: ExtractionFollower,
): Promise<ExtractedStemcell> {
  return downloadAndExtractStemcell(release, {
    workDir: services.config.workDir,
    timeoutMs: services.config.httpTimeoutMs,
    ...(follower ? { follower } : {}),
    onProgress: (p) =>
      services.onProgress?.({
        series: release.series,
        version: release.version,
        phase: 'download',
        bytes: p.bytes,
        ...(p.total !== undefined ? { total: p.total } : {}),
      }),
  });
}

/**
 * The verified extraction of the tarball bosh.io lists now: found in the work directory, or extracted
 * again (another instance, or a restart, may have made the first one); of image `imageSha256` when given.
 */
export async function localStemcell(
  services: MirrorServices,
  release: StemcellRelease,
  imageSha256?: string,
): Promise<ExtractedStemcell> {
  const { series, version } = release;
  const found = await findExtractedStemcell(services.config.workDir, series, version, {
    ...(imageSha256 !== undefined ? { imageSha256 } : {}),
    listedTarball: release,
  });
  if (found) return found;
  services.log.info(`${series} ${version}: no local root.vhd here; extracting again`);
  const local = await extract(services, release);
  if (imageSha256 !== undefined && local.imageSha256 !== imageSha256) {
    throw new Error(
      `${series} ${version}: bosh.io now serves a different image ` +
        `(SHA-256 ${local.imageSha256}, expected ${imageSha256}); refusing to mix them`,
    );
  }
  return local;
}

/**
 * The page blob's upload while the stemcell is extracted, labelled with what is known before the first page:
 * the tarball digest bosh.io lists (the one that verifies it), its source and (added at root.vhd) the size.
 */
function overlappedUpload(services: MirrorServices, release: StemcellRelease): OverlappedUpload {
  const { series, version, sha256, sha1 } = release;
  const digest: Record<string, string> = sha256
    ? { tarball_sha256: sha256.toLowerCase() }
    : { tarball_sha1: (sha1 ?? '').toLowerCase() };
  return new OverlappedUpload({
    container: services.vhdContainer,
    blobName: vhdBlobName(series, version),
    label: {
      stemcell_series: series,
      stemcell_version: version,
      source_url: displayUrl(release.url),
      ...digest,
    },
    concurrency: Math.min(services.config.uploadConcurrency, OVERLAP_MAX_WRITES),
    log: services.log,
    subject: `${series} ${version}`,
    onProgress: (bytes, total) =>
      services.onProgress?.({
        series,
        version,
        phase: 'upload',
        bytes,
        ...(total !== undefined ? { total } : {}),
      }),
  });
}

/**
 * Step 2.1: the stemcell's root.vhd on local disk, reusing an extraction of the very same tarball; with
 * `overlapUpload`, its data also goes to the page blob while it is extracted (uploadVhd completes it).
 */
export async function downloadAndExtract(
  services: MirrorServices,
  { series, version, overlapUpload }: StepInputs['downloadAndExtract'],
): Promise<StepOutputs['downloadAndExtract']> {
  requireConfiguredStemcell(services.config, series, version);
  const release = await boshioRelease(services.config, series, version);
  // Reuse only an extraction of the very tarball bosh.io lists now.
  const previous = await findExtractedStemcell(services.config.workDir, series, version, {
    listedTarball: release,
  });
  if (previous) return summarize(previous);
  services.log.info(`${series} ${version}: downloading ${displayUrl(release.url)}`);
  const follower = overlapUpload === true ? overlappedUpload(services, release) : undefined;
  return summarize(await extract(services, release, follower));
}

/** Step 2.2: the VHD's non-zero extents in the page blob; a complete blob of the same image is kept. */
export async function uploadVhd(
  services: MirrorServices,
  { series, version, imageSha256 }: StepInputs['uploadVhd'],
): Promise<StepOutputs['uploadVhd']> {
  const { config, vhdContainer, log } = services;
  requireConfiguredStemcell(config, series, version);
  const release = await boshioRelease(config, series, version);
  const blobName = vhdBlobName(series, version);
  const done = await findCompletedVhdBlob(vhdContainer, blobName, imageSha256);
  if (done?.metadata[MANIFEST_METADATA] !== undefined) {
    log.info(`${series} ${version}: ${done.blobUrl} already holds this VHD`);
    const dataBytes = Number(done.metadata['data_bytes'] ?? '0');
    return { blobUrl: done.blobUrl, bytesUploaded: 0, dataBytes, alreadyComplete: true };
  }
  const local = await localStemcell(services, release, imageSha256);
  const metadata = {
    stemcell_series: series,
    stemcell_version: version,
    source_url: displayUrl(release.url),
    tarball_sha256: local.tarballSha256,
    image_sha1: local.imageSha1,
    image_sha256: local.imageSha256,
    data_bytes: String(local.dataBytes),
    [MANIFEST_METADATA]: manifestMetadata(local.manifest),
  };
  if (done) {
    // Uploaded before later steps read the manifest from the blob: record it, the pages are there.
    await vhdContainer.getPageBlobClient(blobName).setMetadata({ ...done.metadata, ...metadata });
    return { blobUrl: done.blobUrl, bytesUploaded: 0, dataBytes: local.dataBytes, alreadyComplete: true };
  }
  const uploaded = await uploadSparseVhd({
    container: vhdContainer,
    blobName,
    vhdPath: local.vhdPath,
    extents: await readExtents(local.extentsPath),
    size: local.vhdSize,
    metadata,
    concurrency: config.uploadConcurrency,
    onProgress: (bytes, total) => services.onProgress?.({ series, version, phase: 'upload', bytes, total }),
  });
  if (uploaded.replacedBecause)
    log.warn(`${series} ${version}: ${blobName}: replaced an existing blob: ${uploaded.replacedBecause}`);
  return {
    blobUrl: uploaded.blobUrl,
    bytesUploaded: uploaded.bytesUploaded,
    dataBytes: uploaded.dataBytes,
    alreadyComplete: uploaded.alreadyComplete,
  };
}

/** Last: the version's temp files, whatever happened before. */
export async function cleanup(
  { config }: MirrorServices,
  { series, version }: StepInputs['cleanup'],
): Promise<StepOutputs['cleanup']> {
  requireConfiguredStemcell(config, series, version);
  await removeStemcellWorkFiles(config.workDir, series, version);
  return { removed: true };
}
