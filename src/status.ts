/**
 * What the mirror holds and what it would do next, per series: bosh.io's newest version, every gallery version
 * of the series (state, replication per region, who made it, director references, notification), what the
 * next run would mirror, defer or skip (decided by planSeries, so status never disagrees with the next run),
 * and the last run of any runner. Read-only: a few requests per series, no download.
 */

import type { ContainerClient } from '@azure/storage-blob';
import { listStemcellReleases, type StemcellRelease } from './boshio.js';
import type { MirrorConfig } from './config.js';
import { MIRROR_NOTIFIED_TAG, directorReferenceCount, versionOrigin, type VersionOrigin } from './cpi.js';
import { errorMessage } from './failures.js';
import type { ComputeGallery, ImageVersionState } from './gallery.js';
import type { NotificationRecords } from './notification-record.js';
import {
  extensionsThisRun,
  isSkippedVersion,
  oldestKeptRelease,
  planExtensions,
  planSeries,
  type GalleryVersionSummary,
  type PlanRules,
  type PlannedVersion,
} from './plan.js';
import { readRunRecord, type RunRecord } from './run-record.js';
import { summaryOf } from './steps-plan.js';
import type { TargetRegion } from './target-regions.js';
import { compareStemcellVersions, galleryVersionName } from './versions.js';

export interface GalleryVersionStatus {
  /** The stemcell version (bosh.io's spelling), or null when neither bosh.io nor the tags name it. */
  version: string | null;
  galleryVersion: string;
  provisioningState: string;
  regions: Array<{ name: string; state: string }>;
  createdBy: VersionOrigin;
  /** Directors that reference the version (`stemcell_references` without the mirror's own entry). */
  references: number;
  /** The mirror recorded the run as finished (`mirror_notified`: dispatched, or notifications off). */
  notified: boolean;
}

/** A bosh.io version the gallery lacks, and what the next run does about it. */
export interface MissingVersion {
  version: string;
  galleryVersion: string;
  reason: string;
}

export interface SeriesStatus {
  series: string;
  /** bosh.io's newest version; null when bosh.io could not be read. */
  newest: string | null;
  versions: GalleryVersionStatus[];
  /** What the next run mirrors (or finishes), and why. */
  missing: MissingVersion[];
  /** Missing versions the next run leaves for a later one (BASM_MAX_VERSIONS_PER_RUN). */
  deferred: MissingVersion[];
  /** Missing versions no run will mirror unless asked for, and why. */
  skipped: MissingVersion[];
  /** Versions of the mirror's the next run gives the target regions they lack, newest first, and what it adds; absent when none. */
  extend?: MissingVersion[];
  /** Versions to extend that BASM_MAX_VERSIONS_PER_RUN leaves for later runs; absent when none. */
  extendDeferred?: MissingVersion[];
  lastRun: RunRecord | null;
  /** What could not be read; the rest of the entry is what could. */
  errors?: string[];
}

export interface MirrorStatus {
  series: SeriesStatus[];
}

/** What the status plans with besides the cap: the plan's rules, and BASM_TARGET_REGIONS for extensions. */
export interface StatusRules extends PlanRules {
  targetRegions?: readonly TargetRegion[];
}

export interface StatusServices {
  config: MirrorConfig;
  gallery: ComputeGallery;
  vhdContainer: ContainerClient;
  notificationRecords: NotificationRecords;
}

type ListedVersion = ImageVersionState & { definitionName: string };

/** Key of a version in the set of versions whose finished run is recorded in storage, not in a tag. */
export function recordedKey(definitionName: string, versionName: string): string {
  return `${definitionName}/${versionName}`.toLowerCase();
}

const PLAN_REASONS: Record<PlannedVersion['reason'], string> = {
  newest: 'newest on bosh.io',
  'catch-up': 'a gap above the oldest version the mirror made',
  'retry-failed': 'Azure failed it: recreated if the mirror made it or it holds the same image',
  requested: 'requested',
  // A director's version the mirror has not adopted yet is unfinished too: the run adds the mirror's reference.
  finish: 'no record of a finished run: wait for it, adopt a director’s, notify',
  adopt:
    'untagged, made by another tool: verify it against the stemcell, then adopt it (BASM_ADOPT_UNTAGGED)',
};

/**
 * The pure part: one series' status from what bosh.io lists (null: could not be read), the gallery's versions
 * of the series, the cap and the last run.
 */
export function seriesStatusOf(
  series: string,
  releases: readonly StemcellRelease[] | null,
  inGallery: readonly ListedVersion[],
  maxVersionsPerRun: number,
  lastRun: RunRecord | null,
  /** Versions whose finished run the mirror recorded in its storage because Azure refused the tag. */
  recordedFinished: ReadonlySet<string> = new Set(),
  /** BASM_ADOPT_UNTAGGED: untagged versions another tool made are verified and adopted. */
  adoptUntagged = false,
  /** BASM_SKIP_VERSIONS, BASM_KEEP_VERSIONS and BASM_TARGET_REGIONS, as the next run plans with them. */
  rules: StatusRules = {},
): SeriesStatus {
  const recorded = (v: ListedVersion) => recordedFinished.has(recordedKey(v.definitionName, v.name));
  const status: SeriesStatus = {
    series,
    newest: null,
    versions: galleryVersionsOf(releases, inGallery, recorded),
    missing: [],
    deferred: [],
    skipped: [],
    lastRun,
  };
  if (releases === null || releases.length === 0) return status;

  // As resolveVersions decides: a run recorded in storage is finished too.
  const summaries = inGallery.map((v) => {
    const summary = summaryOf(v, adoptUntagged);
    if (recorded(v)) delete summary.unfinished;
    return summary;
  });
  const plan = planSeries(series, releases, summaries, maxVersionsPerRun, rules);
  status.newest = plan.newest.version;
  status.missing = plan.mirror.map((p) => ({
    version: p.release.version,
    galleryVersion: p.galleryVersion,
    reason: PLAN_REASONS[p.reason],
  }));
  status.deferred = plan.deferred.map((version) => ({
    version,
    galleryVersion: galleryVersionName(version),
    reason: 'BASM_MAX_VERSIONS_PER_RUN reached; a later run mirrors it',
  }));

  const decided = new Set([...status.missing, ...status.deferred].map((m) => m.galleryVersion));
  const inUse = new Set((plan.refused ?? []).map((r) => r.galleryVersion));
  status.skipped = skippedVersionsOf(releases, inGallery, summaries, decided, rules, inUse);
  if (rules.targetRegions !== undefined) {
    Object.assign(status, extensionsOf(summaries, rules.targetRegions, maxVersionsPerRun));
  }
  return status;
}

/** What the next run extends (and what it leaves for later runs), as resolveVersions plans it. */
function extensionsOf(
  summaries: readonly GalleryVersionSummary[],
  targetRegions: readonly TargetRegion[],
  maxVersionsPerRun: number,
): Pick<SeriesStatus, 'extend' | 'extendDeferred'> {
  const all = planExtensions(summaries, targetRegions);
  const { extend = [], extendDeferred = [] } = extensionsThisRun(all, maxVersionsPerRun);
  const later = all
    .filter((e) => extendDeferred.includes(e.version))
    .map(({ version, galleryVersion, reason }) => ({
      version,
      galleryVersion,
      reason: `BASM_MAX_VERSIONS_PER_RUN reached; a later run extends it (${reason})`,
    }));
  return {
    ...(extend.length > 0
      ? { extend: extend.map(({ version, galleryVersion, reason }) => ({ version, galleryVersion, reason })) }
      : {}),
    ...(later.length > 0 ? { extendDeferred: later } : {}),
  };
}

/** The gallery's versions of the series, in version order, each named as bosh.io spells it where it can be. */
function galleryVersionsOf(
  releases: readonly StemcellRelease[] | null,
  inGallery: readonly ListedVersion[],
  recorded: (v: ListedVersion) => boolean,
): GalleryVersionStatus[] {
  const byGalleryVersion = new Map((releases ?? []).map((r) => [galleryVersionName(r.version), r.version]));
  return inGallery
    .map((v): GalleryVersionStatus => ({
      version: byGalleryVersion.get(v.name) ?? v.tags['version'] ?? null,
      galleryVersion: v.name,
      provisioningState: v.provisioningState,
      regions: (v.regions ?? []).map(({ name, state }) => ({ name, state })),
      createdBy: versionOrigin(v.tags),
      references: directorReferenceCount(v.tags),
      notified: v.tags[MIRROR_NOTIFIED_TAG] !== undefined || recorded(v),
    }))
    .sort((a, b) => compareStemcellVersions(a.galleryVersion, b.galleryVersion));
}

const FAILED_IN_USE =
  'Azure failed it and a director uses it: every run reports it failed, downloading nothing, until an operator ' +
  'removes the failed region from it or deletes it';

/** bosh.io's versions the gallery lacks and the next run does not mirror (`decided`), oldest first, with why. */
function skippedVersionsOf(
  releases: readonly StemcellRelease[],
  inGallery: readonly ListedVersion[],
  summaries: readonly GalleryVersionSummary[],
  decided: ReadonlySet<string>,
  rules: PlanRules,
  /** Failed versions of the mirror's that directors use: the plan reports them failed, never mirrors them. */
  failedInUse: ReadonlySet<string>,
): MissingVersion[] {
  const present = new Set(inGallery.filter((v) => v.provisioningState !== 'Failed').map((v) => v.name));
  const failed = new Set(inGallery.filter((v) => v.provisioningState === 'Failed').map((v) => v.name));
  const oldestMirrored = [...releases]
    .sort((a, b) => compareStemcellVersions(a.version, b.version))
    .find((r) => summaries.some((s) => s.name === galleryVersionName(r.version) && s.createdByMirror));
  // BASM_KEEP_VERSIONS bounds catch-up to bosh.io's newest N (planSeries): older ones are not gaps.
  const keep = rules.keep ?? 0;
  const keptFloor = oldestKeptRelease(
    releases.filter((r) => !isSkippedVersion(r.version, rules.skip)),
    keep,
  );
  return releases
    .filter((r) => !present.has(galleryVersionName(r.version)) && !decided.has(galleryVersionName(r.version)))
    .sort((a, b) => compareStemcellVersions(a.version, b.version))
    .map((r) => ({
      version: r.version,
      galleryVersion: galleryVersionName(r.version),
      reason: isSkippedVersion(r.version, rules.skip)
        ? 'BASM_SKIP_VERSIONS: never mirrored'
        : failedInUse.has(galleryVersionName(r.version))
          ? FAILED_IN_USE
          : keptFloor !== undefined && compareStemcellVersions(r.version, keptFloor.version) < 0
            ? `older than the newest ${keep} (BASM_KEEP_VERSIONS): retention would delete it again`
            : failed.has(galleryVersionName(r.version))
              ? 'Azure failed it and the mirror did not make it: it is left to whoever did'
              : oldestMirrored === undefined
                ? 'older than the newest, and the gallery holds no version the mirror made: no backfill'
                : `older than ${oldestMirrored.version}, the oldest version the mirror made: no backfill below it`,
    }));
}

/** Runs `work` over `items`, at most `limit` at a time, keeping their order. */
async function inParallel<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// Per-version reads of one series at once: enough to be quick, few enough to stay far from ARM's throttling.
const VERSION_READS_AT_ONCE = 8;

/** One series, read from bosh.io, the gallery (a GET with replication status per version) and its run record. */
export async function readSeriesStatus(services: StatusServices, series: string): Promise<SeriesStatus> {
  const { config, gallery, vhdContainer } = services;
  const errors: string[] = [];
  const attempt = async <T>(what: string, work: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      errors.push(`${what}: ${errorMessage(error)}`);
      return fallback;
    }
  };
  const [releases, listed, lastRun] = await Promise.all([
    attempt<StemcellRelease[] | null>(
      'bosh.io',
      () => listStemcellReleases(config.boshioUrl, series, { timeoutMs: config.httpTimeoutMs }),
      null,
    ),
    attempt<ListedVersion[]>('gallery', () => gallery.listSeriesVersions(series, config.gallery), []),
    attempt<RunRecord | null>('last run', () => readRunRecord(vhdContainer, series), null),
  ]);
  // The list carries no replication status: read each version with it (a version gone meanwhile is left out).
  const detailed = await inParallel(listed, VERSION_READS_AT_ONCE, (v) =>
    attempt<ListedVersion | undefined>(
      `gallery version ${v.definitionName}/${v.name}`,
      async () => {
        const state = await gallery.getImageVersion(v.definitionName, v.name);
        return state && { ...state, definitionName: v.definitionName };
      },
      v,
    ),
  );
  const present = detailed.filter((v): v is ListedVersion => v !== undefined);
  // Only versions without the tag can have their finished run recorded in storage instead.
  const recordedFinished = new Set<string>();
  await inParallel(
    present.filter((v) => v.tags[MIRROR_NOTIFIED_TAG] === undefined),
    VERSION_READS_AT_ONCE,
    async (v) => {
      const found = await attempt<string | undefined>(
        `notification record of ${v.definitionName}/${v.name}`,
        () => services.notificationRecords.find(v.definitionName, v.name),
        undefined,
      );
      if (found !== undefined) recordedFinished.add(recordedKey(v.definitionName, v.name));
    },
  );
  const status = seriesStatusOf(
    series,
    releases,
    present,
    config.maxVersionsPerRun,
    lastRun,
    recordedFinished,
    config.adoptUntagged,
    { skip: config.skipVersions, keep: config.keepVersions, targetRegions: config.targetRegions },
  );
  if (errors.length > 0) status.errors = errors;
  return status;
}

export async function readMirrorStatus(
  services: StatusServices,
  series: readonly string[],
): Promise<MirrorStatus> {
  return { series: await Promise.all(series.map((s) => readSeriesStatus(services, s))) };
}

/** Whether everything could be read (the CLI's exit status). */
export function isComplete(status: MirrorStatus): boolean {
  return status.series.every((s) => s.errors === undefined);
}

function table(rows: string[][]): string[] {
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

function versionList(entries: readonly MissingVersion[]): string {
  if (entries.length <= 3) return entries.map((e) => `${e.version} (${e.reason})`).join(', ');
  // Many skipped versions share one reason: say it once.
  const first = entries[0];
  const last = entries.at(-1);
  return `${entries.length} versions, ${first?.version} to ${last?.version} (${last?.reason})`;
}

/** The terminal view: a compact table per series, then what is missing and the last run. */
export function formatStatus(status: MirrorStatus): string {
  const lines: string[] = [];
  for (const s of status.series) {
    lines.push(`${s.series}  (newest on bosh.io: ${s.newest ?? 'unknown'})`);
    if (s.versions.length === 0) {
      lines.push('  no versions in the gallery');
    } else {
      const rows = [['VERSION', 'GALLERY', 'STATE', 'REGIONS', 'BY', 'REFS', 'NOTIFIED']];
      for (const v of s.versions) {
        rows.push([
          v.version ?? '-',
          v.galleryVersion,
          v.provisioningState,
          v.regions.map((r) => `${r.name}:${r.state}`).join(',') || '-',
          v.createdBy,
          String(v.references),
          v.notified ? 'yes' : 'no',
        ]);
      }
      lines.push(...table(rows).map((line) => `  ${line}`));
    }
    if (s.missing.length > 0) lines.push(`  next run: ${versionList(s.missing)}`);
    if (s.deferred.length > 0) lines.push(`  deferred: ${versionList(s.deferred)}`);
    if (s.skipped.length > 0) lines.push(`  skipped:  ${versionList(s.skipped)}`);
    if (s.extend !== undefined) lines.push(`  extend:   ${versionList(s.extend)}`);
    if (s.extendDeferred !== undefined) lines.push(`  extend later: ${versionList(s.extendDeferred)}`);
    if (s.newest !== null && s.missing.length === 0 && s.extend === undefined)
      lines.push('  next run: nothing to do');
    const run = s.lastRun;
    lines.push(
      run === null
        ? '  last run: none recorded'
        : `  last run: ${run.finishedAt} by ${run.runner}, ${run.outcome} (${run.versions
            .map((v) => `${v.version ?? '-'} ${v.action}`)
            .join(', ')})`,
    );
    for (const error of s.errors ?? []) lines.push(`  could not read ${error}`);
    lines.push('');
  }
  return lines.join('\n');
}
