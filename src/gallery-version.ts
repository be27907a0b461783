/**
 * An image version as the gallery reports it, read once into the mirror's terms (provisioning state, tags,
 * source, target regions and replication per region), and the rules for merging its tags.
 */
import type { GalleryImageVersion, GalleryImageVersionPublishingProfile } from '@azure/arm-compute';
import { tagProblems } from './cpi.js';
import { GalleryError } from './gallery-error.js';
import {
  regionKey,
  type RegionReplication,
  type ReplicaStorageType,
  type ReportedTargetRegion,
  type TargetRegion,
} from './target-regions.js';

/** Where and how new versions are published (BASM_TARGET_REGIONS, BASM_STORAGE_ACCOUNT_TYPE, BASM_END_OF_LIFE_DAYS). */
export interface VersionPublishing {
  targetRegions: TargetRegion[];
  storageAccountType: ReplicaStorageType;
  endOfLifeDays?: number;
}

const DAY_MS = 86_400_000;

/** A new version's publishing profile: every target region on the configured storage, its end of life from `now`. */
export function publishingProfileFor(
  publishing: VersionPublishing,
  now: Date,
): GalleryImageVersionPublishingProfile {
  const { targetRegions, storageAccountType, endOfLifeDays } = publishing;
  return {
    targetRegions: targetRegions.map((target) => ({ ...target, storageAccountType })),
    replicaCount: 1,
    excludeFromLatest: false,
    storageAccountType,
    ...(endOfLifeDays !== undefined
      ? { endOfLifeDate: new Date(now.getTime() + endOfLifeDays * DAY_MS) }
      : {}),
  };
}

export type KnownProvisioningState =
  'Creating' | 'Updating' | 'Succeeded' | 'Failed' | 'Deleting' | 'Migrating';

export interface ImageVersionState {
  name: string;
  /** Azure's provisioning state: Creating, Updating, Succeeded, Failed, Deleting, Migrating, or a newer one. */
  provisioningState: KnownProvisioningState | (string & Record<never, never>);
  tags: Record<string, string>;
  sourceUri?: string;
  errorMessage?: string;
  /** `publishingProfile.targetRegions`: where the version is replicated, as Azure spells it. */
  targetRegions?: ReportedTargetRegion[];
  /**
   * Replication per target region: Azure's state from `replicationStatus.summary`, which only a GET with
   * `$expand=ReplicationStatus` carries (else `Unknown`), with its progress and, for a failed region, details.
   */
  regions?: RegionReplication[];
}

export const NO_REASON = 'Azure gave no reason here; see the activity log of the image version';

export function checkTags(tags: Record<string, string>, what: string): void {
  const problems = tagProblems(tags);
  if (problems.length > 0) {
    throw new GalleryError(`${what} refused: Azure would not accept these tags: ${problems.join('; ')}.`, {
      code: 'InvalidTag',
    });
  }
}

// Azure tag names are case-insensitive: a new spelling replaces the old one instead of making a duplicate.
export function mergeTags(
  current: Record<string, string>,
  tags: Record<string, string>,
): Record<string, string> {
  const merged = { ...current };
  for (const [name, value] of Object.entries(tags)) {
    for (const existing of Object.keys(merged)) {
      if (existing !== name && existing.toLowerCase() === name.toLowerCase()) delete merged[existing];
    }
    merged[name] = value;
  }
  return merged;
}

export function sameTags(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => b[key] === a[key]);
}

export function versionState(version: GalleryImageVersion): ImageVersionState {
  const state: ImageVersionState = {
    name: version.name ?? '',
    provisioningState: version.provisioningState ?? 'Unknown',
    tags: { ...(version.tags ?? {}) },
    targetRegions: (version.publishingProfile?.targetRegions ?? []).map((t) => ({
      name: t.name,
      ...(t.regionalReplicaCount !== undefined ? { regionalReplicaCount: t.regionalReplicaCount } : {}),
      ...(t.storageAccountType !== undefined ? { storageAccountType: t.storageAccountType } : {}),
    })),
    regions: replicationByRegion(version),
  };
  const sourceUri = version.storageProfile?.osDiskImage?.source?.uri;
  if (sourceUri !== undefined) state.sourceUri = sourceUri;
  if (state.provisioningState === 'Failed') {
    const details = (version.replicationStatus?.summary ?? [])
      .map((region) => region.details)
      .filter((detail): detail is string => detail !== undefined && detail !== '');
    if (details.length > 0) state.errorMessage = details.join('; ');
  }
  return state;
}

function replicationByRegion(version: GalleryImageVersion): RegionReplication[] {
  const summary = version.replicationStatus?.summary ?? [];
  return (version.publishingProfile?.targetRegions ?? []).map((target) => {
    const reported = summary.find((s) => regionKey(s.region) === regionKey(target.name));
    const region: RegionReplication = { name: target.name, state: reported?.state ?? 'Unknown' };
    if (reported?.progress !== undefined && region.state === 'Replicating')
      region.progress = reported.progress;
    if (reported?.details && region.state === 'Failed') region.details = reported.details;
    return region;
  });
}
