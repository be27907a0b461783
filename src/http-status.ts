/**
 * The read-only status endpoint for function-key holders: `GET /api/mirror/{series}` answers what
 * `status --json --series <series>` prints (src/status.ts: the gallery's versions, what the next run would
 * do, the last run of either runner) plus the series' orchestration: runtime status, custom status and
 * results (and the status of the version it is working on); `GET /api/mirror` answers that for every
 * configured series. Nothing in it grants more: no Durable management URL, no key, no orchestration input.
 * Administrators use Durable's own status API (system key).
 */

import { errorMessage } from './failures.js';
import { appSettings, INVALID_SETTINGS, type HttpAnswer } from './http-start.js';
import { createMirrorServices } from './services.js';
import type { OrchestrationClient, StartLogger } from './starts.js';
import { isComplete, readMirrorStatus, type SeriesStatus } from './status.js';
import { seriesInstanceId } from './workflow.js';

export interface SeriesRunStatus {
  series: string;
  instanceId: string;
  /** Durable's runtime status; null when the series has not been started yet. */
  runtimeStatus: string | null;
  createdTime?: string;
  lastUpdatedTime?: string;
  customStatus?: unknown;
  /** The series' results, once the run has finished. */
  output?: unknown;
  /** The version being mirrored right now: its own orchestration's status (step, bytes, provisioning). */
  currentVersion?: { instanceId: string; runtimeStatus: string | null; customStatus?: unknown };
}

function isoTime(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : undefined;
}

/** Undefined when the task hub has never seen the instance (durable-functions 3 says so with a 404 Error). */
async function statusOf(client: OrchestrationClient, instanceId: string) {
  try {
    return await client.getStatus(instanceId);
  } catch (error) {
    if (error instanceof Error && error.message.includes('HTTP 404 response')) return undefined;
    throw error;
  }
}

/** The version instance the series' custom status names, if it is one of this series' (never any other). */
function currentVersionId(series: string, customStatus: unknown): string | undefined {
  const current = (customStatus as { current?: { instanceId?: unknown } } | null)?.current;
  const id = current?.instanceId;
  return typeof id === 'string' && id.startsWith(`${seriesInstanceId(series)}-`) ? id : undefined;
}

export async function seriesRunStatus(client: OrchestrationClient, series: string): Promise<SeriesRunStatus> {
  const instanceId = seriesInstanceId(series);
  const status = await statusOf(client, instanceId);
  if (status === undefined) return { series, instanceId, runtimeStatus: null };
  const answer: SeriesRunStatus = {
    series,
    instanceId,
    runtimeStatus: status.runtimeStatus ?? null,
    customStatus: status.customStatus ?? null,
    output: status.output ?? null,
  };
  const created = isoTime(status.createdTime);
  const updated = isoTime(status.lastUpdatedTime);
  if (created !== undefined) answer.createdTime = created;
  if (updated !== undefined) answer.lastUpdatedTime = updated;
  const versionId = currentVersionId(series, status.customStatus);
  if (versionId !== undefined && status.runtimeStatus === 'Running') {
    const version = await statusOf(client, versionId);
    answer.currentVersion = {
      instanceId: versionId,
      runtimeStatus: version?.runtimeStatus ?? null,
      ...(version !== undefined ? { customStatus: version.customStatus ?? null } : {}),
    };
  }
  return answer;
}

/** One series as the endpoint answers it: `status --json`'s entry, and its orchestration. */
export type SeriesStatusAnswer = SeriesStatus & { orchestration: Omit<SeriesRunStatus, 'series'> | null };

/**
 * The whole endpoint: `series` is the route's optional parameter. The body is `status --json`'s document
 * (src/status.ts) for that series or every configured one, each entry with its orchestration's status
 * under `orchestration`. 200 when everything could be read; 502 (same body) when bosh.io, the gallery,
 * the storage account or the task hub could not be; 404 for a series this app does not mirror.
 */
export async function answerStatusRequest(
  client: OrchestrationClient,
  series: string | undefined,
  env: NodeJS.ProcessEnv,
  log: StartLogger,
): Promise<HttpAnswer> {
  const config = appSettings(env, log);
  if (!config) return INVALID_SETTINGS;
  if (series !== undefined && series !== '' && !config.series.includes(series)) {
    // Not repeated: the answer says what is expected, never what the caller sent.
    return {
      status: 404,
      jsonBody: {
        error: `not a series this app mirrors; BASM_STEMCELL_SERIES configures: ${config.series.join(', ')}`,
      },
    };
  }
  const wanted = series !== undefined && series !== '' ? [series] : config.series;
  const status = await readMirrorStatus(createMirrorServices(config, log), wanted);
  let complete = isComplete(status);
  const answers: SeriesStatusAnswer[] = [];
  for (const entry of status.series) {
    for (const error of entry.errors ?? []) log.warn(`status of ${entry.series}: could not read ${error}`);
    let orchestration: SeriesStatusAnswer['orchestration'] = null;
    try {
      const { series: _series, ...run } = await seriesRunStatus(client, entry.series);
      orchestration = run;
    } catch (error) {
      log.error(`could not read the orchestration of ${entry.series}: ${errorMessage(error)}`);
      complete = false;
    }
    answers.push({ ...entry, orchestration });
  }
  return { status: complete ? 200 : 502, jsonBody: { series: answers } };
}
