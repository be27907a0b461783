/**
 * Starting a series' orchestration, shared by the timer and the HTTP starter. Not a function itself:
 * the host loads this file with the others and finds nothing to register.
 */

import type { DurableClient } from 'durable-functions';
import type { MirrorConfig } from '../src/config.js';
import {
  ORCHESTRATORS,
  seriesInstanceId,
  type MirrorRequest,
  type MonitorSettings,
} from '../src/workflow.js';

/** The input of orchestrator `mirrorSeries`: settings travel as input so replays see the same values. */
export interface MirrorSeriesInput {
  request: MirrorRequest;
  monitor: MonitorSettings;
}

export function monitorSettings(config: MirrorConfig): MonitorSettings {
  return {
    pollIntervalSeconds: config.versionPollIntervalSeconds,
    deadlineMinutes: config.versionReadyTimeoutMinutes,
  };
}

/**
 * Runtime statuses in which an instance still owns its id: the extension refuses a new start with that
 * id (overridableExistingInstanceStates: NonRunningStates). Completed, Failed, Terminated and Canceled
 * instances are replaced by a new start.
 */
const ACTIVE_STATUSES: ReadonlySet<string> = new Set(['Pending', 'Running', 'ContinuedAsNew', 'Suspended']);

export type SeriesStart =
  | { started: true; series: string; instanceId: string }
  | { started: false; series: string; instanceId: string; runtimeStatus: string };

/** Starts `mirrorSeries` for one series unless an instance for that series is still active. */
export async function startSeriesMirror(
  client: DurableClient,
  input: MirrorSeriesInput,
): Promise<SeriesStart> {
  const { series } = input.request;
  const instanceId = seriesInstanceId(series);
  const existing = await runtimeStatusOf(client, instanceId);
  if (existing !== undefined && ACTIVE_STATUSES.has(existing)) {
    return { started: false, series, instanceId, runtimeStatus: existing };
  }
  try {
    await client.startNew(ORCHESTRATORS.mirrorSeries, { instanceId, input });
  } catch (error) {
    // Another start may have won the race between the look and the start: then the extension refuses ours.
    const now = await runtimeStatusOf(client, instanceId);
    if (now !== undefined && ACTIVE_STATUSES.has(now))
      return { started: false, series, instanceId, runtimeStatus: now };
    throw error;
  }
  return { started: true, series, instanceId };
}

/** Undefined when the task hub has never seen the instance. */
async function runtimeStatusOf(client: DurableClient, instanceId: string): Promise<string | undefined> {
  try {
    return (await client.getStatus(instanceId)).runtimeStatus;
  } catch (error) {
    // durable-functions 3 reports an unknown instance only as an Error naming the webhook's 404.
    if (error instanceof Error && error.message.includes('HTTP 404 response')) return undefined;
    throw error;
  }
}
