/**
 * The mirror workflow, as the numbered steps of docs/architecture.md (workflow). Decisions and ordering only:
 * every step with I/O is a named activity (src/steps.ts) reached through a WorkflowContext, so the same
 * generator runs under the Durable Functions replay engine (functions/) and in-process (src/cli.ts).
 * Nothing here may read the clock, draw random numbers or do I/O: the replay engine requires it.
 */

import type { StemcellRelease } from './boshio.js';
import { errorMessage } from './failures.js';
import type { StemcellManifest } from './manifest.js';
import type { SeriesPlan } from './plan.js';
import { describeHolder, type SeriesLockAcquisition, type SeriesLockClaim } from './series-lock.js';
import { galleryVersionName } from './versions.js';

export const ORCHESTRATORS = { mirrorSeries: 'mirrorSeries', mirrorVersion: 'mirrorVersion' } as const;

/** Activity names, as registered with the Functions host. */
export type StepName =
  | 'acquireSeriesLock'
  | 'resolveVersions'
  | 'downloadAndExtract'
  | 'uploadVhd'
  | 'ensureImageDefinition'
  | 'createImageVersion'
  | 'getImageVersionState'
  | 'notify'
  | 'cleanup'
  | 'releaseSeriesLock';

/**
 * Retries for transient failures (network, 429, 5xx) only: a step returns permanent failures as a
 * `{ ok: false }` value, which is never retried, because Durable retry policies cannot tell the two apart.
 */
export interface RetryPolicy {
  maxAttempts: number;
  firstRetryIntervalMs: number;
  backoffCoefficient: number;
  maxRetryIntervalMs: number;
}

const network: RetryPolicy = {
  maxAttempts: 5,
  firstRetryIntervalMs: 15_000,
  backoffCoefficient: 2,
  maxRetryIntervalMs: 300_000,
};
export const STEP_RETRY: Record<StepName, RetryPolicy> = {
  acquireSeriesLock: network,
  resolveVersions: network,
  // A 1.3 GB download that breaks resumes by Range inside the step; a retry here starts it over.
  downloadAndExtract: { ...network, maxAttempts: 3, firstRetryIntervalMs: 60_000 },
  uploadVhd: network,
  ensureImageDefinition: network,
  createImageVersion: network,
  getImageVersionState: network,
  // A dispatch whose answer was lost would run the workflow twice; a missed one is sent by the next run.
  notify: { ...network, maxAttempts: 3 },
  cleanup: { ...network, maxAttempts: 2 },
  // A lock left behind is taken over once stale; a release that keeps failing is not worth a long wait.
  releaseSeriesLock: { ...network, maxAttempts: 3 },
};

/** What a step returns: permanent failures are values, transient ones are thrown (and retried). */
export type StepOutcome<T> = { ok: true; value: T } | { ok: false; error: string };

export interface ExtractedStemcellSummary {
  series: string;
  version: string;
  manifest: StemcellManifest;
  tarballSha256: string;
  imageSha1: string;
  imageSha256: string;
  vhdSize: number;
  dataBytes: number;
}

export interface UploadedVhd {
  blobUrl: string;
  bytesUploaded: number;
  dataBytes: number;
  alreadyComplete: boolean;
}

export interface ImageDefinitionRef {
  definitionName: string;
  created: boolean;
}

export interface ImageVersionStart {
  /** `exists`: the gallery already had this very image; `started`: a PUT is (or was already) under way. */
  outcome: 'exists' | 'started';
  provisioningState: string;
}

export interface ImageVersionStatus {
  provisioningState: string;
  errorMessage?: string;
}

export interface StepInputs {
  /** `run` says who the run is (the activity adds the process and host). */
  acquireSeriesLock: { claim: SeriesLockClaim; run: string };
  resolveVersions: { series: string; version?: string };
  downloadAndExtract: { release: StemcellRelease };
  uploadVhd: { release: StemcellRelease; stemcell: ExtractedStemcellSummary };
  ensureImageDefinition: { series: string; manifest: StemcellManifest };
  createImageVersion: {
    definitionName: string;
    galleryVersion: string;
    blobUrl: string;
    release: StemcellRelease;
    stemcell: ExtractedStemcellSummary;
  };
  getImageVersionState: { definitionName: string; galleryVersion: string };
  notify: { definitionName: string; galleryVersion: string };
  cleanup: { series: string; version: string };
  releaseSeriesLock: { claim: SeriesLockClaim };
}

/**
 * What every step of a run that holds its series carries besides its own input: the claim, so the step can
 * prove the run still holds the series before it acts (see src/series-lock.ts).
 */
export interface UnderSeriesLock {
  lock?: SeriesLockClaim;
}

export interface StepOutputs {
  acquireSeriesLock: SeriesLockAcquisition;
  resolveVersions: SeriesPlan & { newestBlobUrl?: string };
  downloadAndExtract: ExtractedStemcellSummary;
  uploadVhd: UploadedVhd;
  ensureImageDefinition: ImageDefinitionRef;
  createImageVersion: ImageVersionStart;
  getImageVersionState: ImageVersionStatus;
  notify: { notified: boolean };
  cleanup: { removed: boolean };
  releaseSeriesLock: { released: boolean };
}

/** The step a version is in, or ended in: shown in the Durable custom status and the CLI progress. */
export type VersionStep = Exclude<StepName, 'resolveVersions'> | 'waitForImageVersion' | 'done';

export interface MirrorRequest {
  series: string;
  /** Mirror exactly this version (HTTP body, `--version`). */
  version?: string;
  /** Decide and report, change nothing. */
  dryRun?: boolean;
}

export interface MirrorVersionInput {
  release: StemcellRelease;
  galleryVersion: string;
  /** The version exists already (an earlier run did not finish): only wait for it and notify. */
  finish?: { definitionName: string; blobUrl?: string };
  /** The series run's claim on its series, carried by every step of the version. */
  lock?: SeriesLockClaim;
}

export type VersionAction = 'created' | 'exists' | 'planned' | 'failed';

/** One line of the CLI's `--json` results, and of the orchestration output. */
export interface VersionResult {
  series: string;
  version: string | null;
  galleryVersion: string | null;
  action: VersionAction;
  blobUrl?: string;
  error?: string;
  /** Where a failed version stopped. */
  step?: VersionStep | 'resolveVersions' | 'acquireSeriesLock';
  bytesUploaded?: number;
}

export interface SeriesResult {
  series: string;
  results: VersionResult[];
}

export interface VersionStatus {
  series: string;
  version: string;
  galleryVersion: string;
  step: VersionStep;
  bytesUploaded?: number;
  provisioningState?: string;
  error?: string;
}

/** How often and for how long the image version is polled; from settings, passed in as input. */
export interface MonitorSettings {
  pollIntervalSeconds: number;
  deadlineMinutes: number;
  /** How long a run waits for its series while another run holds it (seconds; default 0: it reports at once). */
  seriesLockWaitSeconds?: number;
}

/** The input of orchestrator `mirrorSeries`: settings travel as input so replays see the same values. */
export interface MirrorSeriesInput {
  request: MirrorRequest;
  monitor: MonitorSettings;
}

/**
 * The orchestration's view of the runtime. `Task` is opaque: the generator yields it and receives the
 * task's result back (Durable Functions semantics). A failed task throws at the `yield`.
 */
export interface WorkflowContext {
  callStep<N extends StepName>(name: N, input: StepInputs[N] & UnderSeriesLock): unknown;
  callMirrorVersion(input: MirrorVersionInput & { monitor: MonitorSettings }, instanceId: string): unknown;
  createTimer(fireAt: Date): unknown;
  /** Deterministic "now" (the replay engine's current orchestration time). */
  currentTime(): Date;
  setStatus(status: unknown): void;
  /** A GUID that is the same on every replay of this point of the run (Durable's `newGuid`). */
  newGuid(name: string): string;
  /** Who this run is, for the series lock: `command line`, `orchestration mirror-<series>`. */
  runName(): string;
}

export type Workflow<R> = Generator<unknown, R, unknown>;

/** Instance id of a series' orchestration: one per series, so two starts never run at once. */
export function seriesInstanceId(series: string): string {
  return `mirror-${series}`;
}

/**
 * Instance id of one version's sub-orchestration: unique per run of the series (a version mirrored again
 * after a failure gets a fresh instance) yet the same on every replay, since the run's start time is.
 */
export function versionInstanceId(series: string, version: string, runStartedAt: Date): string {
  const stamp = runStartedAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `mirror-${series}-${version}-${stamp}`;
}

function* step<N extends StepName>(
  ctx: WorkflowContext,
  name: N,
  input: StepInputs[N],
): Workflow<StepOutputs[N]> {
  const outcome = (yield ctx.callStep(name, input)) as StepOutcome<StepOutputs[N]>;
  if (!outcome.ok) throw new StepFailure(name, outcome.error);
  return outcome.value;
}

/** A step that failed permanently, or exhausted its retries. */
export class StepFailure extends Error {
  constructor(
    readonly step: VersionStep | 'resolveVersions' | 'acquireSeriesLock',
    message: string,
  ) {
    super(message);
    this.name = 'StepFailure';
  }
}

/** A failed sub-orchestration reports `reason \n details`, the details a stack trace: keep the reason. */
function subOrchestrationFailure(error: unknown): string {
  return (errorMessage(error).split('\n')[0] ?? '').trim();
}

/** The context whose steps carry the run's claim on its series, so each step proves the run still holds it. */
function underSeriesLock(ctx: WorkflowContext, lock: SeriesLockClaim): WorkflowContext {
  return { ...ctx, callStep: (name, input) => ctx.callStep(name, { ...input, lock }) };
}

/**
 * Takes the series for this run, waiting (a durable timer per poll interval) while another run holds it, at
 * most `seriesLockWaitSeconds`; undefined once taken, else the failed result that names the holder.
 */
function* takeSeries(
  ctx: WorkflowContext,
  request: MirrorRequest,
  monitor: MonitorSettings,
  claim: SeriesLockClaim,
): Workflow<VersionResult | undefined> {
  const { series } = request;
  const waitSeconds = monitor.seriesLockWaitSeconds ?? 0;
  const waitUntil = ctx.currentTime().getTime() + waitSeconds * 1000;
  const failed = (error: string): VersionResult => ({
    series,
    version: request.version ?? null,
    galleryVersion: null,
    action: 'failed',
    step: 'acquireSeriesLock',
    error,
  });
  for (;;) {
    let taken: SeriesLockAcquisition;
    try {
      taken = yield* step(ctx, 'acquireSeriesLock', { claim, run: ctx.runName() });
    } catch (error) {
      return failed(errorMessage(error));
    }
    if (taken.acquired) return undefined;
    const next = ctx.currentTime().getTime() + monitor.pollIntervalSeconds * 1000;
    if (next > waitUntil) {
      return failed(
        `${describeHolder(series, taken)}; this run waited ${waitSeconds} s and leaves the series to it ` +
          '(BASM_SERIES_LOCK_WAIT_SECONDS)',
      );
    }
    ctx.setStatus({ series, waitingForSeries: taken });
    yield ctx.createTimer(new Date(next));
  }
}

/**
 * Orchestrator `mirrorSeries`: take the series (one run per series, whichever runner), decide, then mirror
 * each chosen version oldest first, and give the series back whatever happened.
 */
export function* mirrorSeries(
  ctx: WorkflowContext,
  request: MirrorRequest,
  monitor: MonitorSettings,
): Workflow<SeriesResult> {
  const { series } = request;
  const startedAt = ctx.currentTime();
  // A dry run changes nothing, so it takes no lock and never waits for one.
  if (request.dryRun) return yield* mirrorHeldSeries(ctx, request, monitor, startedAt);
  const claim: SeriesLockClaim = { series, leaseId: ctx.newGuid(`series-lock/${series}`) };
  const refused = yield* takeSeries(ctx, request, monitor, claim);
  if (refused !== undefined) {
    ctx.setStatus({ series, results: [refused] });
    return { series, results: [refused] };
  }
  try {
    return yield* mirrorHeldSeries(underSeriesLock(ctx, claim), request, monitor, startedAt, claim);
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
  monitor: MonitorSettings,
  startedAt: Date,
  lock?: SeriesLockClaim,
): Workflow<SeriesResult> {
  const { series } = request;
  let plan: StepOutputs['resolveVersions'];
  try {
    const input: StepInputs['resolveVersions'] = { series };
    if (request.version !== undefined) input.version = request.version;
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
    ctx.setStatus({ series, results: [result] });
    return { series, results: [result] };
  }

  if (plan.mirror.length === 0) {
    const exists: VersionResult = {
      series,
      version: plan.newest.version,
      galleryVersion: galleryVersionName(plan.newest.version),
      action: 'exists',
    };
    if (plan.newestBlobUrl !== undefined) exists.blobUrl = plan.newestBlobUrl;
    return { series, results: [exists] };
  }
  if (request.dryRun) {
    return {
      series,
      results: plan.mirror.map((p) => ({
        series,
        version: p.release.version,
        galleryVersion: p.galleryVersion,
        action: 'planned' as const,
      })),
    };
  }

  const results: VersionResult[] = [];
  for (const planned of plan.mirror) {
    const instanceId = versionInstanceId(series, planned.release.version, startedAt);
    // The version's own instance shows its step, bytes uploaded and provisioning state.
    ctx.setStatus({
      series,
      plan: plan.mirror.map((p) => p.release.version),
      current: { version: planned.release.version, instanceId },
      results,
    });
    let result: VersionResult;
    try {
      result = (yield ctx.callMirrorVersion(
        {
          release: planned.release,
          galleryVersion: planned.galleryVersion,
          monitor,
          ...(planned.finish ? { finish: planned.finish } : {}),
          ...(lock ? { lock } : {}),
        },
        instanceId,
      )) as VersionResult;
    } catch (error) {
      result = {
        series,
        version: planned.release.version,
        galleryVersion: planned.galleryVersion,
        action: 'failed',
        error: subOrchestrationFailure(error),
      };
    }
    results.push(result);
  }
  ctx.setStatus({ series, plan: plan.mirror.map((p) => p.release.version), results });
  return { series, results };
}

/** Orchestrator `mirrorVersion`: one stemcell version from bosh.io to a ready gallery image version. */
export function* mirrorVersion(
  ctx: WorkflowContext,
  input: MirrorVersionInput & { monitor: MonitorSettings },
): Workflow<VersionResult> {
  const { release, galleryVersion, monitor } = input;
  if (input.lock) ctx = underSeriesLock(ctx, input.lock);
  const status: VersionStatus = {
    series: release.series,
    version: release.version,
    galleryVersion,
    step: 'downloadAndExtract',
  };
  const enter = (next: VersionStep, extra: Partial<VersionStatus> = {}): void => {
    Object.assign(status, extra, { step: next });
    ctx.setStatus({ ...status });
  };
  const result: VersionResult = {
    series: release.series,
    version: release.version,
    galleryVersion,
    action: 'failed',
  };

  try {
    let definitionName: string;
    let started: ImageVersionStart;
    if (input.finish) {
      definitionName = input.finish.definitionName;
      if (input.finish.blobUrl !== undefined) result.blobUrl = input.finish.blobUrl;
      started = { outcome: 'started', provisioningState: 'unknown' };
    } else {
      enter('downloadAndExtract');
      const stemcell = yield* step(ctx, 'downloadAndExtract', { release });

      enter('uploadVhd');
      const uploaded = yield* step(ctx, 'uploadVhd', { release, stemcell });
      result.blobUrl = uploaded.blobUrl;
      result.bytesUploaded = uploaded.bytesUploaded;

      enter('ensureImageDefinition', { bytesUploaded: uploaded.bytesUploaded });
      const definition = yield* step(ctx, 'ensureImageDefinition', {
        series: release.series,
        manifest: stemcell.manifest,
      });
      definitionName = definition.definitionName;

      enter('createImageVersion');
      started = yield* step(ctx, 'createImageVersion', {
        definitionName,
        galleryVersion,
        blobUrl: uploaded.blobUrl,
        release,
        stemcell,
      });
    }

    if (started.outcome === 'started') {
      enter('waitForImageVersion', { provisioningState: started.provisioningState });
      const deadline = new Date(ctx.currentTime().getTime() + monitor.deadlineMinutes * 60_000);
      for (;;) {
        const state = yield* step(ctx, 'getImageVersionState', {
          definitionName,
          galleryVersion,
        });
        enter('waitForImageVersion', { provisioningState: state.provisioningState });
        if (state.provisioningState === 'Succeeded') break;
        if (state.provisioningState === 'Failed') {
          throw new StepFailure(
            'waitForImageVersion',
            `Azure reports image version ${definitionName}/${galleryVersion} Failed` +
              `${state.errorMessage ? `: ${state.errorMessage}` : ''}; the next run deletes and recreates it`,
          );
        }
        const next = new Date(ctx.currentTime().getTime() + monitor.pollIntervalSeconds * 1000);
        if (next > deadline) {
          throw new StepFailure(
            'waitForImageVersion',
            `image version ${definitionName}/${galleryVersion} is still ${state.provisioningState} after ` +
              `${monitor.deadlineMinutes} minutes; the next run finishes it`,
          );
        }
        yield ctx.createTimer(next);
      }

      enter('notify');
      yield* step(ctx, 'notify', { definitionName, galleryVersion });
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
    yield* step(ctx, 'cleanup', { series: release.series, version: release.version });
  } catch {
    // A leftover temp file is not worth failing a mirrored version for; the next cleanup removes it.
  }
  return result;
}
