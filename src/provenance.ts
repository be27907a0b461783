/**
 * Where the steps get what they act on. A step's input only names a stemcell (series and version): anyone
 * holding the task hub's system key can start an orchestration with any input, so what to download comes
 * from the configured bosh.io, what to create from the mirror's own upload, and where to write from the
 * configured gallery's naming, never from the input.
 */

import type { ContainerClient } from '@azure/storage-blob';
import { listStemcellReleases, type StemcellRelease } from './boshio.js';
import type { MirrorConfig } from './config.js';
import { candidateDefinitionNames } from './cpi.js';
import type { StemcellManifest } from './manifest.js';
import { vhdBlobName } from './pageblob.js';
import { isStemcellVersion } from './versions.js';

/** Blob metadata key of the stemcell's manifest (base64 JSON): what later steps build the version from. */
export const MANIFEST_METADATA = 'stemcell_manifest';

/** A series the mirror is configured for; refused otherwise (the settings decide what the gallery holds). */
export function requireConfiguredSeries(config: MirrorConfig, series: unknown): asserts series is string {
  if (typeof series !== 'string' || !config.series.includes(series)) {
    throw new Error(
      `the series is not one this mirror is configured for (BASM_STEMCELL_SERIES: ${config.series.join(', ')}); ` +
        'refusing to work on it',
    );
  }
}

/** A stemcell the mirror may work on: a configured series and a well-formed version; refused otherwise. */
export function requireConfiguredStemcell(config: MirrorConfig, series: unknown, version: unknown): void {
  requireConfiguredSeries(config, series);
  if (typeof version !== 'string' || !isStemcellVersion(version)) {
    throw new Error(
      `${series}: the version is not a stemcell version (digits separated by dots, such as 1.1364)`,
    );
  }
}

/** The release as the configured bosh.io lists it now: its URL and checksums, whatever an input says. */
export async function boshioRelease(
  config: MirrorConfig,
  series: string,
  version: string,
): Promise<StemcellRelease> {
  const releases = await listStemcellReleases(config.boshioUrl, series, {
    timeoutMs: config.httpTimeoutMs,
    all: true,
  });
  const release = releases.find((r) => r.version === version);
  if (release === undefined) throw new Error(`${series} ${version}: bosh.io does not list this version`);
  return release;
}

/** A definition the mirror may write for the series: one of its names under the configured naming. */
export function requireSeriesDefinition(
  config: MirrorConfig,
  series: string,
  definitionName: unknown,
): string {
  if (
    typeof definitionName !== 'string' ||
    !candidateDefinitionNames(series, config.gallery)(definitionName)
  ) {
    throw new Error(
      `${series}: the image definition named in the step's input is not one of this series' definitions in ` +
        `gallery ${config.galleryName}; refusing to touch it`,
    );
  }
  return definitionName;
}

export function manifestMetadata(manifest: StemcellManifest): string {
  return Buffer.from(JSON.stringify(manifest), 'utf8').toString('base64');
}

/** The stemcell as the mirror uploaded it, read back from its complete VHD blob. */
export interface UploadedStemcell {
  blobUrl: string;
  manifest: StemcellManifest;
  imageSha256: string;
  sourceUrl: string;
}

/**
 * The complete upload of `series` `version` in the mirror's container: the only source of the manifest and
 * image digest from which definitions and versions are made (the upload came from bosh.io's tarball).
 */
export async function uploadedStemcell(
  container: ContainerClient,
  series: string,
  version: string,
  timeoutMs: number,
): Promise<UploadedStemcell> {
  const blob = container.getPageBlobClient(vhdBlobName(series, version));
  const missing = (why: string) =>
    new Error(`${series} ${version}: ${blob.url} ${why}; the uploadVhd step makes it, run the mirror again`);
  let metadata: Record<string, string>;
  try {
    metadata = (await blob.getProperties({ abortSignal: AbortSignal.timeout(timeoutMs) })).metadata ?? {};
  } catch (error) {
    if ((error as { statusCode?: unknown }).statusCode === 404) throw missing('does not exist');
    throw error;
  }
  const imageSha256 = metadata['image_sha256'];
  const encoded = metadata[MANIFEST_METADATA];
  if (
    metadata['upload_complete'] !== 'true' ||
    metadata['stemcell_series'] !== series ||
    metadata['stemcell_version'] !== version ||
    imageSha256 === undefined ||
    encoded === undefined
  ) {
    throw missing('is not a complete upload of this stemcell');
  }
  const manifest = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as StemcellManifest;
  if (
    manifest.name !== series ||
    manifest.version !== version ||
    typeof manifest.cloudProperties !== 'object'
  ) {
    throw missing('holds the manifest of another stemcell');
  }
  return { blobUrl: blob.url, manifest, imageSha256, sourceUrl: metadata['source_url'] ?? '' };
}
