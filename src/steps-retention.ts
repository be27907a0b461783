/**
 * The steps that let the gallery's storage go: retention's deletion of an old version (BASM_KEEP_VERSIONS),
 * and a created version's source blob (BASM_DELETE_SOURCE_BLOB). Each decides again on what it reads now,
 * never on the plan's snapshot: a director may have adopted the version since.
 */

import type { ContainerClient } from '@azure/storage-blob';
import type { ImageVersionState } from './gallery.js';
import { requireConfiguredStemcell, requireSeriesDefinition } from './provenance.js';
import { decideRetention, deletionBlocker, ownSourceVersion, type RetentionCandidate } from './retention.js';
import type { MirrorServices } from './services.js';
import { vhdBlobName } from './pageblob.js';
import { galleryVersionName } from './versions.js';
import type { StepInputs, StepOutputs } from './workflow-contract.js';

/** A gallery version of the series as retention sees it. */
export function retentionCandidate(v: ImageVersionState & { definitionName: string }): RetentionCandidate {
  return {
    definitionName: v.definitionName,
    galleryVersion: v.name,
    provisioningState: v.provisioningState,
    tags: v.tags,
    ...(v.sourceUri !== undefined ? { sourceUri: v.sourceUri } : {}),
  };
}

/** Deletes the mirror's own page blob of the stemcell; true when it is gone (deleted now or before). */
async function deleteOwnBlob(container: ContainerClient, series: string, version: string): Promise<boolean> {
  await container.getPageBlobClient(vhdBlobName(series, version)).deleteIfExists();
  return true;
}

/**
 * After a run that mirrored its plan: delete one version retention chose, and its source blob. Only under the
 * series lock (steps.ts refuses it otherwise); it lists the series again and deletes only what decideRetention
 * still chooses, reading the version's tags once more right before the DELETE. Already gone: done.
 */
export async function deleteImageVersion(
  { config, gallery, vhdContainer, log }: MirrorServices,
  { series, version, definitionName: named }: StepInputs['deleteImageVersion'],
): Promise<StepOutputs['deleteImageVersion']> {
  requireConfiguredStemcell(config, series, version);
  const definitionName = requireSeriesDefinition(config, series, named);
  const galleryVersion = galleryVersionName(version);
  const where = `image version ${definitionName}/${galleryVersion}`;
  const listed = await gallery.listSeriesVersions(series, config.gallery);
  const sameName = listed.filter((v) => v.name === galleryVersion);
  if (sameName.length === 0) {
    // A retry after the version went: its blob may not have; nothing of that name uses it any more.
    const blobDeleted = await deleteOwnBlob(vhdContainer, series, version);
    return { deleted: true, blobDeleted, reason: 'already deleted' };
  }
  const rules = { keep: config.keepVersions, containerUrl: vhdContainer.url };
  const chosen = decideRetention(series, listed.map(retentionCandidate), rules).find(
    (d) => d.definitionName === definitionName && d.galleryVersion === galleryVersion,
  );
  if (chosen === undefined) {
    const reason = 'kept: retention no longer chooses it (a director uses it, or BASM_KEEP_VERSIONS changed)';
    log.info(`${series} ${version}: ${where} ${reason}`);
    return { deleted: false, blobDeleted: false, reason };
  }
  // The list is a moment old: the version's own tags, once more, as close to the DELETE as ARM allows.
  const current = await gallery.getImageVersion(definitionName, galleryVersion);
  if (current !== undefined) {
    const blocker = deletionBlocker(retentionCandidate({ ...current, definitionName }));
    if (blocker !== undefined) {
      const reason = `kept: ${blocker}`;
      log.info(`${series} ${version}: ${where} ${reason}`);
      return { deleted: false, blobDeleted: false, reason };
    }
    await gallery.deleteImageVersion(definitionName, galleryVersion);
    log.info(`${series} ${version}: ${where} deleted (${chosen.reason})`);
  }
  const blobDeleted = await deleteOwnBlob(vhdContainer, series, version);
  return { deleted: true, blobDeleted, reason: chosen.reason };
}

/**
 * BASM_DELETE_SOURCE_BLOB: once the version is Succeeded (the point the run reports it created), its source
 * blob has served its purpose: delete it, when it is the mirror's own blob of this stemcell. Nothing later
 * reads it for a created version (see docs/operations.md, "Retention"); without the setting it does nothing.
 */
export async function deleteSourceBlob(
  { config, gallery, vhdContainer, log }: MirrorServices,
  { series, version, definitionName: named }: StepInputs['deleteSourceBlob'],
): Promise<StepOutputs['deleteSourceBlob']> {
  requireConfiguredStemcell(config, series, version);
  const definitionName = requireSeriesDefinition(config, series, named);
  if (!config.deleteSourceBlob) return { deleted: false };
  const galleryVersion = galleryVersionName(version);
  const current = await gallery.getImageVersion(definitionName, galleryVersion);
  if (current?.provisioningState !== 'Succeeded') {
    throw new Error(
      `image version ${definitionName}/${galleryVersion} is ${current?.provisioningState ?? 'gone'}; ` +
        'its source blob is kept',
    );
  }
  const own = ownSourceVersion(current.sourceUri, vhdContainer.url, series, galleryVersion);
  if (own === undefined) return { deleted: false };
  await deleteOwnBlob(vhdContainer, series, own);
  log.info(`${series} ${version}: source blob deleted, the version is Succeeded (BASM_DELETE_SOURCE_BLOB)`);
  return { deleted: true };
}
