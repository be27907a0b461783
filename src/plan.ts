/**
 * Pure decisions: which bosh.io versions a run mirrors. No I/O, so the orchestrator, the CLI and the
 * tests share one set of rules.
 */

import type { StemcellRelease } from './boshio.js';
import {
  describeChange,
  isNoChange,
  targetRegionChange,
  type ReportedTargetRegion,
  type TargetRegion,
} from './target-regions.js';
import { compareStemcellVersions, galleryVersionName } from './versions.js';

/** What the gallery holds for one image version of the series. */
export interface GalleryVersionSummary {
  /** `Major.Minor.Patch`, e.g. `1.1364.0`. */
  name: string;
  provisioningState: string;
  /** This mirror created it (a director's own upload does not count when looking for gaps). */
  createdByMirror?: boolean;
  /**
   * Set for a version this mirror created whose run did not finish: still being created, or
   * `Succeeded` without a recorded notification (an interrupted run, a passed deadline, GitHub down).
   */
  unfinished?: { definitionName: string; blobUrl?: string };
  /** Set for an untagged version another tool made, when BASM_ADOPT_UNTAGGED asks to adopt such versions. */
  adoptable?: { definitionName: string; blobUrl?: string };
  /**
   * Set for a Succeeded version this mirror created: where it is replicated now, so a region added to
   * BASM_TARGET_REGIONS (or a replica count raised) extends it. `stemcellVersion` is the bosh.io version.
   */
  replicated?: { definitionName: string; stemcellVersion: string; targetRegions: ReportedTargetRegion[] };
  /**
   * Set for a Failed version of the mirror's that directors use: the mirror never deletes it, so no run recreates
   * it (or downloads its stemcell); every run reports it failed with `error`, which says what the operator must do.
   */
  inUseFailure?: { stemcellVersion: string; error: string };
}

/** A version the plan reports failed without any step: a Failed version of the mirror's that directors use. */
export interface RefusedVersion {
  version: string;
  galleryVersion: string;
  reason: 'failed-in-use';
  error: string;
}

/** A version this mirror created that the run gives new target regions (an update, never a recreation). */
export interface PlannedExtension {
  version: string;
  galleryVersion: string;
  definitionName: string;
  /** What changes, e.g. `adds eastus` or `westeurope 1 -> 2 replicas`. */
  reason: string;
}

export interface PlannedVersion {
  release: StemcellRelease;
  galleryVersion: string;
  /**
   * Why it is in the plan: the newest, a gap above the gallery's oldest version, a retry of a version
   * Azure failed, asked for, a version the mirror created whose run did not finish, or an untagged version
   * another tool made, to verify and adopt.
   */
  reason: 'newest' | 'catch-up' | 'retry-failed' | 'requested' | 'finish' | 'adopt';
  /** For `finish`: the version exists; only waiting for it and notifying are left. */
  finish?: { definitionName: string; blobUrl?: string };
  /** For `adopt`: the version exists; download and verify the stemcell, compare, then tag the version. */
  adopt?: { definitionName: string; blobUrl?: string };
  /**
   * Set by a dry run's plan step only: why the real run would refuse the version, its image definition not
   * fitting the stemcell (src/definition-features.ts).
   */
  drift?: string;
}

export interface SeriesPlan {
  series: string;
  /** Oldest first: the order the run mirrors them in; versions to finish come after the rest. */
  mirror: PlannedVersion[];
  /** The version the run is about: bosh.io's newest, or the requested one. With `mirror` empty, the gallery has it. */
  newest: StemcellRelease;
  /** Missing versions left for a later run because of `maxVersionsPerRun`. */
  deferred: string[];
  /** Versions to give the configured target regions they lack, newest first (see planExtensions): this run's share. */
  extend?: PlannedExtension[];
  /** Versions to extend that `maxVersionsPerRun` leaves for later runs, newest first; absent when none. */
  extendDeferred?: string[];
  /** Versions bosh.io lists and the gallery lacks that BASM_SKIP_VERSIONS keeps out, oldest first; absent when none. */
  skipped?: string[];
  /** Failed versions of the mirror's that directors use, oldest first: reported failed, never mirrored; absent when none. */
  refused?: RefusedVersion[];
}

/**
 * Which of the mirror's versions lack a configured target region or replicas: newest first, since directors
 * deploy the newest, so the oldest are extended last. Only Succeeded versions this mirror created
 * (`replicated`): a director's own versions are left as the director made them, and a region is never removed.
 */
export function planExtensions(
  inGallery: readonly GalleryVersionSummary[],
  wanted: readonly TargetRegion[],
): PlannedExtension[] {
  const extensions = inGallery.flatMap((v) => {
    if (v.replicated === undefined) return [];
    const change = targetRegionChange(v.replicated.targetRegions, wanted);
    if (isNoChange(change)) return [];
    const { definitionName, stemcellVersion } = v.replicated;
    return [
      { version: stemcellVersion, galleryVersion: v.name, definitionName, reason: describeChange(change) },
    ];
  });
  return extensions.sort((a, b) => compareStemcellVersions(b.version, a.version));
}

/**
 * The extensions one run makes: at most `maxPerRun` (BASM_MAX_VERSIONS_PER_RUN), since each waits for
 * replication as a new version does; newest first, so the rest are the oldest, extended by the next runs.
 */
export function extensionsThisRun(
  extensions: readonly PlannedExtension[],
  maxPerRun: number,
): Pick<SeriesPlan, 'extend' | 'extendDeferred'> {
  const later = extensions.slice(maxPerRun).map((e) => e.version);
  return { extend: extensions.slice(0, maxPerRun), ...(later.length > 0 ? { extendDeferred: later } : {}) };
}

/** What the settings add to the plan: versions never mirrored, and how far back catch-up reaches. */
export interface PlanRules {
  /** BASM_SKIP_VERSIONS: never planned, never counted, never the version a run is about. */
  skip?: readonly string[];
  /**
   * BASM_KEEP_VERSIONS (0: keep all): catch-up stays within the newest `keep` versions bosh.io lists, so a
   * version retention deletes is never mirrored again by the next run.
   */
  keep?: number;
}

/** Whether the settings keep `version` out of the gallery (BASM_SKIP_VERSIONS; `1.918` and `1.918.0` alike). */
export function isSkippedVersion(version: string, skip: readonly string[] = []): boolean {
  return skip.some((s) => compareStemcellVersions(version, s) === 0);
}

/** Releases the settings let the mirror plan, and those they skip that the gallery lacks. */
function withoutSkipped(
  series: string,
  releases: readonly StemcellRelease[],
  inGallery: readonly GalleryVersionSummary[],
  skip: readonly string[],
): { allowed: StemcellRelease[]; skipped?: string[] } {
  const allowed = releases.filter((r) => !isSkippedVersion(r.version, skip));
  if (allowed.length === 0 && releases.length > 0) {
    throw new Error(`bosh.io lists no version of ${series} outside BASM_SKIP_VERSIONS (${skip.join(', ')})`);
  }
  const present = presentVersions(inGallery);
  const skipped = releases
    .filter((r) => isSkippedVersion(r.version, skip) && !present.has(galleryVersionName(r.version)))
    .sort((a, b) => compareStemcellVersions(a.version, b.version))
    .map((r) => r.version);
  return skipped.length > 0 ? { allowed, skipped } : { allowed };
}

/**
 * A gallery version counts as present unless Azure gave up on it (a Failed version is recreated); one directors
 * use stays, Failed or not, since the mirror never deletes it.
 */
function presentVersions(inGallery: readonly GalleryVersionSummary[]): Set<string> {
  return new Set(
    inGallery
      .filter((v) => v.provisioningState !== 'Failed' || v.inUseFailure !== undefined)
      .map((v) => v.name),
  );
}

/** The Failed versions directors use among `inGallery`, oldest first, as the run reports them. */
function refusedVersions(inGallery: readonly GalleryVersionSummary[]): { refused?: RefusedVersion[] } {
  const refused = inGallery
    .flatMap((v): RefusedVersion[] =>
      v.inUseFailure === undefined
        ? []
        : [
            {
              version: v.inUseFailure.stemcellVersion,
              galleryVersion: v.name,
              reason: 'failed-in-use',
              error: v.inUseFailure.error,
            },
          ],
    )
    .sort((a, b) => compareStemcellVersions(a.galleryVersion, b.galleryVersion));
  return refused.length > 0 ? { refused } : {};
}

/**
 * BASM_KEEP_VERSIONS: the oldest of bosh.io's newest `keep` (not skipped) versions, below which catch-up does not
 * reach, since retention would delete such a version again; undefined when every version is kept. `status`
 * explains what the plan leaves out with the same floor.
 */
export function oldestKeptRelease(
  allowed: readonly StemcellRelease[],
  keep: number,
): StemcellRelease | undefined {
  // Stryker disable next-line ConditionalExpression,EqualityOperator: without it, keep <= 0 indexes past the end: undefined too
  if (keep <= 0) return undefined;
  const ascending = [...allowed].sort((a, b) => compareStemcellVersions(a.version, b.version));
  return ascending[Math.max(0, ascending.length - keep)];
}

/**
 * docs/architecture.md "Which versions": the newest version the gallery lacks is always mirrored; where the
 * gallery already holds versions this mirror created, every missing version newer than the oldest of them
 * is mirrored too, oldest first, at most `maxVersions` a run. Counting from the oldest (rather than only past
 * the newest) means a gap that had to wait for a later run is still filled once the newest has landed;
 * counting only the mirror's own versions means an old stemcell a director uploaded causes no backfill.
 * A version the mirror created that Azure failed is created again, unless directors use it: that one is only
 * reported (`refused`), every run, until the operator acts. Versions whose run did not finish are
 * finished (no download), after the rest and outside the cap. A skipped version (BASM_SKIP_VERSIONS) is as if
 * bosh.io did not list it: when the newest is skipped, the next newest is what the run is about. With
 * BASM_KEEP_VERSIONS, catch-up reaches back no further than the newest `keep` versions.
 */
export function planSeries(
  series: string,
  releases: readonly StemcellRelease[],
  inGallery: readonly GalleryVersionSummary[],
  maxVersions: number,
  rules: PlanRules = {},
): SeriesPlan {
  const { allowed, skipped } = withoutSkipped(series, releases, inGallery, rules.skip ?? []);
  const ascending = allowed.sort((a, b) => compareStemcellVersions(a.version, b.version));
  const newest = ascending.at(-1);
  if (newest === undefined) throw new Error(`bosh.io lists no versions of ${series}`);
  const nameOf = (r: StemcellRelease) => galleryVersionName(r.version);
  const present = presentVersions(inGallery);
  // Only versions that are not present are planned, so one the gallery lists is one Azure failed.
  const failed = new Set(inGallery.map((v) => v.name));
  const mirrored = new Set(inGallery.filter((v) => v.createdByMirror).map((v) => v.name));
  const reasonFor = (r: StemcellRelease, fallback: PlannedVersion['reason']): PlannedVersion['reason'] =>
    failed.has(nameOf(r)) ? 'retry-failed' : fallback;

  const anchor = ascending.find((r) => present.has(nameOf(r)) && mirrored.has(nameOf(r)));
  const oldestKept = oldestKeptRelease(ascending, rules.keep ?? 0);
  const candidates = ascending.filter(
    (r) =>
      r !== newest &&
      // Retention would delete it again: the window of kept versions bounds catch-up.
      (oldestKept === undefined || compareStemcellVersions(r.version, oldestKept.version) >= 0) &&
      !present.has(nameOf(r)) &&
      // Stryker disable next-line EqualityOperator: the anchor itself is present, so `>= 0` plans the same
      ((anchor !== undefined && compareStemcellVersions(r.version, anchor.version) > 0) ||
        // Not present, yet created by the mirror: Azure failed it.
        mirrored.has(nameOf(r))),
  );

  const chosen: PlannedVersion[] = [];
  if (!present.has(nameOf(newest))) {
    chosen.push({ release: newest, galleryVersion: nameOf(newest), reason: reasonFor(newest, 'newest') });
  }
  const room = Math.max(0, maxVersions - chosen.length);
  for (const r of candidates.slice(0, room)) {
    chosen.push({ release: r, galleryVersion: nameOf(r), reason: reasonFor(r, 'catch-up') });
  }
  chosen.sort((a, b) => compareStemcellVersions(a.release.version, b.release.version));
  // Adopting downloads the stemcell too, so it shares the cap, newest first (what directors use next).
  const adoptable = new Map(inGallery.flatMap((v) => (v.adoptable ? [[v.name, v.adoptable] as const] : [])));
  const toAdopt = [...ascending].reverse().filter((r) => adoptable.has(nameOf(r)));
  const adoptRoom = Math.max(0, maxVersions - chosen.length);
  for (const r of toAdopt.slice(0, adoptRoom)) {
    const adopt = adoptable.get(nameOf(r));
    // Stryker disable next-line ConditionalExpression: toAdopt holds only names in adoptable; the check is for the type checker
    if (adopt) chosen.push({ release: r, galleryVersion: nameOf(r), reason: 'adopt', adopt });
  }
  // Finishing costs no download, so it does not count against the cap; it comes last, so a version stuck
  // in Creating never holds up a new stemcell.
  const unfinished = new Map(
    inGallery.flatMap((v) => (v.unfinished ? [[v.name, v.unfinished] as const] : [])),
  );
  for (const r of ascending) {
    const finish = unfinished.get(nameOf(r));
    if (finish) chosen.push({ release: r, galleryVersion: nameOf(r), reason: 'finish', finish });
  }
  const deferred = [...candidates.slice(room), ...toAdopt.slice(adoptRoom)].map((r) => r.version);
  return {
    series,
    mirror: chosen,
    newest,
    deferred,
    ...(skipped ? { skipped } : {}),
    ...refusedVersions(inGallery),
  };
}

/**
 * An explicit version (HTTP body, `--version`) mirrors exactly that one, whatever else the gallery holds;
 * if the gallery already has it (and Azure did not fail it), there is nothing to do but finish it.
 */
export function planRequestedVersion(
  series: string,
  releases: readonly StemcellRelease[],
  inGallery: readonly GalleryVersionSummary[],
  version: string,
  rules: PlanRules = {},
): SeriesPlan {
  if (isSkippedVersion(version, rules.skip)) throw new Error(skippedVersionRefusal(series, version));
  const release = releases.find((r) => compareStemcellVersions(r.version, version) === 0);
  if (release === undefined) {
    const known = [...releases].sort((a, b) => compareStemcellVersions(b.version, a.version));
    throw new Error(
      `bosh.io has no version ${version} of ${series}; newest there: ${known
        .slice(0, 5)
        .map((r) => r.version)
        .join(', ')}`,
    );
  }
  const galleryVersion = galleryVersionName(release.version);
  const existing = inGallery.find((v) => v.name === galleryVersion);
  const finish = existing?.unfinished;
  const adopt = existing?.adoptable;
  const mirror: PlannedVersion[] = finish
    ? [{ release, galleryVersion, reason: 'finish', finish }]
    : adopt
      ? [{ release, galleryVersion, reason: 'adopt', adopt }]
      : presentVersions(inGallery).has(galleryVersion)
        ? []
        : [{ release, galleryVersion, reason: 'requested' }];
  const refused = refusedVersions(inGallery.filter((v) => v.name === galleryVersion));
  return { series, mirror, newest: release, deferred: [], ...refused };
}

/** Why an explicit request for a skipped version is refused (CLI, HTTP starter and the plan say the same). */
export function skippedVersionRefusal(series: string, version: string): string {
  return (
    `${series} ${version} is in BASM_SKIP_VERSIONS: the mirror never mirrors it; ` +
    'remove it from BASM_SKIP_VERSIONS to mirror it'
  );
}
