/** Step 1 of a run: what bosh.io has that the gallery lacks, planned the way `status` plans it. */

import { listStemcellReleases, type StemcellRelease } from './boshio.js';
import {
  MIRROR_NOTIFIED_TAG,
  MIRROR_STEMCELL_REFERENCE,
  imageDefinitionFor,
  isCreatedByMirror,
} from './cpi.js';
import { inUseFailure, isFromAnotherTool } from './existing-version.js';
import { errorMessage, isTransientError } from './failures.js';
import type { ImageVersionState } from './gallery.js';
import { previewManifest } from './manifest-preview.js';
import { vhdBlobName } from './pageblob.js';
import {
  extensionsThisRun,
  planExtensions,
  planRequestedVersion,
  planSeries,
  type GalleryVersionSummary,
  type SeriesPlan,
} from './plan.js';
import { requireConfiguredSeries } from './provenance.js';
import {
  MAX_DELETIONS_PER_RUN,
  decideRetention,
  type RetentionCandidate,
  type RetentionDeletion,
} from './retention.js';
import type { MirrorServices } from './services.js';
import { retentionCandidate } from './steps-retention.js';
import { galleryVersionName, isStemcellVersion } from './versions.js';
import type { StepInputs, StepOutputs } from './workflow-contract.js';

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
  // Decided here, not when the run gets to create it: a run must not download a stemcell it cannot use.
  const inUse = inUseFailure(version);
  if (inUse !== undefined) {
    summary.inUseFailure = {
      stemcellVersion: stemcellVersionOf(version),
      error: `image version ${version.definitionName}/${version.name} ${inUse}`,
    };
  }
  if (summary.createdByMirror && version.provisioningState === 'Succeeded') {
    summary.replicated = {
      definitionName: version.definitionName,
      stemcellVersion: stemcellVersionOf(version),
      targetRegions: version.targetRegions ?? [],
    };
  }
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

/** The bosh.io version a gallery version holds: its `version` tag where that names it, else its name less `.0`. */
function stemcellVersionOf(version: ImageVersionState): string {
  const tagged = version.tags['version'];
  if (tagged !== undefined && isStemcellVersion(tagged) && galleryVersionName(tagged) === version.name)
    return tagged;
  return version.name.replace(/\.0$/, '');
}

/** Step 1: what bosh.io has that the gallery lacks, and which of it this run mirrors. */
export async function resolveVersions(
  services: MirrorServices,
  { series, version, dryRun }: StepInputs['resolveVersions'],
): Promise<StepOutputs['resolveVersions']> {
  const { config, gallery, notificationRecords, log } = services;
  requireConfiguredSeries(config, series);
  const releases = await listStemcellReleases(config.boshioUrl, series, {
    timeoutMs: config.httpTimeoutMs,
    all: version !== undefined,
  });
  const versions = await gallery.listSeriesVersions(series, config.gallery);
  const inGallery = await Promise.all(
    versions.map(async (listed) => {
      // The list carries no replication status: a Failed version in use is read again, for Azure's reason.
      const read =
        summaryOf(listed, config.adoptUntagged).inUseFailure !== undefined
          ? await gallery.getImageVersion(listed.definitionName, listed.name)
          : undefined;
      const v = read !== undefined ? { ...read, definitionName: listed.definitionName } : listed;
      const summary = summaryOf(v, config.adoptUntagged);
      // A run whose tag Azure refused recorded its notification in the mirror's storage: finished too.
      if (summary.unfinished && (await notificationRecords.find(v.definitionName, v.name)) !== undefined) {
        delete summary.unfinished;
      }
      return summary;
    }),
  );
  const rules = { skip: config.skipVersions, keep: config.keepVersions };
  const plan =
    version !== undefined
      ? planRequestedVersion(series, releases, inGallery, version, rules)
      : planSeries(series, releases, inGallery, config.maxVersionsPerRun, rules);
  // An explicit version mirrors exactly that one; every other run also extends the mirror's versions.
  if (version === undefined) {
    const extensions = planExtensions(inGallery, config.targetRegions);
    Object.assign(plan, extensionsThisRun(extensions, config.maxVersionsPerRun));
  }
  const newest = versions.find((v) => v.name === galleryVersionName(plan.newest.version));
  if (dryRun === true) {
    for (const p of plan.mirror) {
      if (p.finish || p.adopt) continue;
      const drift = await driftOf(services, p.release);
      if (drift !== undefined) p.drift = drift;
    }
  }
  for (const p of plan.mirror) log.info(`${series} ${p.release.version}: to mirror (${p.reason})`);
  for (const e of plan.extend ?? []) log.info(`${series} ${e.version}: to extend (${e.reason})`);
  for (const r of plan.refused ?? []) log.warn(`${series} ${r.version}: ${r.error}`);
  if (plan.deferred.length > 0) {
    log.info(`${series}: ${plan.deferred.join(', ')} left for a later run (BASM_MAX_VERSIONS_PER_RUN)`);
  }
  if (plan.extendDeferred !== undefined) {
    log.info(
      `${series}: ${plan.extendDeferred.join(', ')} extended by a later run (BASM_MAX_VERSIONS_PER_RUN)`,
    );
  }
  if (plan.skipped !== undefined) {
    log.info(`${series}: ${plan.skipped.join(', ')} never mirrored (BASM_SKIP_VERSIONS)`);
  }
  // A run for one named version leaves retention to the scheduled runs.
  const retention =
    version === undefined ? retentionAfter(series, plan, versions.map(retentionCandidate), services) : [];
  for (const d of retention) log.info(`${series} ${d.version}: to delete after the run (${d.reason})`);
  return {
    ...plan,
    ...(newest?.sourceUri !== undefined ? { newestBlobUrl: newest.sourceUri } : {}),
    ...(retention.length > 0 ? { retention } : {}),
  };
}

/**
 * What retention deletes once the run has mirrored its plan: decided on the gallery as it will then be, so
 * the versions the run creates count among those kept (and a dry run shows the same deletions).
 */
function retentionAfter(
  series: string,
  plan: SeriesPlan,
  inGallery: RetentionCandidate[],
  { config, vhdContainer }: MirrorServices,
): RetentionDeletion[] {
  const listed = new Set(inGallery.map((v) => v.galleryVersion));
  const created: RetentionCandidate[] = plan.mirror
    .filter((p) => !listed.has(p.galleryVersion) || p.reason === 'retry-failed')
    .map((p) => ({
      definitionName: series,
      galleryVersion: p.galleryVersion,
      provisioningState: 'Succeeded',
      tags: { stemcell_references: MIRROR_STEMCELL_REFERENCE, [MIRROR_NOTIFIED_TAG]: 'planned' },
      sourceUri: vhdContainer.getPageBlobClient(vhdBlobName(series, p.release.version)).url,
    }));
  const rules = { keep: config.keepVersions, containerUrl: vhdContainer.url };
  return decideRetention(series, [...inGallery, ...created], rules)
    .filter((d) => !created.some((c) => c.galleryVersion === d.galleryVersion))
    .slice(0, MAX_DELETIONS_PER_RUN);
}

/**
 * For a dry run: why the real run would refuse the release, its image definition not fitting what the stemcell
 * implies (read from the head of its tarball); undefined when it fits or the definition is still to be made.
 */
async function driftOf(
  { config, gallery, log }: MirrorServices,
  release: StemcellRelease,
): Promise<string | undefined> {
  const subject = `${release.series} ${release.version}`;
  let spec;
  try {
    spec = imageDefinitionFor(await previewManifest(release, config.httpTimeoutMs), config.gallery);
  } catch (error) {
    if (isTransientError(error)) throw error;
    // The real run reports a stemcell it cannot use when it downloads it; the plan only looks for drift.
    log.warn(`${subject}: no feature drift check, stemcell.MF could not be read: ${errorMessage(error)}`);
    return undefined;
  }
  return gallery.definitionRefusal(spec, subject, 'A run would create nothing.');
}
