/**
 * The series workflow's results beyond mirroring: what a dry run lists (skipped versions, the plan, extensions,
 * retention's planned deletions), and retention itself after a run that mirrored its plan. Generators and pure helpers
 * only, like src/workflow.ts: no I/O, no clock.
 */

import { errorMessage } from './failures.js';
import type { SeriesLockClaim } from './series-lock.js';
import { galleryVersionName } from './versions.js';
import {
  step,
  type StepOutputs,
  type VersionResult,
  type Workflow,
  type WorkflowContext,
} from './workflow-contract.js';

type Plan = StepOutputs['resolveVersions'];

/** The gallery has the version the run is about, and the plan holds nothing to mirror. */
export function existsResult(plan: Plan): VersionResult {
  const exists: VersionResult = {
    series: plan.series,
    version: plan.newest.version,
    galleryVersion: galleryVersionName(plan.newest.version),
    action: 'exists',
  };
  if (plan.newestBlobUrl !== undefined) exists.blobUrl = plan.newestBlobUrl;
  return exists;
}

/**
 * What the plan alone decides, before any version is mirrored: the Failed versions of the mirror's that directors
 * use, reported failed (no step runs for them), and, when nothing is to be mirrored, that the gallery has the
 * version the run is about (unless that is one of the failed ones).
 */
export function decidedResults(plan: Plan): VersionResult[] {
  const refused = (plan.refused ?? []).map(({ version, galleryVersion, reason, error }): VersionResult => ({
    series: plan.series,
    version,
    galleryVersion,
    action: 'failed',
    step: 'resolveVersions',
    reason,
    error,
  }));
  const newest = galleryVersionName(plan.newest.version);
  const exists =
    plan.mirror.length === 0 && !refused.some((r) => r.galleryVersion === newest) ? [existsResult(plan)] : [];
  return [...exists, ...refused];
}

/**
 * A dry run's answer, every decision with its reason and nothing changed: skipped versions, what the plan decided
 * (exists, failed in use), what to mirror, what to extend, what to delete.
 */
export function dryRunResults(plan: Plan): VersionResult[] {
  const { series } = plan;
  const skipped = (plan.skipped ?? []).map((version): VersionResult => ({
    series,
    version,
    galleryVersion: galleryVersionName(version),
    action: 'skipped',
    reason: 'BASM_SKIP_VERSIONS: never mirrored',
  }));
  const mirror = plan.mirror.map((p): VersionResult => {
    const result = { series, version: p.release.version, galleryVersion: p.galleryVersion };
    // A drift found in a dry run fails it as the real run would, before anything is downloaded.
    if (p.drift !== undefined) {
      return {
        ...result,
        action: 'failed',
        step: 'ensureImageDefinition',
        reason: 'feature-drift',
        error: p.drift,
      };
    }
    return { ...result, action: 'planned', reason: p.reason };
  });
  const extensions = (plan.extend ?? []).map((e): VersionResult => ({
    series,
    version: e.version,
    galleryVersion: e.galleryVersion,
    action: 'planned-extend',
    reason: e.reason,
  }));
  const deletions = (plan.retention ?? []).map((d): VersionResult => ({
    series,
    version: d.version,
    galleryVersion: d.galleryVersion,
    action: 'planned-delete',
    reason: d.reason,
  }));
  return [...skipped, ...decidedResults(plan), ...mirror, ...extensions, ...deletions];
}

/**
 * Retention (BASM_KEEP_VERSIONS) after the run: only in a run that holds its series, and only when no version
 * of the run failed (a failed version may be one retention counted as kept). Each deletion is its own step,
 * which decides again on what it reads; one that fails is a failed result and the rest still go.
 */
export function* retained(
  ctx: WorkflowContext,
  series: string,
  plan: Plan,
  results: readonly VersionResult[],
  lock: SeriesLockClaim | undefined,
): Workflow<VersionResult[]> {
  if (lock === undefined || plan.retention === undefined) return [];
  if (results.some((r) => r.action === 'failed')) return [];
  const deletions: VersionResult[] = [];
  for (const { version, galleryVersion, definitionName } of plan.retention) {
    const result: VersionResult = { series, version, galleryVersion, action: 'failed' };
    try {
      const outcome = yield* step(ctx, 'deleteImageVersion', { series, version, definitionName });
      result.action = outcome.deleted ? 'deleted' : 'exists';
      result.reason = outcome.reason;
    } catch (error) {
      result.step = 'deleteImageVersion';
      result.error = errorMessage(error);
    }
    deletions.push(result);
  }
  return deletions;
}
