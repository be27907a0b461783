/**
 * One series as the Durable app's tests replay it: the series and its release 1.100 (stemcell-release.ts), the run's start, the
 * histories mirrorSeries and mirrorVersion begin with, and one replay through durable-functions' own engine
 * (what the worker returns to the extension for a history).
 */

import assert from 'node:assert/strict';
import { STEP_RETRY, versionInstanceId, type MonitorSettings, type StepName } from '../../src/workflow.js';
import { invokeFunction, returnedJson } from './functions-core/host.js';
import { OrchestrationHistory } from './orchestration-history.js';
import { SERIES } from './stemcell-release.js';

export { SERIES, release } from './stemcell-release.js';

export const START = new Date('2026-05-04T06:00:00.000Z');
export const MONITOR: MonitorSettings = { pollIntervalSeconds: 30, deadlineMinutes: 120 };
/** How long a run waits for its series and how often it looks: the settings, in acquireSeriesLock's output. */
export const LOCK_WAIT = { waitSeconds: 0, pollIntervalSeconds: 30 };

/** An action the orchestrator scheduled, as the replay engine reports it. */
export interface Action {
  actionType: number;
  functionName?: string;
  input?: unknown;
  instanceId?: string;
  fireAt?: string;
  retryOptions?: Record<string, unknown>;
}

export interface OrchestratorState {
  isDone: boolean;
  actions: Action[][];
  output?: unknown;
  customStatus?: Record<string, unknown>;
  error?: string;
}

/** A step's successful outcome, as an activity returns it. */
export const ok = <T>(value: T) => ({ ok: true, value });

/** One replay: what the worker returns to the extension for this history, its actions flattened. */
export async function replayEpisode(
  history: OrchestrationHistory,
): Promise<OrchestratorState & { all: Action[] }> {
  const { response } = await invokeFunction(history.name, { orchestrationTrigger: history.trigger() });
  const state = returnedJson(response) as OrchestratorState;
  return { ...state, all: state.actions.flat() };
}

/** One replay that must schedule something; `last` is the newest action. */
export async function replay(
  history: OrchestrationHistory,
): Promise<OrchestratorState & { all: Action[]; last: Action }> {
  const state = await replayEpisode(history);
  const last = state.all.at(-1);
  assert.ok(last, 'the orchestrator scheduled nothing');
  return { ...state, last };
}

/** The retry options the engine reports for a step scheduled with its policy from STEP_RETRY. */
export function expectedRetryOptions(name: StepName): Record<string, unknown> {
  const policy = STEP_RETRY[name];
  return {
    firstRetryIntervalInMilliseconds: policy.firstRetryIntervalMs,
    maxNumberOfAttempts: policy.maxAttempts,
    backoffCoefficient: policy.backoffCoefficient,
    maxRetryIntervalInMilliseconds: policy.maxRetryIntervalMs,
  };
}

/**
 * mirrorSeries' first episode for SERIES, before it holds its series; `input` adds to (or forges) what
 * the starter passes beside the request.
 */
export function seriesStarted(
  request: Record<string, unknown> = {},
  input: Record<string, unknown> = {},
): OrchestrationHistory {
  return new OrchestrationHistory(
    'mirrorSeries',
    `mirror-${SERIES}`,
    { request: { series: SERIES, ...request }, ...input },
    START,
  );
}

/** mirrorSeries holding its series: `started` once acquireSeriesLock took it. */
export function seriesHeld(started = seriesStarted()): OrchestrationHistory {
  return started.activityCompleted('acquireSeriesLock', ok({ acquired: true, wait: LOCK_WAIT }));
}

/** mirrorVersion, started by mirrorSeries at `start`, with `input` (by default 1.100 of SERIES). */
export function versionHistory(
  input: unknown = { series: SERIES, version: '1.100' },
  start = START,
): OrchestrationHistory {
  return new OrchestrationHistory(
    'mirrorVersion',
    versionInstanceId(SERIES, '1.100', start),
    input,
    start,
    'mirror-x',
  );
}

/** `history` (a mirrorVersion) once the stemcell was `extracted` and its root.vhd uploaded to `blobUrl`. */
export function afterUpload(
  history: OrchestrationHistory,
  extracted: unknown,
  blobUrl: string,
): OrchestrationHistory {
  return history
    .activityCompleted('downloadAndExtract', ok(extracted))
    .activityCompleted(
      'uploadVhd',
      ok({ blobUrl, bytesUploaded: 1_048_576, dataBytes: 1_048_576, alreadyComplete: false }),
    );
}

/** `history` (a mirrorVersion) up to the point where the image version's creation has started. */
export function afterCreationStarted(
  history: OrchestrationHistory,
  extracted: unknown,
  blobUrl: string,
): OrchestrationHistory {
  return afterUpload(history, extracted, blobUrl)
    .activityCompleted('ensureImageDefinition', ok({ definitionName: SERIES, created: true }))
    .activityCompleted(
      'createImageVersion',
      ok({ outcome: 'started', provisioningState: 'Creating', definitionName: SERIES }),
    );
}

/** mirrorVersion of 1.100 up to the point where the image version's creation has started. */
export function versionHistoryUntilCreation(extracted: unknown, blobUrl: string): OrchestrationHistory {
  return afterCreationStarted(versionHistory(), extracted, blobUrl);
}
