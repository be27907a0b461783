/**
 * The workflow's contract: step names, their inputs, outputs and retry policies, the results, the context the
 * generators of src/workflow.ts and src/series-results.ts run in, how they call a step, and the instance ids.
 * Shared by the activities, both runners and the orchestrators; nothing here may do I/O either, since the
 * generators replay with it.
 */

import type { StemcellManifest } from './manifest.js';
import type { SeriesPlan } from './plan.js';
import type { RetentionDeletion } from './retention.js';
import type { Runner } from './run-record.js';
import type { SeriesLockAcquisition, SeriesLockClaim } from './series-lock.js';
import type { RegionReplication } from './target-regions.js';

export const ORCHESTRATORS = { mirrorSeries: 'mirrorSeries', mirrorVersion: 'mirrorVersion' } as const;

/** Activity names, as registered with the Functions host. */
export type StepName =
  | 'acquireSeriesLock'
  | 'resolveVersions'
  | 'downloadAndExtract'
  | 'uploadVhd'
  | 'ensureImageDefinition'
  | 'createImageVersion'
  | 'adoptImageVersion'
  | 'getImageVersionState'
  | 'extendImageVersion'
  | 'notify'
  | 'deleteSourceBlob'
  | 'deleteImageVersion'
  | 'cleanup'
  | 'releaseSeriesLock'
  | 'recordRun';

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
  // It may extract again (another instance) and reads the whole source blob: paced like a download.
  adoptImageVersion: { ...network, maxAttempts: 3, firstRetryIntervalMs: 60_000 },
  getImageVersionState: network,
  // Azure takes no update while a version is busy: that is transient, and waits as long as a network fault.
  extendImageVersion: network,
  // A dispatch whose answer was lost would run the workflow twice; a missed one is sent by the next run.
  notify: { ...network, maxAttempts: 3 },
  // A source blob left behind costs storage only; retention deletes it with its version.
  deleteSourceBlob: { ...network, maxAttempts: 3 },
  // A deletion that keeps failing is decided again, and retried, by the next run.
  deleteImageVersion: network,
  cleanup: { ...network, maxAttempts: 2 },
  // A lock left behind is taken over once stale; a release that keeps failing is not worth a long wait.
  releaseSeriesLock: { ...network, maxAttempts: 3 },
  recordRun: { ...network, maxAttempts: 3 },
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
  definitionName: string;
}

/** An untagged version the mirror adopted: tagged where it is, never recreated. */
export interface AdoptedVersion {
  definitionName: string;
  /** The version's source blob, as the gallery reports it. */
  blobUrl?: string;
}

export interface ImageVersionStatus {
  provisioningState: string;
  errorMessage?: string;
  /** The version's source blob, as the gallery reports it. */
  blobUrl?: string;
  /** Azure's replication per target region: the version is ready once every one is Completed. */
  regions?: RegionReplication[];
  /** From the settings, not from any input: how often and how long to wait for this version. */
  monitor: MonitorSettings;
  /** BASM_DELETE_SOURCE_BLOB, from the settings: the source blob goes once the version is created. */
  deleteSourceBlob?: true;
}

/** What the retention step did: `deleted` false when the version no longer qualifies (`reason` says why). */
export interface RetentionOutcome {
  deleted: boolean;
  /** The mirror's own source blob of the version was deleted too (or was gone already). */
  blobDeleted: boolean;
  reason: string;
}

/** A version the mirror created, given the configured target regions it lacked. */
export interface ExtendedVersion {
  definitionName: string;
  /** False when it had them all already (an earlier attempt of the step sent the update). */
  extended: boolean;
  /** What the update changed, e.g. `adds eastus`; empty when nothing. */
  change: string;
}

/**
 * A step's input names the stemcell and nothing more that decides what is written: the steps re-read the
 * rest (src/provenance.ts), because an orchestration can be started by hand with any input.
 */
export interface StemcellRef {
  series: string;
  version: string;
}

export interface StepInputs {
  /** `run` says who the run is (the activity adds the process and host). */
  acquireSeriesLock: { claim: SeriesLockClaim; run: string };
  /** `dryRun`: also read each planned version's stemcell.MF and image definition, to report feature drift. */
  resolveVersions: { series: string; version?: string; dryRun?: boolean };
  /**
   * `overlapUpload`: also send root.vhd's data to the page blob while extracting, for uploadVhd to complete
   * (the upload route; adoption uploads nothing).
   */
  downloadAndExtract: StemcellRef & { overlapUpload?: boolean };
  /** `imageSha256`: what downloadAndExtract extracted; the upload refuses to mix it with another image. */
  uploadVhd: StemcellRef & { imageSha256: string };
  ensureImageDefinition: StemcellRef;
  createImageVersion: StemcellRef;
  /** Adopts the untagged version of the stemcell another tool made, when the gallery and the settings say so. */
  adoptImageVersion: StemcellRef;
  /** `definitionName` must be one of the series' definitions in the configured gallery. */
  getImageVersionState: StemcellRef & { definitionName: string };
  /**
   * `definitionName` (the plan's) must be one of the series' definitions, and the version there the mirror's own;
   * the regions come from the settings. Absent in inputs written before it was passed: the step then lists the
   * series to find it.
   */
  extendImageVersion: StemcellRef & { definitionName?: string };
  notify: StemcellRef & { definitionName: string };
  /** The step deletes only the mirror's own blob of a Succeeded version, and only with BASM_DELETE_SOURCE_BLOB. */
  deleteSourceBlob: StemcellRef & { definitionName: string };
  /** The step decides again from the gallery and the settings (src/retention.ts): the input only names it. */
  deleteImageVersion: StemcellRef & { definitionName: string };
  cleanup: StemcellRef;
  releaseSeriesLock: { claim: SeriesLockClaim };
  /** The run's results, as the orchestrator collected them; the step checks their shape and the series. */
  recordRun: { series: string; runner: Runner; startedAt: string; results: VersionResult[] };
}

/**
 * What every step of a run that holds its series carries besides its own input: the claim, so the step can
 * prove the run still holds the series before it acts (see src/series-lock.ts). It grants nothing by itself:
 * a step whose claim is not the current lease on its own series' lock fails before it acts.
 */
export interface UnderSeriesLock {
  lock?: SeriesLockClaim;
}

export interface StepOutputs {
  /** `wait`: from the settings, not from any input: how long and how often to look again while held. */
  acquireSeriesLock: SeriesLockAcquisition & { wait: SeriesLockWait };
  /** `retention`: what BASM_KEEP_VERSIONS deletes after a run that mirrors the plan (absent when nothing). */
  resolveVersions: SeriesPlan & { newestBlobUrl?: string; retention?: RetentionDeletion[] };
  downloadAndExtract: ExtractedStemcellSummary;
  uploadVhd: UploadedVhd;
  ensureImageDefinition: ImageDefinitionRef;
  createImageVersion: ImageVersionStart;
  adoptImageVersion: AdoptedVersion;
  getImageVersionState: ImageVersionStatus;
  extendImageVersion: ExtendedVersion;
  notify: { notified: boolean };
  deleteSourceBlob: { deleted: boolean };
  deleteImageVersion: RetentionOutcome;
  cleanup: { removed: boolean };
  releaseSeriesLock: { released: boolean };
  recordRun: { outcome: 'succeeded' | 'failed' };
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

export interface MirrorVersionInput extends StemcellRef {
  /** The version exists already (an earlier run did not finish): only wait for it and notify. */
  finish?: { definitionName: string };
  /**
   * The plan found an untagged version another tool made (BASM_ADOPT_UNTAGGED): verify the stemcell and adopt
   * it, uploading nothing. Only a route: the step decides from the gallery and the settings what to adopt.
   */
  adopt?: true;
  /** The series run's claim on its series, carried by every step of the version. */
  lock?: SeriesLockClaim;
}

/**
 * Every action a result may carry: the type and the run record's check both come from this one list.
 * `extended`/`planned-extend`: a version the mirror created, given new target regions (an update, never a
 * recreation). `deleted`/`planned-delete`: retention (BASM_KEEP_VERSIONS), an old version of the mirror's no
 * director uses. `skipped`: BASM_SKIP_VERSIONS, a version never mirrored, listed by a dry run only.
 */
export const VERSION_ACTIONS = [
  'created',
  'exists',
  'planned',
  'failed',
  'extended',
  'planned-extend',
  'deleted',
  'planned-delete',
  'skipped',
] as const;

export type VersionAction = (typeof VERSION_ACTIONS)[number];

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
  /** Why the run decided what it did (a plan's reason, e.g. `catch-up`), so a dry run explains itself. */
  reason?: string;
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
  /** Replication per target region, while the step waits for it. */
  regions?: RegionReplication[];
  error?: string;
}

/** How often and for how long the image version is polled; from the settings, through a step's output. */
export interface MonitorSettings {
  pollIntervalSeconds: number;
  deadlineMinutes: number;
}

/** How long a run waits for its series while another run holds it, and how often it looks; from the settings. */
export interface SeriesLockWait {
  /** 0: it reports the holder at once. */
  waitSeconds: number;
  pollIntervalSeconds: number;
}

/** The input of orchestrator `mirrorSeries`. */
export interface MirrorSeriesInput {
  request: MirrorRequest;
}

/**
 * The orchestration's view of the runtime. `Task` is opaque: the generator yields it and receives the
 * task's result back (Durable Functions semantics). A failed task throws at the `yield`.
 */
export interface WorkflowContext {
  callStep<N extends StepName>(name: N, input: StepInputs[N] & UnderSeriesLock): unknown;
  callMirrorVersion(input: MirrorVersionInput, instanceId: string): unknown;
  createTimer(fireAt: Date): unknown;
  /** Deterministic "now" (the replay engine's current orchestration time). */
  currentTime(): Date;
  setStatus(status: unknown): void;
  /** A GUID that is the same on every replay of this point of the run (Durable's `newGuid`). */
  newGuid(name: string): string;
  /** Who this run is, for the series lock: `command line`, `orchestration mirror-<series>`. */
  runName(): string;
  /** Which runner drives the workflow: recorded with the run, so every other runner can see it. */
  readonly runner: Runner;
}

export type Workflow<R> = Generator<unknown, R, unknown>;

/** Runs one step: its value, or a StepFailure when it failed permanently (or exhausted its retries). */
export function* step<N extends StepName>(
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
