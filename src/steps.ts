/**
 * The workflow's activities: each one first looks at what already exists and does only what is
 * missing, so running it twice (as Durable Functions may) gives the same result. Permanent failures come
 * back as `{ ok: false }` values; transient ones are thrown, for the caller's retry policy.
 */

import type { TokenCredential } from '@azure/identity';
import { setTimeout as sleep } from 'node:timers/promises';
import { ContainerClient } from '@azure/storage-blob';
import { listStemcellReleases } from './boshio.js';
import type { StemcellRelease } from './boshio.js';
import type { MirrorConfig } from './config.js';
import { storageAccountId } from './config.js';
import { createAzureCredential } from './credentials.js';
import {
  MIRROR_NOTIFIED_TAG,
  MIRROR_STEMCELL_REFERENCE,
  imageDefinitionFor,
  imageVersionTags,
  isAdoptableByCpi,
  isCreatedByMirror,
  stemcellReferencesWith,
} from './cpi.js';
import { errorMessage, isTransientError } from './failures.js';
import { ComputeGallery, type ComputeGalleryOptions, type ImageVersionState } from './gallery.js';
import { notifyStemcellPublished } from './notify.js';
import { findCompletedVhdBlob, uploadSparseVhd, vhdBlobName } from './pageblob.js';
import { planRequestedVersion, planSeries, type GalleryVersionSummary } from './plan.js';
import {
  downloadAndExtractStemcell,
  findExtractedStemcell,
  removeStemcellWorkFiles,
  type ExtractedStemcell,
} from './stemcell.js';
import { readExtents } from './vhd.js';
import { galleryVersionName } from './versions.js';
import type { ExtractedStemcellSummary, StepInputs, StepName, StepOutcome, StepOutputs } from './workflow.js';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export interface ProgressEvent {
  series: string;
  version: string;
  phase: 'download' | 'upload';
  bytes: number;
  total?: number;
}

export interface MirrorServices {
  config: MirrorConfig;
  gallery: ComputeGallery;
  vhdContainer: ContainerClient;
  log: Logger;
  onProgress?: (event: ProgressEvent) => void;
}

/** The configured gallery, seen through `credential`. */
export function computeGalleryFor(
  config: MirrorConfig,
  credential: TokenCredential,
  options: Pick<ComputeGalleryOptions, 'pollIntervalMs'> = {},
): ComputeGallery {
  return new ComputeGallery({
    subscriptionId: config.subscriptionId,
    resourceGroup: config.resourceGroup,
    galleryName: config.galleryName,
    region: config.region,
    resourceManagerEndpoint: config.resourceManagerEndpoint,
    storageAccountId: storageAccountId(config),
    credential,
    requestTimeoutMs: config.httpTimeoutMs,
    ...options,
  });
}

/** Clients for the configured Azure resources, authenticated by managed identity (no keys). */
export function createMirrorServices(
  config: MirrorConfig,
  log: Logger,
  onProgress?: (event: ProgressEvent) => void,
): MirrorServices {
  const credential = createAzureCredential(config.managedIdentityClientId);
  const gallery = computeGalleryFor(config, credential);
  const vhdContainer = new ContainerClient(
    `${config.storageBlobEndpoint}/${config.storageContainer}`,
    credential,
  );
  const services: MirrorServices = { config, gallery, vhdContainer, log };
  if (onProgress) services.onProgress = onProgress;
  return services;
}

/** A transient condition: the retry policy tries the step again later. */
class TryAgainLater extends Error {
  readonly transient = true;
}

function summaryOf(version: ImageVersionState & { definitionName: string }): GalleryVersionSummary {
  const summary: GalleryVersionSummary = {
    name: version.name,
    provisioningState: version.provisioningState,
    createdByMirror: isCreatedByMirror(version.tags),
  };
  // Not finished until the mirror recorded its notification: versions it created whose run stopped early,
  // and versions a director created that the mirror has not adopted yet (or must refuse, visibly).
  const gone = version.provisioningState === 'Failed' || version.provisioningState === 'Deleting';
  if (!gone && version.tags[MIRROR_NOTIFIED_TAG] === undefined) {
    summary.unfinished = {
      definitionName: version.definitionName,
      ...(version.sourceUri !== undefined ? { blobUrl: version.sourceUri } : {}),
    };
  }
  return summary;
}

function neitherMirrorNorCpi(where: string): Error {
  return new Error(
    `${where} was created neither by this mirror nor by the BOSH Azure CPI (no stemcell_references ` +
      `or stemcell_name tag), so a director would refuse it; delete it and run again`,
  );
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

export type MirrorSteps = { [N in StepName]: (input: StepInputs[N]) => Promise<StepOutcome<StepOutputs[N]>> };

async function outcome<T>(work: () => Promise<T>): Promise<StepOutcome<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
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

/** The activities, bound to one set of clients. */
export function mirrorSteps(services: MirrorServices): MirrorSteps {
  const { config, gallery, vhdContainer, log } = services;

  const extract = (release: StemcellRelease): Promise<ExtractedStemcell> =>
    downloadAndExtractStemcell(release, {
      workDir: config.workDir,
      timeoutMs: config.httpTimeoutMs,
      onProgress: (p) =>
        services.onProgress?.({
          series: release.series,
          version: release.version,
          phase: 'download',
          bytes: p.bytes,
          ...(p.total !== undefined ? { total: p.total } : {}),
        }),
    });

  return {
    resolveVersions: ({ series, version }) =>
      outcome(async () => {
        const releases = await listStemcellReleases(config.boshioUrl, series, {
          timeoutMs: config.httpTimeoutMs,
          all: version !== undefined,
        });
        const versions = await gallery.listSeriesVersions(series, config.gallery);
        const inGallery = versions.map(summaryOf);
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
      }),

    downloadAndExtract: ({ release }) =>
      outcome(async () => {
        const previous = await findExtractedStemcell(config.workDir, release.series, release.version);
        // Reuse only an extraction of the very tarball bosh.io lists now.
        const same = release.sha256
          ? previous?.tarballSha256 === release.sha256
          : previous?.tarballSha1 === release.sha1;
        if (previous && same) return summarize(previous);
        log.info(`${release.series} ${release.version}: downloading ${release.url}`);
        return summarize(await extract(release));
      }),

    uploadVhd: ({ release, stemcell }) =>
      outcome(async () => {
        const blobName = vhdBlobName(release.series, release.version);
        const done = await findCompletedVhdBlob(vhdContainer, blobName, stemcell.imageSha256);
        if (done) {
          log.info(`${release.series} ${release.version}: ${done.blobUrl} already holds this VHD`);
          return {
            blobUrl: done.blobUrl,
            bytesUploaded: 0,
            dataBytes: stemcell.dataBytes,
            alreadyComplete: true,
          };
        }
        // Another instance (or a restart) may have extracted it: then extract here again.
        let local = await findExtractedStemcell(
          config.workDir,
          release.series,
          release.version,
          stemcell.imageSha256,
        );
        if (!local) {
          log.info(`${release.series} ${release.version}: no local root.vhd here; extracting again`);
          local = await extract(release);
          if (local.imageSha256 !== stemcell.imageSha256) {
            throw new Error(
              `${release.series} ${release.version}: bosh.io now serves a different image ` +
                `(SHA-256 ${local.imageSha256}, expected ${stemcell.imageSha256}); refusing to mix them`,
            );
          }
        }
        const uploaded = await uploadSparseVhd({
          container: vhdContainer,
          blobName,
          vhdPath: local.vhdPath,
          extents: await readExtents(local.extentsPath),
          size: local.vhdSize,
          metadata: {
            stemcell_series: release.series,
            stemcell_version: release.version,
            source_url: release.url,
            tarball_sha256: local.tarballSha256,
            image_sha1: local.imageSha1,
            image_sha256: local.imageSha256,
          },
          concurrency: config.uploadConcurrency,
          onProgress: (bytes, total) =>
            services.onProgress?.({
              series: release.series,
              version: release.version,
              phase: 'upload',
              bytes,
              total,
            }),
        });
        if (uploaded.replacedBecause)
          log.warn(`${blobName}: replaced an existing blob: ${uploaded.replacedBecause}`);
        return {
          blobUrl: uploaded.blobUrl,
          bytesUploaded: uploaded.bytesUploaded,
          dataBytes: uploaded.dataBytes,
          alreadyComplete: uploaded.alreadyComplete,
        };
      }),

    ensureImageDefinition: ({ manifest }) =>
      outcome(async () => {
        const spec = imageDefinitionFor(manifest, config.gallery);
        const state = await gallery.ensureImageDefinition(spec);
        if (state === 'created') log.info(`created image definition ${spec.name}`);
        return { definitionName: spec.name, created: state === 'created' };
      }),

    createImageVersion: ({ definitionName, galleryVersion, blobUrl, release, stemcell }) =>
      outcome(async () => {
        const where = `image version ${definitionName}/${galleryVersion}`;
        const existing = await gallery.getImageVersion(definitionName, galleryVersion);
        if (existing?.provisioningState === 'Failed') {
          log.warn(
            `${where} is Failed${existing.errorMessage ? ` (${existing.errorMessage})` : ''}; deleting it to create it again`,
          );
          await gallery.deleteImageVersion(definitionName, galleryVersion);
        } else if (existing?.provisioningState === 'Deleting') {
          throw new TryAgainLater(`${where} is being deleted; creating it again once that is done`);
        } else if (existing) {
          const sha = existing.tags['image_sha256'];
          if (sha !== undefined && sha !== stemcell.imageSha256) {
            throw new Error(
              `${where} already exists with a different image (image_sha256 ${sha}, this stemcell has ` +
                `${stemcell.imageSha256}); delete it by hand if it should be replaced`,
            );
          }
          if (!isAdoptableByCpi(existing.tags)) throw neitherMirrorNorCpi(where);
          // A version a director created: add the mirror's reference so no director's delete-stemcell removes it.
          // One still being created cannot be tagged yet; the notify step adopts it once it is Succeeded.
          const references = stemcellReferencesWith(existing.tags);
          if (references !== undefined && existing.provisioningState === 'Succeeded') {
            await gallery.tagImageVersion(definitionName, galleryVersion, {
              stemcell_references: references,
            });
            log.info(`${where}: adopted (added ${MIRROR_STEMCELL_REFERENCE} to stemcell_references)`);
          }
          const finished =
            existing.provisioningState === 'Succeeded' && existing.tags[MIRROR_NOTIFIED_TAG] !== undefined;
          return {
            outcome: finished ? 'exists' : 'started',
            provisioningState: existing.provisioningState,
          } as const;
        }
        await gallery.startImageVersion({
          definitionName,
          versionName: galleryVersion,
          blobUrl,
          tags: imageVersionTags({
            manifest: stemcell.manifest,
            imageSha256: stemcell.imageSha256,
            galleryName: config.galleryName,
            definitionName,
            sourceUrl: release.url,
          }),
        });
        log.info(`${where}: creation started`);
        return { outcome: 'started', provisioningState: 'Creating' } as const;
      }),

    getImageVersionState: ({ definitionName, galleryVersion }) =>
      outcome(async () => {
        const state = await gallery.getImageVersion(definitionName, galleryVersion);
        if (!state)
          throw new Error(
            `image version ${definitionName}/${galleryVersion} disappeared while it was being created`,
          );
        return state.errorMessage !== undefined
          ? { provisioningState: state.provisioningState, errorMessage: state.errorMessage }
          : { provisioningState: state.provisioningState };
      }),

    notify: ({ definitionName, galleryVersion }) =>
      outcome(async () => {
        const where = `image version ${definitionName}/${galleryVersion}`;
        const version = await gallery.getImageVersion(definitionName, galleryVersion);
        if (!version) throw new Error(`${where} disappeared before its run finished`);
        if (!isAdoptableByCpi(version.tags)) throw neitherMirrorNorCpi(where);
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
            `dispatched ${config.notify.owner}/${config.notify.repo} ${config.notify.workflow} for ${definitionName}/${galleryVersion}`,
          );
        }
        // Recorded on the version (with the mirror's reference, for a version a director created), so a
        // run that stops before this point is finished by the next one. After a dispatch, a failure here
        // is only logged: failing the step would make its retry dispatch again.
        const references = stemcellReferencesWith(version.tags);
        const record = {
          [MIRROR_NOTIFIED_TAG]: dispatched ?? 'off',
          ...(references !== undefined ? { stemcell_references: references } : {}),
        };
        try {
          await withPatience(3, () => gallery.tagImageVersion(definitionName, galleryVersion, record));
        } catch (error) {
          if (dispatched === undefined) throw error;
          log.warn(
            `${where}: dispatched, but recording it failed (${errorMessage(error)}); the next run may dispatch again`,
          );
        }
        return { notified: dispatched !== undefined };
      }),

    cleanup: ({ series, version }) =>
      outcome(async () => {
        await removeStemcellWorkFiles(config.workDir, series, version);
        return { removed: true };
      }),
  };
}
