/**
 * The workflow's activities: each one first looks at what already exists and does only what is
 * missing, so running it twice (as Durable Functions may) gives the same result. Permanent failures come
 * back as `{ ok: false }` values; transient ones are thrown, for the caller's retry policy.
 */

import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { PageBlobClient } from '@azure/storage-blob';
import { listStemcellReleases } from './boshio.js';
import type { StemcellRelease } from './boshio.js';
import { ConfigError, loadConfig, type MirrorConfig } from './config.js';
import { signInErrorOf } from './credentials.js';
import { decideExistingVersion, isFromAnotherTool, UNTAGGED_FROM_ANOTHER_TOOL } from './existing-version.js';
import {
  MAX_TAG_VALUE,
  MIRROR_NOTIFIED_TAG,
  MIRROR_STEMCELL_REFERENCE,
  imageDefinitionFor,
  imageVersionTags,
  isCreatedByMirror,
  stemcellReferencesWith,
} from './cpi.js';
import { errorMessage, isTransientError } from './failures.js';
import { GalleryError } from './gallery-error.js';
import type { ImageVersionState } from './gallery.js';
import { displayUrl } from './https-fetch.js';
import type { StemcellManifest } from './manifest.js';
import { notifyStemcellPublished } from './notify.js';
import { NOTIFICATION_RECORD_PREFIX } from './notification-record.js';
import { findCompletedVhdBlob, uploadSparseVhd, vhdBlobName } from './pageblob.js';
import { planRequestedVersion, planSeries, type GalleryVersionSummary } from './plan.js';
import { runLogLine, runRecordOf, writeRunRecord } from './run-record.js';
import {
  MANIFEST_METADATA,
  boshioRelease,
  manifestMetadata,
  requireConfiguredSeries,
  requireConfiguredStemcell,
  requireSeriesDefinition,
  uploadedStemcell,
} from './provenance.js';
import {
  announceSettings,
  createMirrorServices,
  monitorSettings,
  seriesLockWait,
  type Logger,
  type MirrorServices,
} from './services.js';
import {
  downloadAndExtractStemcell,
  findExtractedStemcell,
  removeStemcellWorkFiles,
  type ExtractedStemcell,
} from './stemcell.js';
import { describeHolder, requireClaim, type SeriesLockClaim } from './series-lock.js';
import { compareSourceBlob, isBlobOfThisCloud, unreadableSourceBlob } from './source-blob.js';
import { readExtents } from './vhd.js';
import { galleryVersionName } from './versions.js';
import type {
  ExtractedStemcellSummary,
  StemcellRef,
  StepInputs,
  StepName,
  StepOutcome,
  StepOutputs,
  UnderSeriesLock,
} from './workflow.js';

/** Said of a director's version whose stemcell_references cannot take the mirror's entry. */
const REFERENCES_FULL =
  `its stemcell_references has no room for ${MIRROR_STEMCELL_REFERENCE} within Azure's ${MAX_TAG_VALUE} ` +
  "characters; left as the directors wrote it, so the last director's delete-stemcell may delete the version";

/** A transient condition: the retry policy tries the step again later. */
class TryAgainLater extends Error {
  readonly transient = true;
}

/** What planning needs of one gallery version; `status` plans with it too, so both always agree. */
export function summaryOf(
  version: ImageVersionState & { definitionName: string },
  adoptUntagged: boolean,
): GalleryVersionSummary {
  const summary: GalleryVersionSummary = {
    name: version.name,
    provisioningState: version.provisioningState,
    createdByMirror: isCreatedByMirror(version.tags),
  };
  const gone = version.provisioningState === 'Failed' || version.provisioningState === 'Deleting';
  if (!gone && adoptUntagged && isFromAnotherTool(version.tags)) {
    summary.adoptable = {
      definitionName: version.definitionName,
      ...(version.sourceUri !== undefined ? { blobUrl: version.sourceUri } : {}),
    };
    return summary;
  }
  // Not finished until the mirror recorded its notification: versions it created whose run stopped early,
  // and versions a director created that the mirror has not adopted yet (or must refuse, visibly: one
  // another tool made is reported once per run, by the notify step).
  if (!gone && version.tags[MIRROR_NOTIFIED_TAG] === undefined) {
    summary.unfinished = {
      definitionName: version.definitionName,
      ...(version.sourceUri !== undefined ? { blobUrl: version.sourceUri } : {}),
    };
  }
  return summary;
}

/** Retries a small write a few times in place: re-running the whole step would dispatch again. */
async function withPatience<T>(attempts: number, work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= attempts || !isTransientError(error)) throw error;
      await sleep(2 ** attempt * 1000);
    }
  }
}

export type MirrorSteps = {
  [N in StepName]: (input: StepInputs[N] & UnderSeriesLock) => Promise<StepOutcome<StepOutputs[N]>>;
};

async function outcome<T>(log: Logger, work: () => Promise<T>): Promise<StepOutcome<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    // Nobody signed in: one line for the result, the credential chain's answers for whoever asks.
    const signIn = signInErrorOf(error);
    if (signIn !== undefined) {
      log.detail?.(signIn.details);
      return { ok: false, error: signIn.message };
    }
    if (isTransientError(error)) throw error;
    return { ok: false, error: errorMessage(error) };
  }
}

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

function extract(services: MirrorServices, release: StemcellRelease): Promise<ExtractedStemcell> {
  return downloadAndExtractStemcell(release, {
    workDir: services.config.workDir,
    timeoutMs: services.config.httpTimeoutMs,
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
async function localStemcell(
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

/** A lock claim on a series the mirror is configured for, with a GUID lease id; refused otherwise. */
function configuredClaim(config: MirrorConfig, claim: unknown): SeriesLockClaim {
  requireConfiguredSeries(config, (claim as { series?: unknown } | undefined)?.series);
  return requireClaim(claim, undefined);
}

/** First: the series for this run, or who holds it; a holder without heartbeat for the bound is taken over. */
export async function acquireSeriesLock(
  { config, seriesLocks, log }: MirrorServices,
  { claim: named, run }: StepInputs['acquireSeriesLock'],
): Promise<StepOutputs['acquireSeriesLock']> {
  const claim = configuredClaim(config, named);
  const taken = await seriesLocks.acquire(claim, `${String(run)} (pid ${process.pid} on ${hostname()})`);
  if (!taken.acquired) {
    log.info(describeHolder(claim.series, taken));
  } else if (taken.tookOverFrom !== undefined) {
    const dead = taken.tookOverFrom;
    log.warn(
      `took over series ${claim.series} from ${dead.holder} (held since ${dead.since}, no heartbeat since ` +
        `${dead.heartbeatAt}, more than BASM_SERIES_LOCK_STALE_SECONDS ${config.seriesLockStaleSeconds} s)`,
    );
  }
  return { ...taken, wait: seriesLockWait(config) };
}

/** Last: the series back, so the next run need not wait for the lock to go stale. */
export async function releaseSeriesLock(
  { config, seriesLocks, log }: MirrorServices,
  { claim: named }: StepInputs['releaseSeriesLock'],
): Promise<StepOutputs['releaseSeriesLock']> {
  const claim = configuredClaim(config, named);
  const released = await seriesLocks.release(claim);
  if (!released) log.warn(`series ${claim.series}: another run had taken it over before this run ended`);
  return { released };
}

/** Step 1: what bosh.io has that the gallery lacks, and which of it this run mirrors. */
export async function resolveVersions(
  { config, gallery, notificationRecords, log }: MirrorServices,
  { series, version }: StepInputs['resolveVersions'],
): Promise<StepOutputs['resolveVersions']> {
  requireConfiguredSeries(config, series);
  const releases = await listStemcellReleases(config.boshioUrl, series, {
    timeoutMs: config.httpTimeoutMs,
    all: version !== undefined,
  });
  const versions = await gallery.listSeriesVersions(series, config.gallery);
  const inGallery = await Promise.all(
    versions.map(async (v) => {
      const summary = summaryOf(v, config.adoptUntagged);
      // A run whose tag Azure refused recorded its notification in the mirror's storage: finished too.
      if (summary.unfinished && (await notificationRecords.find(v.definitionName, v.name)) !== undefined) {
        delete summary.unfinished;
      }
      return summary;
    }),
  );
  const plan =
    version !== undefined
      ? planRequestedVersion(series, releases, inGallery, version)
      : planSeries(series, releases, inGallery, config.maxVersionsPerRun);
  const newest = versions.find((v) => v.name === galleryVersionName(plan.newest.version));
  for (const p of plan.mirror) log.info(`${series} ${p.release.version}: to mirror (${p.reason})`);
  if (plan.deferred.length > 0) {
    log.info(`${series}: ${plan.deferred.join(', ')} left for a later run (BASM_MAX_VERSIONS_PER_RUN)`);
  }
  return newest?.sourceUri !== undefined ? { ...plan, newestBlobUrl: newest.sourceUri } : plan;
}

/** Step 2.1: the stemcell's root.vhd on local disk, reusing an extraction of the very same tarball. */
export async function downloadAndExtract(
  services: MirrorServices,
  { series, version }: StepInputs['downloadAndExtract'],
): Promise<StepOutputs['downloadAndExtract']> {
  requireConfiguredStemcell(services.config, series, version);
  const release = await boshioRelease(services.config, series, version);
  // Reuse only an extraction of the very tarball bosh.io lists now.
  const previous = await findExtractedStemcell(services.config.workDir, series, version, {
    listedTarball: release,
  });
  if (previous) return summarize(previous);
  services.log.info(`${series} ${version}: downloading ${displayUrl(release.url)}`);
  return summarize(await extract(services, release));
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
  const state = await services.gallery.ensureImageDefinition(spec);
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
    monitor: monitorSettings(config),
  };
}

/** Step 2.6: the GitHub dispatch (when configured), recorded on the version so it is sent once. */
export async function notify(
  { config, gallery, notificationRecords, log }: MirrorServices,
  { series, version: stemcellVersion, definitionName: named }: StepInputs['notify'],
): Promise<StepOutputs['notify']> {
  requireConfiguredStemcell(config, series, stemcellVersion);
  const definitionName = requireSeriesDefinition(config, series, named);
  const galleryVersion = galleryVersionName(stemcellVersion);
  const where = `image version ${definitionName}/${galleryVersion}`;
  const prefix = `${series} ${stemcellVersion}: `;
  const version = await gallery.getImageVersion(definitionName, galleryVersion);
  if (!version) throw new Error(`${where} disappeared before its run finished`);
  if (isFromAnotherTool(version.tags)) throw new Error(`${where} ${UNTAGGED_FROM_ANOTHER_TOOL}`);
  // Announced already (a step run again, a run that had to record it in the mirror's storage): never twice.
  const announced =
    version.tags[MIRROR_NOTIFIED_TAG] ?? (await notificationRecords.find(definitionName, galleryVersion));
  if (announced !== undefined) {
    log.info(
      `${prefix}${where}: already announced (${MIRROR_NOTIFIED_TAG} ${announced}); not dispatching again`,
    );
    return { notified: false };
  }
  let dispatched: string | undefined;
  if (config.notify) {
    await notifyStemcellPublished(config.notify, {
      galleryName: config.galleryName,
      imageName: definitionName,
      imageVersion: galleryVersion,
      subscriptionId: config.subscriptionId,
      resourceGroup: config.resourceGroup,
    });
    dispatched = new Date().toISOString();
    log.info(
      `${prefix}dispatched ${config.notify.owner}/${config.notify.repo} ${config.notify.workflow} for ${definitionName}/${galleryVersion}`,
    );
  }
  // Recorded on the version (with the mirror's reference, for a version a director created), so a
  // run that stops before this point is finished by the next one.
  const wanted = stemcellReferencesWith(version.tags);
  const references = wanted !== undefined && wanted.length <= MAX_TAG_VALUE ? wanted : undefined;
  if (wanted !== undefined && references === undefined) log.warn(`${where}: ${REFERENCES_FULL}`);
  const notified = dispatched ?? 'off';
  const record = {
    [MIRROR_NOTIFIED_TAG]: notified,
    ...(references !== undefined ? { stemcell_references: references } : {}),
  };
  try {
    await withPatience(3, () => gallery.tagImageVersion(definitionName, galleryVersion, record));
  } catch (error) {
    // Nothing sent yet and Azure only busy: the step's retry writes the tag later.
    if (dispatched === undefined && isTransientError(error)) throw error;
    // Azure refuses the tag (50 tags already, a limit) or stays unavailable: the mirror's own record, so the
    // next run takes the version as finished. Failing the step instead would make its retry dispatch again.
    try {
      await notificationRecords.record(definitionName, galleryVersion, notified, errorMessage(error));
      log.warn(
        `${prefix}${where}: Azure did not take the ${MIRROR_NOTIFIED_TAG} tag (${errorMessage(error)}); ` +
          `recorded in the mirror's storage instead (${NOTIFICATION_RECORD_PREFIX}${definitionName}/${galleryVersion})`,
      );
    } catch (recordError) {
      if (dispatched === undefined) throw error;
      log.warn(
        `${prefix}${where}: dispatched, but recording it failed on the version (${errorMessage(error)}) and in the ` +
          `mirror's storage (${errorMessage(recordError)}); the next run may dispatch again`,
      );
    }
  }
  return { notified: dispatched !== undefined };
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

/**
 * A step of a run that holds its series runs only while the run still holds it: a heartbeat first (a run that
 * lost the series stops here, before it uploads, creates or dispatches anything), more while it runs.
 */
async function underSeriesLock<I, O>(
  services: MirrorServices,
  input: I & UnderSeriesLock,
  step: (services: MirrorServices, input: I) => Promise<O>,
): Promise<O> {
  const { lock, ...own } = input;
  if (lock === undefined) return step(services, input);
  // A claim is checked, never trusted: only the current lease on this step's own series' lock lets it act.
  const claim = requireClaim(lock, (own as { series?: unknown }).series);
  // SeriesLockLost is permanent: the step fails as a value, and the run ends without retrying it.
  return services.seriesLocks.holdDuring(
    claim,
    () => step(services, own as I),
    (message) => services.log.warn(message),
  );
}

/** Last: the run's record for `status`, and its log line for the alerts in infra/ (see runLogLine). */
export async function recordRun(
  { config, vhdContainer, log }: MirrorServices,
  { series, runner, startedAt, results }: StepInputs['recordRun'],
): Promise<StepOutputs['recordRun']> {
  // An orchestration can be started by hand with any input: only a configured series' record is written.
  requireConfiguredSeries(config, series);
  const record = runRecordOf(series, runner, startedAt, new Date().toISOString(), results);
  const line = runLogLine(record);
  if (record.outcome === 'failed') log.warn(line);
  else log.info(line);
  await writeRunRecord(vhdContainer, record);
  return { outcome: record.outcome };
}

/** The activities, bound to one set of clients. */
export function mirrorSteps(services: MirrorServices): MirrorSteps {
  const bind =
    <I, O>(step: (services: MirrorServices, input: I) => Promise<O>) =>
    (input: I & UnderSeriesLock): Promise<StepOutcome<O>> =>
      outcome(services.log, () => underSeriesLock(services, input, step));
  return {
    acquireSeriesLock: bind(acquireSeriesLock),
    releaseSeriesLock: bind(releaseSeriesLock),
    resolveVersions: bind(resolveVersions),
    downloadAndExtract: bind(downloadAndExtract),
    uploadVhd: bind(uploadVhd),
    ensureImageDefinition: bind(ensureImageDefinition),
    createImageVersion: bind(createImageVersion),
    adoptImageVersion: bind(adoptImageVersion),
    getImageVersionState: bind(getImageVersionState),
    notify: bind(notify),
    cleanup: bind(cleanup),
    recordRun: bind(recordRun),
  };
}

/**
 * Runs steps by name, as the activities do: the settings are read and the clients made on first use (not
 * at load, so a bad setting fails the step that needs it, as a permanent failure: retrying cannot fix it),
 * then kept for every later step; each step logs to the logger it is given.
 */
export function createStepRunner(
  env: NodeJS.ProcessEnv,
): (name: StepName, input: unknown, log: Logger) => Promise<StepOutcome<unknown>> {
  let shared: MirrorServices | undefined;
  return async (name, input, log) => {
    if (shared === undefined) {
      let config;
      try {
        config = loadConfig(env);
      } catch (error) {
        if (error instanceof ConfigError) return { ok: false, error: error.message };
        throw error;
      }
      // Said once per worker, not once per version.
      announceSettings(config, log);
      shared = createMirrorServices(config, log);
    }
    // The Functions log keeps the details a terminal shows only with --verbose.
    const detailed: Logger = {
      info: (message) => log.info(message),
      warn: (message) => log.warn(message),
      detail: (message) => (log.detail ? log.detail(message) : log.info(message)),
    };
    const step = mirrorSteps({ ...shared, log: detailed })[name] as (
      input: unknown,
    ) => Promise<StepOutcome<unknown>>;
    return step(input);
  };
}
