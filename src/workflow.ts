/**
 * The mirror workflow, as the numbered steps of docs/architecture.md (workflow). Decisions and ordering only:
 * every step with I/O is a named activity (src/steps-*.ts, bound in src/steps.ts) reached through a WorkflowContext, so the same
 * generator runs under the Durable Functions replay engine (functions/) and in-process (src/cli.ts).
 * Nothing here may read the clock, draw random numbers or do I/O: the replay engine requires it.
 */

import { errorMessage } from './failures.js';
import { decidedResults, dryRunResults, retained } from './series-results.js';
import { describeHolder, type SeriesLockClaim } from './series-lock.js';
import { brief, seriesStatus } from './run-status.js';
import type { PlannedExtension } from './plan.js';
import { describeFailedRegions, replicationProgress, type ReplicationProgress } from './target-regions.js';
import { galleryVersionName } from './versions.js';
import {
  StepFailure,
  step,
  versionInstanceId,
  type ImageVersionStart,
  type ImageVersionStatus,
  type MirrorRequest,
  type MirrorVersionInput,
  type SeriesResult,
  type StemcellRef,
  type StepInputs,
  type StepOutputs,
  type VersionResult,
  type VersionStatus,
  type VersionStep,
  type Workflow,
  type WorkflowContext,
} from './workflow-contract.js';

// The contract stays importable from here, so callers name one module for the workflow.
export * from './workflow-contract.js';

/** A failed sub-orchestration reports `reason \n details`, the details a stack trace: keep the reason. */
function subOrchestrationFailure(error: unknown): string {
  return (errorMessage(error).split('\n')[0] ?? '').trim();
}

/** The context whose steps carry the run's claim on its series, so each step proves the run still holds it. */
function underSeriesLock(ctx: WorkflowContext, lock: SeriesLockClaim): WorkflowContext {
  return { ...ctx, callStep: (name, input) => ctx.callStep(name, { ...input, lock }) };
}

/**
 * Takes the series for this run, waiting (a durable timer per poll interval) while another run holds it, as
 * long as the settings say (acquireSeriesLock's output, never the input); undefined once taken, else the
 * failed result that names the holder.
 */
function* takeSeries(
  ctx: WorkflowContext,
  request: MirrorRequest,
  claim: SeriesLockClaim,
): Workflow<VersionResult | undefined> {
  const { series } = request;
  const waitingSince = ctx.currentTime().getTime();
  const failed = (error: string): VersionResult => ({
    series,
    version: request.version ?? null,
    galleryVersion: null,
    action: 'failed',
    step: 'acquireSeriesLock',
    error,
  });
  for (;;) {
    let taken: StepOutputs['acquireSeriesLock'];
    try {
      taken = yield* step(ctx, 'acquireSeriesLock', { claim, run: ctx.runName() });
    } catch (error) {
      return failed(errorMessage(error));
    }
    if (taken.acquired) return undefined;
    const { waitSeconds, pollIntervalSeconds } = taken.wait;
    const next = ctx.currentTime().getTime() + pollIntervalSeconds * 1000;
    if (next > waitingSince + waitSeconds * 1000) {
      return failed(
        `${describeHolder(series, taken)}; this run waited ${waitSeconds} s and leaves the series to it ` +
          '(BASM_SERIES_LOCK_WAIT_SECONDS)',
      );
    }
    const { wait: _, ...holder } = taken;
    ctx.setStatus({ series, waitingForSeries: holder });
    yield ctx.createTimer(new Date(next));
  }
}

/**
 * Records the run for `status` (src/run-record.ts), still holding the series, so a run that lost it records
 * nothing; a record that cannot be written never fails the run.
 */
function* recorded(
  ctx: WorkflowContext,
  series: string,
  startedAt: Date,
  results: VersionResult[],
): Workflow<SeriesResult> {
  try {
    yield* step(ctx, 'recordRun', {
      series,
      runner: ctx.runner,
      startedAt: startedAt.toISOString(),
      results,
    });
  } catch {
    // The step logged why; `status` then shows the previous run, which is the truth about what it knows.
  }
  return { series, results };
}

/**
 * Orchestrator `mirrorSeries`: take the series (one run per series, whichever runner), decide, then mirror
 * each chosen version oldest first, record the run, and give the series back whatever happened.
 */
export function* mirrorSeries(ctx: WorkflowContext, request: MirrorRequest): Workflow<SeriesResult> {
  const { series } = request;
  const startedAt = ctx.currentTime();
  // A dry run changes nothing, so it takes no lock and never waits for one.
  if (request.dryRun) return yield* mirrorHeldSeries(ctx, request, startedAt);
  const claim: SeriesLockClaim = { series, leaseId: ctx.newGuid(`series-lock/${series}`) };
  const refused = yield* takeSeries(ctx, request, claim);
  if (refused !== undefined) {
    ctx.setStatus({ series, results: [refused] });
    return { series, results: [refused] };
  }
  try {
    const held = underSeriesLock(ctx, claim);
    const { results } = yield* mirrorHeldSeries(held, request, startedAt, claim);
    return yield* recorded(held, series, startedAt, results);
  } finally {
    try {
      yield* step(ctx, 'releaseSeriesLock', { claim });
    } catch {
      // A lock that cannot be given back goes stale and is taken over by the next run.
    }
  }
}

function* mirrorHeldSeries(
  ctx: WorkflowContext,
  request: MirrorRequest,
  startedAt: Date,
  lock?: SeriesLockClaim,
): Workflow<SeriesResult> {
  const { series } = request;
  let plan: StepOutputs['resolveVersions'];
  try {
    const input: StepInputs['resolveVersions'] = { series };
    if (request.version !== undefined) input.version = request.version;
    if (request.dryRun) input.dryRun = true;
    plan = yield* step(ctx, 'resolveVersions', input);
  } catch (error) {
    const result: VersionResult = {
      series,
      version: request.version ?? null,
      galleryVersion: null,
      action: 'failed',
      step: 'resolveVersions',
      error: errorMessage(error),
    };
    ctx.setStatus(seriesStatus(series, [], [result]));
    return { series, results: [result] };
  }

  const extensions = plan.extend ?? [];
  if (request.dryRun) return { series, results: dryRunResults(plan) };
  const results: VersionResult[] = decidedResults(plan);
  if (plan.mirror.length === 0 && extensions.length === 0 && plan.retention === undefined)
    return { series, results };

  const planned = plan.mirror.map((p) => p.release.version);
  for (const { release, galleryVersion, finish, adopt } of plan.mirror) {
    const instanceId = versionInstanceId(series, release.version, startedAt);
    // The version's own instance shows its step, bytes uploaded and provisioning state.
    ctx.setStatus(seriesStatus(series, planned, results, { version: release.version, instanceId }));
    const input: MirrorVersionInput = { series, version: release.version };
    if (finish) input.finish = { definitionName: finish.definitionName };
    if (adopt) input.adopt = true;
    let result: VersionResult;
    try {
      result = (yield ctx.callMirrorVersion(lock ? { ...input, lock } : input, instanceId)) as VersionResult;
    } catch (error) {
      result = {
        series,
        version: release.version,
        galleryVersion,
        action: 'failed',
        error: subOrchestrationFailure(error),
      };
    }
    results.push(result);
  }
  // New versions got every target region when created; older ones of the mirror's get the ones they lack.
  for (const extension of extensions) {
    const show = (extending: VersionStatus): void =>
      ctx.setStatus({ ...seriesStatus(series, planned, results), extending });
    results.push(yield* extendVersion(ctx, series, extension, show));
  }
  results.push(...(yield* retained(ctx, series, plan, results, lock)));
  ctx.setStatus(seriesStatus(series, planned, results));
  return { series, results };
}

/** One version the mirror created, given the target regions it lacks, then waited for until replicated. */
function* extendVersion(
  ctx: WorkflowContext,
  series: string,
  extension: PlannedExtension,
  show: (status: VersionStatus) => void,
): Workflow<VersionResult> {
  const ref: StemcellRef = { series, version: extension.version };
  const { galleryVersion, reason } = extension;
  const status: VersionStatus = { ...ref, galleryVersion, step: 'extendImageVersion' };
  const enter = (next: VersionStep, extra: Partial<VersionStatus> = {}): void => {
    Object.assign(status, extra, { step: next });
    show({ ...status });
  };
  const result: VersionResult = { ...ref, galleryVersion, action: 'failed', reason };
  try {
    enter('extendImageVersion');
    const extended = yield* step(ctx, 'extendImageVersion', {
      ...ref,
      definitionName: extension.definitionName,
    });
    enter('waitForImageVersion');
    yield* waitForImageVersion(ctx, ref, extended.definitionName, enter);
    result.action = 'extended';
  } catch (error) {
    result.step = error instanceof StepFailure ? error.step : status.step;
    result.error = errorMessage(error);
  }
  return result;
}

/** Azure gave up on the version, or on its replication to a region: which region, and Azure's words. */
function versionFailure(
  state: ImageVersionStatus,
  replication: ReplicationProgress,
  definitionName: string,
  galleryVersion: string,
): string {
  const where = `image version ${definitionName}/${galleryVersion}`;
  const regions = describeFailedRegions(replication.failed);
  if (state.provisioningState === 'Failed') {
    const why =
      replication.failed.length > 0 ? ` in ${regions}` : state.errorMessage ? `: ${state.errorMessage}` : '';
    return `Azure reports ${where} Failed${why}; the next run deletes and recreates it, unless a director uses it`;
  }
  return (
    `Azure reports the replication of ${where} Failed in ${regions}; check the region's quota and access, ` +
    'then delete the version: the next run creates it again'
  );
}

/** The wait for Azure to finish the image version: polls at the settings' interval until a deadline. */
function* waitForImageVersion(
  ctx: WorkflowContext,
  ref: StemcellRef,
  definitionName: string,
  enter: (next: VersionStep, extra?: Partial<VersionStatus>) => void,
): Workflow<ImageVersionStatus> {
  const galleryVersion = galleryVersionName(ref.version);
  const waitingSince = ctx.currentTime().getTime();
  for (;;) {
    const state = yield* step(ctx, 'getImageVersionState', { ...ref, definitionName });
    const regions = state.regions !== undefined ? { regions: state.regions } : {};
    enter('waitForImageVersion', { provisioningState: state.provisioningState, ...regions });
    const replication = replicationProgress(state.regions);
    // Ready only once every target region has its replicas: a director's first VM there must not wait.
    if (state.provisioningState === 'Succeeded' && replication.complete) return state;
    if (state.provisioningState === 'Failed' || replication.failed.length > 0) {
      throw new StepFailure(
        'waitForImageVersion',
        versionFailure(state, replication, definitionName, galleryVersion),
      );
    }
    const { pollIntervalSeconds, deadlineMinutes } = state.monitor;
    const next = new Date(ctx.currentTime().getTime() + pollIntervalSeconds * 1000);
    if (next.getTime() > waitingSince + deadlineMinutes * 60_000) {
      throw new StepFailure(
        'waitForImageVersion',
        `image version ${definitionName}/${galleryVersion} is still ${state.provisioningState}` +
          `${replication.pending.length > 0 ? ` (replicating to ${replication.pending.join(', ')})` : ''} after ` +
          `${deadlineMinutes} minutes; the next run finishes it`,
      );
    }
    yield ctx.createTimer(next);
  }
}

/** Orchestrator `mirrorVersion`: one stemcell version from bosh.io to a ready gallery image version. */
export function* mirrorVersion(ctx: WorkflowContext, input: MirrorVersionInput): Workflow<VersionResult> {
  // Only the stemcell's name is taken from the input: every step re-reads the rest.
  const ref: StemcellRef = { series: input.series, version: input.version };
  // The claim only proves a hold: every step checks it against the lease on its own series' lock.
  if (input.lock) ctx = underSeriesLock(ctx, { series: input.lock.series, leaseId: input.lock.leaseId });
  const galleryVersion = galleryVersionName(ref.version);
  const status: VersionStatus = { ...ref, galleryVersion, step: 'downloadAndExtract' };
  const enter = (next: VersionStep, extra: Partial<VersionStatus> = {}): void => {
    Object.assign(status, extra, { step: next });
    ctx.setStatus({ ...status, ...(status.error !== undefined ? { error: brief(status.error) } : {}) });
  };
  const result: VersionResult = { ...ref, galleryVersion, action: 'failed' };

  try {
    let started: ImageVersionStart;
    if (input.finish) {
      started = {
        outcome: 'started',
        provisioningState: 'unknown',
        definitionName: input.finish.definitionName,
      };
    } else if (input.adopt) {
      // The image is in the gallery already: verify the stemcell, then the step compares and tags; no upload.
      enter('downloadAndExtract');
      yield* step(ctx, 'downloadAndExtract', ref);
      enter('adoptImageVersion');
      const adopted = yield* step(ctx, 'adoptImageVersion', ref);
      if (adopted.blobUrl !== undefined) result.blobUrl = adopted.blobUrl;
      started = { outcome: 'exists', provisioningState: 'Succeeded', definitionName: adopted.definitionName };
    } else {
      enter('downloadAndExtract');
      const stemcell = yield* step(ctx, 'downloadAndExtract', { ...ref, overlapUpload: true });

      enter('uploadVhd');
      const uploaded = yield* step(ctx, 'uploadVhd', { ...ref, imageSha256: stemcell.imageSha256 });
      result.blobUrl = uploaded.blobUrl;
      result.bytesUploaded = uploaded.bytesUploaded;

      enter('ensureImageDefinition', { bytesUploaded: uploaded.bytesUploaded });
      yield* step(ctx, 'ensureImageDefinition', ref);

      enter('createImageVersion');
      started = yield* step(ctx, 'createImageVersion', ref);
    }

    if (started.outcome === 'started') {
      enter('waitForImageVersion', { provisioningState: started.provisioningState });
      const ready = yield* waitForImageVersion(ctx, ref, started.definitionName, enter);
      if (result.blobUrl === undefined && ready.blobUrl !== undefined) result.blobUrl = ready.blobUrl;

      enter('notify');
      yield* step(ctx, 'notify', { ...ref, definitionName: started.definitionName });
      if (ready.deleteSourceBlob) {
        enter('deleteSourceBlob');
        try {
          yield* step(ctx, 'deleteSourceBlob', { ...ref, definitionName: started.definitionName });
        } catch {
          // The blob stays (it costs storage, nothing else); retention deletes it with the version.
        }
      }
      result.action = 'created';
    } else {
      result.action = 'exists';
    }
    enter('done');
  } catch (error) {
    result.action = 'failed';
    result.step = error instanceof StepFailure ? error.step : status.step;
    result.error = errorMessage(error);
    enter(status.step, { error: result.error });
  }

  // Temp files go whatever happened: a retry or the next run extracts again if it needs them.
  try {
    yield* step(ctx, 'cleanup', ref);
  } catch {
    // A leftover temp file is not worth failing a mirrored version for; the next cleanup removes it.
  }
  return result;
}
