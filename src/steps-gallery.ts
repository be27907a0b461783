/**
 * The steps that make the gallery's image definition and version, or adopt one another tool made, read its
 * state, and extend one the mirror made to new target regions.
 */

import { PageBlobClient } from '@azure/storage-blob';
import {
  MAX_TAG_VALUE,
  MIRROR_NOTIFIED_TAG,
  MIRROR_STEMCELL_REFERENCE,
  imageDefinitionFor,
  imageVersionTags,
  isCreatedByMirror,
} from './cpi.js';
import { decideExistingVersion, isFromAnotherTool } from './existing-version.js';
import { isTransientError } from './failures.js';
import { GalleryError } from './gallery-error.js';
import { displayUrl } from './https-fetch.js';
import type { StemcellManifest } from './manifest.js';
import {
  boshioRelease,
  requireConfiguredStemcell,
  requireSeriesDefinition,
  uploadedStemcell,
} from './provenance.js';
import { monitorSettings, type MirrorServices } from './services.js';
import { compareSourceBlob, isBlobOfThisCloud, unreadableSourceBlob } from './source-blob.js';
import type { ExtractedStemcell } from './stemcell.js';
import { localStemcell } from './steps-stemcell.js';
import { describeChange, isNoChange } from './target-regions.js';
import { readExtents } from './vhd.js';
import { galleryVersionName } from './versions.js';
import type { StemcellRef, StepInputs, StepOutputs } from './workflow-contract.js';

/** Said of a director's version whose stemcell_references cannot take the mirror's entry. */
export const REFERENCES_FULL =
  `its stemcell_references has no room for ${MIRROR_STEMCELL_REFERENCE} within Azure's ${MAX_TAG_VALUE} ` +
  "characters; left as the directors wrote it, so the last director's delete-stemcell may delete the version";

/** A transient condition: the retry policy tries the step again later. */
class TryAgainLater extends Error {
  readonly transient = true;
}

/** The mirror's upload of the stemcell: what definitions and versions are made from. */
function uploadOf({ config, vhdContainer }: MirrorServices, { series, version }: StemcellRef) {
  requireConfiguredStemcell(config, series, version);
  return uploadedStemcell(vhdContainer, series, version, config.httpTimeoutMs);
}

/** Step 2.3: the image definition the stemcell belongs in, created when absent. */
export async function ensureImageDefinition(
  services: MirrorServices,
  ref: StepInputs['ensureImageDefinition'],
): Promise<StepOutputs['ensureImageDefinition']> {
  const { manifest } = await uploadOf(services, ref);
  const spec = imageDefinitionFor(manifest, services.config.gallery);
  const state = await services.gallery.ensureImageDefinition(spec, `${ref.series} ${ref.version}`);
  if (state === 'created')
    services.log.info(`${ref.series} ${ref.version}: created image definition ${spec.name}`);
  return { definitionName: spec.name, created: state === 'created' };
}

/** What an adopted version is tagged from: the verified stemcell, however the step came by it. */
interface VerifiedStemcell {
  manifest: StemcellManifest;
  imageSha256: string;
  sourceUrl: string;
}

/**
 * Takes over an untagged version another tool made (BASM_ADOPT_UNTAGGED): its source blob, where it still
 * exists, must hold exactly the verified root.vhd; then the version gets the tags the mirror would have
 * given it (the CPI's, image_sha256, the mirror's stemcell_references), recorded as finished (the other tool
 * announced it when it made it). The version itself is not recreated. `sourceUri` is the gallery's word.
 */
async function adoptUntagged(
  services: MirrorServices,
  { series, version }: StemcellRef,
  { definitionName, galleryVersion }: { definitionName: string; galleryVersion: string },
  sourceUri: string | undefined,
  verified: VerifiedStemcell,
  localVhd: () => Promise<ExtractedStemcell>,
): Promise<void> {
  const { config, gallery, log, vhdContainer } = services;
  const subject = `${series} ${version}`;
  const where = `image version ${definitionName}/${galleryVersion}`;
  if (sourceUri !== undefined) {
    // The mirror's credential goes only to a storage account of its own cloud, never to any host a version names.
    if (!isBlobOfThisCloud(sourceUri, config.storageBlobEndpoint)) {
      throw new Error(
        `${where} is untagged and its source blob ${displayUrl(sourceUri)} is not in a storage account of ` +
          `this cloud (${new URL(config.storageBlobEndpoint).host}); refusing to send the mirror's credential there`,
      );
    }
    const local = await localVhd();
    // The blob may live in another account (the other tool's): read it with the mirror's own identity.
    const source = new PageBlobClient(sourceUri, vhdContainer.credential);
    let comparison;
    try {
      comparison = await compareSourceBlob(source, {
        vhdPath: local.vhdPath,
        size: local.vhdSize,
        extents: await readExtents(local.extentsPath),
      });
    } catch (error) {
      if (isTransientError(error)) throw error;
      throw unreadableSourceBlob(`${where} is untagged; its source blob ${displayUrl(sourceUri)}`, error);
    }
    if (comparison.outcome === 'different') {
      throw new Error(
        `${where} is untagged and its source blob ${displayUrl(sourceUri)} is not ${subject} ` +
          `from bosh.io (${comparison.reason}); refusing to adopt it: delete the version, and the next run mirrors it afresh`,
      );
    }
    log.info(
      comparison.outcome === 'same'
        ? `${subject}: ${where}: its source blob holds the verified root.vhd (${comparison.bytesCompared} bytes compared)`
        : `${subject}: ${where}: its source blob ${displayUrl(sourceUri)} is gone; adopting on the verified download`,
    );
  }
  const tags = imageVersionTags({
    manifest: verified.manifest,
    imageSha256: verified.imageSha256,
    galleryName: config.galleryName,
    definitionName,
    sourceUrl: displayUrl(verified.sourceUrl),
  });
  await gallery.tagImageVersion(definitionName, galleryVersion, {
    ...tags,
    [MIRROR_NOTIFIED_TAG]: 'adopted',
  });
  log.info(`${subject}: ${where} adopted: tagged as the mirror and the BOSH CPI would have`);
}

/**
 * Step 2.4: start the image version's creation (not waiting for it), or use the one already there. The PUT
 * creates only (If-None-Match): a version someone made between the look and the PUT is decided about again.
 */
export async function createImageVersion(
  services: MirrorServices,
  ref: StepInputs['createImageVersion'],
): Promise<StepOutputs['createImageVersion']> {
  const upload = await uploadOf(services, ref);
  const definitionName = imageDefinitionFor(upload.manifest, services.config.gallery).name;
  const target: VersionTarget = {
    ref,
    definitionName,
    galleryVersion: galleryVersionName(ref.version),
    upload,
  };
  const where = `image version ${definitionName}/${target.galleryVersion}`;
  const first = await useOrCreateVersion(services, target, where);
  if (first !== 'taken') return first;
  services.log.info(
    `${ref.series} ${ref.version}: ${where} created by someone else since the mirror looked; deciding again`,
  );
  const second = await useOrCreateVersion(services, target, where);
  if (second !== 'taken') return second;
  throw new TryAgainLater(`${where} keeps being created by someone else; trying again later`);
}

interface VersionTarget {
  ref: StemcellRef;
  definitionName: string;
  galleryVersion: string;
  upload: Awaited<ReturnType<typeof uploadOf>>;
}

/** One look at the gallery's version and what it calls for; `taken` when the create lost a race. */
async function useOrCreateVersion(
  services: MirrorServices,
  { ref, definitionName, galleryVersion, upload }: VersionTarget,
  where: string,
): Promise<StepOutputs['createImageVersion'] | 'taken'> {
  const { config, gallery, notificationRecords, log } = services;
  const subject = `${ref.series} ${ref.version}`;
  const existing = await gallery.getImageVersion(definitionName, galleryVersion);
  const decision = decideExistingVersion(existing, upload.imageSha256, {
    adoptUntagged: config.adoptUntagged,
  });
  switch (decision.action) {
    case 'adopt': {
      // Made by another tool since the plan: adopted here as the adoptImageVersion step would.
      const release = await boshioRelease(config, ref.series, ref.version);
      await adoptUntagged(services, ref, { definitionName, galleryVersion }, decision.sourceUri, upload, () =>
        localStemcell(services, release, upload.imageSha256),
      );
      return { outcome: 'exists', provisioningState: 'Succeeded', definitionName };
    }
    case 'wait':
      throw new TryAgainLater(`${where} ${decision.reason}`);
    case 'refuse':
      throw new Error(`${where} ${decision.reason}`);
    case 'use':
      // A version a director created: add the mirror's reference so no director's delete-stemcell removes it.
      if (decision.references !== undefined) {
        await gallery.tagImageVersion(definitionName, galleryVersion, {
          stemcell_references: decision.references,
        });
        log.info(`${subject}: ${where} adopted (added ${MIRROR_STEMCELL_REFERENCE} to stemcell_references)`);
      }
      if (decision.referencesFull) log.warn(`${where}: ${REFERENCES_FULL}`);
      return {
        outcome: decision.finished ? 'exists' : 'started',
        provisioningState: decision.provisioningState,
        definitionName,
      };
    case 'recreate':
      log.warn(`${subject}: ${where} ${decision.reason}`);
      await gallery.deleteImageVersion(definitionName, galleryVersion);
      break;
    case 'create':
      break;
  }
  // A new version of that name has not been announced, whatever was recorded of an earlier one.
  await notificationRecords.forget(definitionName, galleryVersion);
  try {
    await gallery.startImageVersion({
      definitionName,
      versionName: galleryVersion,
      blobUrl: upload.blobUrl,
      tags: imageVersionTags({
        manifest: upload.manifest,
        imageSha256: upload.imageSha256,
        galleryName: config.galleryName,
        definitionName,
        sourceUrl: displayUrl(upload.sourceUrl),
      }),
    });
  } catch (error) {
    if (error instanceof GalleryError && error.code === 'VersionExists') return 'taken';
    throw error;
  }
  log.info(`${subject}: ${where} creation started`);
  return { outcome: 'started', provisioningState: 'Creating', definitionName };
}

/**
 * Step 2.4, for an untagged version another tool made: verify the stemcell and adopt the version where it
 * is. Whether to adopt, which version and which source blob are decided here, from the settings and the
 * gallery: the input only names the stemcell.
 */
export async function adoptImageVersion(
  services: MirrorServices,
  ref: StepInputs['adoptImageVersion'],
): Promise<StepOutputs['adoptImageVersion']> {
  const { config, gallery } = services;
  const { series, version } = ref;
  requireConfiguredStemcell(config, series, version);
  const subject = `${series} ${version}`;
  if (!config.adoptUntagged) {
    throw new Error(`${subject}: BASM_ADOPT_UNTAGGED is not true; refusing to adopt an image version`);
  }
  const release = await boshioRelease(config, series, version);
  const local = await localStemcell(services, release);
  const galleryVersion = galleryVersionName(version);
  const own = imageDefinitionFor(local.manifest, config.gallery).name;
  const named = (await gallery.listSeriesVersions(series, config.gallery)).filter(
    (v) => v.name === galleryVersion,
  );
  // Where the mirror would have made it first, then wherever the other tool put it.
  const existing =
    named.find((v) => v.definitionName === own && isFromAnotherTool(v.tags)) ??
    named.find((v) => isFromAnotherTool(v.tags)) ??
    named.find((v) => v.definitionName === own);
  if (existing === undefined) {
    throw new Error(
      `${subject}: image version ${galleryVersion} is in none of the series' definitions any more; the next run decides again`,
    );
  }
  const { definitionName } = existing;
  const where = `image version ${definitionName}/${galleryVersion}`;
  const decision = decideExistingVersion(existing, local.imageSha256, { adoptUntagged: true });
  const adopted = {
    definitionName,
    ...(existing.sourceUri !== undefined ? { blobUrl: existing.sourceUri } : {}),
  };
  switch (decision.action) {
    case 'adopt':
      await adoptUntagged(
        services,
        ref,
        { definitionName, galleryVersion },
        decision.sourceUri,
        { manifest: local.manifest, imageSha256: local.imageSha256, sourceUrl: release.url },
        () => Promise.resolve(local),
      );
      return adopted;
    case 'refuse':
      throw new Error(`${where} ${decision.reason}`);
    case 'use':
      // This very image, finished: adopted by an earlier attempt of this step (or another run).
      if (decision.finished) return adopted;
      break;
    default:
      break;
  }
  throw new Error(`${where} changed while this run was verifying the stemcell; the next run decides again`);
}

/** Step 2.5: Azure's provisioning state of the version being created, and how long to wait for it. */
export async function getImageVersionState(
  { config, gallery }: MirrorServices,
  { series, version, definitionName }: StepInputs['getImageVersionState'],
): Promise<StepOutputs['getImageVersionState']> {
  requireConfiguredStemcell(config, series, version);
  const definition = requireSeriesDefinition(config, series, definitionName);
  const galleryVersion = galleryVersionName(version);
  const state = await gallery.getImageVersion(definition, galleryVersion);
  if (!state)
    throw new Error(`image version ${definition}/${galleryVersion} disappeared while it was being created`);
  return {
    provisioningState: state.provisioningState,
    ...(state.errorMessage !== undefined ? { errorMessage: state.errorMessage } : {}),
    ...(state.sourceUri !== undefined ? { blobUrl: state.sourceUri } : {}),
    ...(state.regions !== undefined && state.regions.length > 0 ? { regions: state.regions } : {}),
    monitor: monitorSettings(config),
    ...(config.deleteSourceBlob ? { deleteSourceBlob: true as const } : {}),
  };
}

/**
 * Gives a version this mirror created the configured target regions it lacks (BASM_TARGET_REGIONS): an
 * update of its publishing profile, never a recreation, never a region removed. The input's definition (the
 * plan's) must be one of the series' and the version there one whose tags say the mirror created it; a
 * director's is never touched. Running it again once the update is sent changes nothing, so the wait that follows
 * is the same.
 */
export async function extendImageVersion(
  services: MirrorServices,
  input: StepInputs['extendImageVersion'],
): Promise<StepOutputs['extendImageVersion']> {
  const { config, gallery, log } = services;
  const { series, version } = input;
  requireConfiguredStemcell(config, series, version);
  const galleryVersion = galleryVersionName(version);
  const definitionName =
    input.definitionName !== undefined
      ? requireSeriesDefinition(config, series, input.definitionName)
      : await ownDefinitionOf(services, series, galleryVersion);
  const own = await gallery.getImageVersion(definitionName, galleryVersion);
  if (own === undefined || !isCreatedByMirror(own.tags)) {
    throw new Error(
      `${series} ${version}: no image version ${definitionName}/${galleryVersion} this mirror created is in the ` +
        'gallery; nothing to extend',
    );
  }
  const change = await gallery.extendImageVersion(definitionName, galleryVersion);
  const extended = !isNoChange(change);
  if (extended) {
    log.info(
      `${series} ${version}: image version ${definitionName}/${galleryVersion}: ${describeChange(change)}`,
    );
  }
  return { definitionName, extended, change: describeChange(change) };
}

/** For an input written before the plan passed the definition: the one holding the mirror's version of that name. */
async function ownDefinitionOf(
  { config, gallery }: MirrorServices,
  series: string,
  galleryVersion: string,
): Promise<string> {
  const own = (await gallery.listSeriesVersions(series, config.gallery)).find(
    (v) => v.name === galleryVersion && isCreatedByMirror(v.tags),
  );
  if (own === undefined) {
    throw new Error(
      `${series}: no image version ${galleryVersion} this mirror created is in the gallery; nothing to extend`,
    );
  }
  return own.definitionName;
}
