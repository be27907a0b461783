/**
 * The read-only status endpoint for function-key holders: `GET /api/mirror/{series}` answers the series'
 * orchestration's runtime status, custom status and results (and the status of the version it is working
 * on); `GET /api/mirror` answers that for every configured series. Nothing in it grants more: no Durable
 * management URL, no key, no orchestration input. Administrators use Durable's own status API (system key).
 */

import { loadConfig } from './config.js';
import { errorMessage } from './failures.js';
import type { HttpAnswer } from './http-start.js';
import type { OrchestrationClient, StartLogger } from './starts.js';
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

/** The whole endpoint: `series` is the route's optional parameter. */
export async function answerStatusRequest(
  client: OrchestrationClient,
  series: string | undefined,
  env: NodeJS.ProcessEnv,
  log: StartLogger,
): Promise<HttpAnswer> {
  let config;
  try {
    config = loadConfig(env);
  } catch (error) {
    log.error(errorMessage(error));
    return {
      status: 500,
      jsonBody: { error: 'the function app settings are invalid; the function log names each one to fix' },
    };
  }
  if (series !== undefined && series !== '' && !config.series.includes(series)) {
    // Not repeated: the answer says what is expected, never what the caller sent.
    return {
      status: 404,
      jsonBody: {
        error: `not a series this app mirrors; BASM_STEMCELL_SERIES configures: ${config.series.join(', ')}`,
      },
    };
  }
  try {
    if (series !== undefined && series !== '') {
      const status = await seriesRunStatus(client, series);
      if (status.runtimeStatus === null) {
        return {
          status: 404,
          jsonBody: { error: `${series} has not been mirrored by this app yet`, ...status },
        };
      }
      return { status: 200, jsonBody: status };
    }
    const all: SeriesRunStatus[] = [];
    for (const configured of config.series) all.push(await seriesRunStatus(client, configured));
    return { status: 200, jsonBody: { series: all } };
  } catch (error) {
    log.error(`could not read the mirror's status: ${errorMessage(error)}`);
    return {
      status: 500,
      jsonBody: { error: "could not read the mirror's status; the function log has the cause" },
    };
  }
}
