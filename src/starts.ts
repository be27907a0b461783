/**
 * Starting the series' orchestrations, for the timer and the HTTP starter alike: one instance per series,
 * never a second one while the first is active, and a failure for one series never hides the others.
 */

import type { MirrorConfig } from './config.js';
import { errorMessage } from './failures.js';
import { announceSettings, type Logger } from './services.js';
import { ORCHESTRATORS, seriesInstanceId, type MirrorRequest, type MirrorSeriesInput } from './workflow.js';

/**
 * What the app needs of Durable's client (durable-functions' `DurableClient` has this shape). Nothing
 * here hands out management URLs: they carry the task hub's system key.
 */
export interface OrchestrationClient {
  getStatus(instanceId: string): Promise<InstanceStatus>;
  startNew(name: string, options: { instanceId: string; input: unknown }): Promise<string>;
}

export interface InstanceStatus {
  runtimeStatus?: string;
  customStatus?: unknown;
  output?: unknown;
  createdTime?: Date | string;
  lastUpdatedTime?: Date | string;
}

export interface StartLogger extends Logger {
  error(message: string): void;
}

export const DEFAULT_TIMER_SCHEDULE = '0 0 6 * * *';

/** NCRONTAB with seconds, as the Functions timer trigger wants it: `{second} {minute} {hour} {day} {month} {day-of-week}`. */
const NCRONTAB = /^[\w*/,-]+(?:\s+[\w*/,-]+){5}$/;

/** Read when the app loads: the schedule is part of the function's binding, fixed until the next restart. */
export function timerSchedule(env: NodeJS.ProcessEnv): string {
  const value = env.BASM_TIMER_SCHEDULE?.trim();
  if (!value) return DEFAULT_TIMER_SCHEDULE;
  if (!NCRONTAB.test(value)) {
    throw new Error(
      `Invalid configuration (1 setting):\n  BASM_TIMER_SCHEDULE: "${value}" is not valid; expected a six-field ` +
        `NCRONTAB expression "{second} {minute} {hour} {day} {month} {day-of-week}" such as "${DEFAULT_TIMER_SCHEDULE}"`,
    );
  }
  return value;
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

export type SeriesStartOutcome = SeriesStart | { failed: true; series: string; instanceId: string };

export function isFailedStart(
  outcome: SeriesStartOutcome,
): outcome is { failed: true; series: string; instanceId: string } {
  return 'failed' in outcome;
}

/** Starts `mirrorSeries` for one series unless an instance for that series is still active. */
export async function startSeriesMirror(
  client: OrchestrationClient,
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
async function runtimeStatusOf(client: OrchestrationClient, instanceId: string): Promise<string | undefined> {
  try {
    return (await client.getStatus(instanceId)).runtimeStatus;
  } catch (error) {
    // durable-functions 3 reports an unknown instance only as an Error naming the webhook's 404.
    if (error instanceof Error && error.message.includes('HTTP 404 response')) return undefined;
    throw error;
  }
}

/** Starts each series in turn; each outcome is logged, a failure's cause only there. */
export async function startSeriesMirrors(
  client: OrchestrationClient,
  request: { series: readonly string[]; version?: string },
  log: StartLogger,
): Promise<SeriesStartOutcome[]> {
  const outcomes: SeriesStartOutcome[] = [];
  for (const series of request.series) {
    const mirrorRequest: MirrorRequest = { series };
    if (request.version !== undefined) mirrorRequest.version = request.version;
    try {
      const start = await startSeriesMirror(client, { request: mirrorRequest });
      log.info(
        start.started
          ? `${series}: started orchestration ${start.instanceId}`
          : `${series}: orchestration ${start.instanceId} is still ${start.runtimeStatus}; not starting another`,
      );
      outcomes.push(start);
    } catch (error) {
      // The cause goes to the log only: it may name internal endpoints, and a caller cannot act on it.
      log.error(`${series}: could not start the mirror orchestration: ${errorMessage(error)}`);
      outcomes.push({ failed: true, series, instanceId: seriesInstanceId(series) });
    }
  }
  return outcomes;
}

/** The timer's run: every configured series; throws (failing the invocation) when any could not start. */
export async function startScheduledMirrors(
  client: OrchestrationClient,
  config: MirrorConfig,
  log: StartLogger,
): Promise<void> {
  announceSettings(config, log);
  const outcomes = await startSeriesMirrors(client, { series: config.series }, log);
  const failed = outcomes.filter(isFailedStart).map((outcome) => outcome.series);
  if (failed.length > 0)
    throw new Error(`could not start the mirror of ${failed.join(', ')}; see the errors above`);
}
