/**
 * The settings of a version's life in the gallery: where it is replicated, on what storage, until when,
 * which versions are never mirrored, how many are kept, and whether a created version's blob goes.
 */

import type { SettingsReader } from './settings-reader.js';
import {
  REGION_NAME,
  REPLICA_STORAGE_TYPES,
  parseTargetRegions,
  type ReplicaStorageType,
  type TargetRegion,
} from './target-regions.js';
import { isStemcellVersion } from './versions.js';

export interface LifecycleSettings {
  /** `BASM_TARGET_REGIONS`: where each version is replicated, `region` among them. */
  targetRegions: TargetRegion[];
  /** `BASM_STORAGE_ACCOUNT_TYPE`: the storage of a version's replicas. */
  storageAccountType: ReplicaStorageType;
  /** `BASM_END_OF_LIFE_DAYS`: a new version's endOfLifeDate is its creation plus this many days; undefined: none. */
  endOfLifeDays?: number;
  /** BASM_SKIP_VERSIONS, BASM_KEEP_VERSIONS (0: keep all), BASM_DELETE_SOURCE_BLOB: docs/configuration.md. */
  skipVersions: string[];
  keepVersions: number;
  deleteSourceBlob: boolean;
}

/** Where versions are replicated, on what storage, and for how long they are meant to be used. */
export function readReplication(
  r: SettingsReader,
  region: string,
): Pick<LifecycleSettings, 'targetRegions' | 'storageAccountType' | 'endOfLifeDays'> {
  const name = 'BASM_TARGET_REGIONS';
  const text = r.text(name) ?? region;
  let targetRegions: TargetRegion[] = [{ name: region, regionalReplicaCount: 1 }];
  // A bad AZURE_REGION is reported on its own; the list is only checked against a valid one.
  if (REGION_NAME.test(region)) {
    const parsed = parseTargetRegions(text, region);
    if ('problems' in parsed) {
      r.problem(
        name,
        `${parsed.problems.join('; ')}; expected comma-separated regions, each with an optional replica count, ` +
          `such as ${region}=2,eastus`,
      );
    } else targetRegions = parsed.regions;
  }
  const types = REPLICA_STORAGE_TYPES.join(', ');
  const typeText = r.optional(
    'BASM_STORAGE_ACCOUNT_TYPE',
    new RegExp(`^(?:${types.replace(/, /g, '|')})$`),
    types,
  );
  const storageAccountType = REPLICA_STORAGE_TYPES.find((t) => t === typeText) ?? 'Standard_LRS';
  const days = r.integer('BASM_END_OF_LIFE_DAYS', 0, 1, 36_500);
  return { targetRegions, storageAccountType, ...(days > 0 ? { endOfLifeDays: days } : {}) };
}

/** Which versions no run mirrors, how many of the mirror's a series keeps, and a created version's blob. */
export function readRetention(
  r: SettingsReader,
): Pick<LifecycleSettings, 'skipVersions' | 'keepVersions' | 'deleteSourceBlob'> {
  return {
    skipVersions: readVersionList(r, 'BASM_SKIP_VERSIONS'),
    keepVersions: r.integer('BASM_KEEP_VERSIONS', 0, 0, 1000),
    deleteSourceBlob: r.boolean('BASM_DELETE_SOURCE_BLOB', false),
  };
}

/** Comma-separated stemcell versions (`1.918,1.926`); empty or unset: none. */
function readVersionList(r: SettingsReader, name: string): string[] {
  const versions = (r.text(name) ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  const bad = versions.filter((v) => !isStemcellVersion(v)).map((v) => `"${v}"`);
  const what = bad.length === 1 ? 'is not a stemcell version' : 'are not stemcell versions';
  const expects = 'expected a comma-separated list of bosh.io versions such as 1.918,1.926';
  if (bad.length > 0) r.problem(name, `${bad.join(', ')} ${what}; ${expects}`);
  return versions;
}
