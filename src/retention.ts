/**
 * Retention (BASM_KEEP_VERSIONS): which of a series' gallery versions the mirror deletes. Pure, so the plan
 * (and its dry run) and the step that deletes decide with one rule; the step decides again on what it reads.
 */

import { MIRROR_NOTIFIED_TAG, directorUse, isCreatedByMirror } from './cpi.js';
import { compareStemcellVersions, galleryVersionName, isStemcellVersion } from './versions.js';

/** Deletions one run makes at most, oldest first (the rest next run): bounds its history and its record. */
export const MAX_DELETIONS_PER_RUN = 20;

/** One gallery version of the series, as retention looks at it. */
export interface RetentionCandidate {
  definitionName: string;
  /** `Major.Minor.Patch`. */
  galleryVersion: string;
  provisioningState: string;
  tags: Readonly<Record<string, string>>;
  /** The version's source, as the gallery reports it. */
  sourceUri?: string;
}

/** A version retention deletes, with its source blob when that is the mirror's own. */
export interface RetentionDeletion {
  definitionName: string;
  galleryVersion: string;
  /** bosh.io's spelling, from the mirror's blob name (`<series>/<version>/root.vhd`). */
  version: string;
  reason: string;
}

export interface RetentionRules {
  /** BASM_KEEP_VERSIONS: 0 keeps every version. */
  keep: number;
  /** The mirror's VHD container URL: only a version made from the mirror's own blob there counts as its own. */
  containerUrl: string;
}

/**
 * The bosh.io version whose mirror upload `sourceUri` names: `<container>/<series>/<version>/root.vhd` in the
 * mirror's own container, for this gallery version; undefined for any other source (a director's, another
 * tool's, another account's).
 */
export function ownSourceVersion(
  sourceUri: string | undefined,
  containerUrl: string,
  series: string,
  galleryVersion: string,
): string | undefined {
  // Stryker disable next-line ConditionalExpression: new URL(undefined) throws, and the catch answers the same
  if (sourceUri === undefined) return undefined;
  let source: URL;
  let container: URL;
  try {
    source = new URL(sourceUri);
    container = new URL(containerUrl);
  } catch {
    return undefined;
  }
  if (source.origin.toLowerCase() !== container.origin.toLowerCase()) return undefined;
  const prefix = `${container.pathname.replace(/\/+$/, '')}/${series}/`;
  if (!source.pathname.startsWith(prefix) || !source.pathname.endsWith('/root.vhd')) return undefined;
  const version = source.pathname.slice(prefix.length, -'/root.vhd'.length);
  if (!isStemcellVersion(version) || galleryVersionName(version) !== galleryVersion) return undefined;
  return version;
}

/** Why the version may not be deleted now, or undefined when it may (the step asks this again just before). */
export function deletionBlocker(candidate: RetentionCandidate): string | undefined {
  if (candidate.provisioningState !== 'Succeeded') return `it is ${candidate.provisioningState}`;
  if (candidate.tags[MIRROR_NOTIFIED_TAG] === undefined) return 'its run has not finished (not notified)';
  return directorUse(candidate.tags);
}

/**
 * docs/architecture.md "Retention": of the versions this mirror made from its own blob (a director's upload,
 * a version another tool made or one whose source is elsewhere never counts and is never deleted), the newest
 * `keep` version numbers stay; each older one is deleted once it is Succeeded, its run finished, and no
 * director uses it. The newest version is always among those kept. Failed ones are left to the plan.
 */
export function decideRetention(
  series: string,
  versions: readonly RetentionCandidate[],
  rules: RetentionRules,
): RetentionDeletion[] {
  if (rules.keep <= 0) return [];
  const own = versions.flatMap((v) => {
    const version = ownSourceVersion(v.sourceUri, rules.containerUrl, series, v.galleryVersion);
    return version !== undefined && isCreatedByMirror(v.tags) && v.provisioningState !== 'Failed'
      ? [{ candidate: v, version }]
      : [];
  });
  const names = [...new Set(own.map((o) => o.candidate.galleryVersion))].sort((a, b) =>
    compareStemcellVersions(b, a),
  );
  const kept = new Set(names.slice(0, rules.keep));
  return own
    .filter(
      ({ candidate }) => !kept.has(candidate.galleryVersion) && deletionBlocker(candidate) === undefined,
    )
    .sort((a, b) => compareStemcellVersions(a.candidate.galleryVersion, b.candidate.galleryVersion))
    .map(({ candidate, version }) => ({
      definitionName: candidate.definitionName,
      galleryVersion: candidate.galleryVersion,
      version,
      reason: `older than the newest ${rules.keep} the mirror keeps (BASM_KEEP_VERSIONS); no director uses it`,
    }));
}
