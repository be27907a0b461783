/**
 * The HTTP starter `POST /api/mirror` (function key), optional JSON body `{ "series": "...", "version": "..." }`.
 *
 * One series (named in the body, or the only one configured): 202 with the instance id and the URL of the
 * app's own read-only status endpoint `GET /api/mirror/{series}` (src/http-status.ts), 409 when the series
 * is already being mirrored, 500 when its orchestration could not be started.
 * Several series (no body, several configured): each is started on its own, and a failure for one does not
 * hide the others. The answer lists every series with its outcome (`started`, `running` or `failed`) and is
 * 202 when at least one started, 409 when every one was already running, 500 when none started and at least
 * one failed. 400 for a body it cannot use, 413 for one larger than 4 KiB.
 *
 * `series` must be one of the configured series (BASM_STEMCELL_SERIES): the app settings decide what the
 * gallery holds (and how its definitions are named), not whoever holds a function key. Without `series`
 * every configured series is started; `version` then needs exactly one configured series.
 *
 * The answers never carry Durable's management URLs: those hold the task hub's system key, which also
 * starts any orchestration with any input. Durable's own status API stays the administrators' tool.
 */

import { loadConfig, SERIES_PATTERN, type MirrorConfig } from './config.js';
import { errorMessage } from './failures.js';
import {
  isFailedStart,
  startSeriesMirrors,
  type OrchestrationClient,
  type SeriesStartOutcome,
  type StartLogger,
} from './starts.js';
import { isSkippedVersion } from './plan.js';
import { isStemcellVersion } from './versions.js';

/** A body that names a series and a version is well under this; anything bigger is not ours. */
export const MAX_BODY_BYTES = 4096;
const BODY_FIELDS: ReadonlySet<string> = new Set(['series', 'version']);
const EXAMPLE = '{ "series": "bosh-azure-hyperv-ubuntu-jammy-go_agent", "version": "1.1364" }';

export interface MirrorHttpBody {
  series?: string;
  version?: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * The body, parsed once into what the starter may use. Error messages never quote the request: they say
 * what was expected, so nothing a caller sends is reflected back.
 */
export function parseMirrorHttpBody(
  text: string,
  configuredSeries: readonly string[],
  /** BASM_SKIP_VERSIONS: a request for one of them is refused, as the command line refuses it. */
  skipVersions: readonly string[] = [],
): Parsed<MirrorHttpBody> {
  if (text.trim() === '') return { ok: true, value: {} };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, error: `the request body is not valid JSON; expected an object such as ${EXAMPLE}` };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, error: `the request body must be a JSON object such as ${EXAMPLE}` };
  }
  const fields = body as Record<string, unknown>;
  if (Object.keys(fields).some((key) => !BODY_FIELDS.has(key))) {
    return {
      ok: false,
      error: 'the request body has an unknown field; the only fields are "series" and "version"',
    };
  }
  const value: MirrorHttpBody = {};
  if (fields.series !== undefined) {
    if (typeof fields.series !== 'string') return { ok: false, error: '"series" must be a string' };
    if (!SERIES_PATTERN.test(fields.series)) {
      return {
        ok: false,
        error:
          '"series" is not a stemcell series name (lowercase letters, digits, ".", "_", "-"; at most 80 characters)',
      };
    }
    if (!configuredSeries.includes(fields.series)) {
      return {
        ok: false,
        error: `"series" is not one this app mirrors; BASM_STEMCELL_SERIES configures: ${configuredSeries.join(', ')}`,
      };
    }
    value.series = fields.series;
  }
  if (fields.version !== undefined) {
    if (typeof fields.version !== 'string')
      return { ok: false, error: '"version" must be a string such as "1.1364"' };
    if (!isStemcellVersion(fields.version)) {
      return {
        ok: false,
        error: '"version" is not a stemcell version (digits separated by dots, such as "1.1364")',
      };
    }
    if (value.series === undefined && configuredSeries.length !== 1) {
      return {
        ok: false,
        error: '"version" names one version, so "series" is required when several series are configured',
      };
    }
    if (isSkippedVersion(fields.version, skipVersions)) {
      return {
        ok: false,
        error:
          '"version" is in BASM_SKIP_VERSIONS: the mirror never mirrors it; remove it there to mirror it',
      };
    }
    value.version = fields.version;
  }
  return { ok: true, value };
}

/** The parts of an HTTP request the starter reads. */
export interface StarterRequest {
  url: string;
  /** The Content-Length header, if any. */
  contentLength: string | null;
  text(): Promise<string>;
}

/** A plain answer, as the Functions runtime takes it (`HttpResponseInit`). */
export interface HttpAnswer {
  status: number;
  jsonBody: unknown;
  headers?: Record<string, string>;
}

/** What a caller learns about a start that failed: the cause is in the function log. */
const START_FAILED = 'could not start the mirror orchestration; the function log has the cause';

async function readBody(request: StarterRequest): Promise<string | undefined> {
  if (Number(request.contentLength ?? '0') > MAX_BODY_BYTES) return undefined;
  const text = await request.text();
  return Buffer.byteLength(text) > MAX_BODY_BYTES ? undefined : text;
}

/** The app's settings, or undefined after logging what to fix (the answer never says which). */
export function appSettings(env: NodeJS.ProcessEnv, log: StartLogger): MirrorConfig | undefined {
  try {
    return loadConfig(env);
  } catch (error) {
    log.error(errorMessage(error));
    return undefined;
  }
}

export const INVALID_SETTINGS: HttpAnswer = {
  status: 500,
  jsonBody: { error: 'the function app settings are invalid; the function log names each one to fix' },
};

/** The whole starter: settings, body, starts, answer. */
export async function answerMirrorRequest(
  client: OrchestrationClient,
  request: StarterRequest,
  env: NodeJS.ProcessEnv,
  log: StartLogger,
): Promise<HttpAnswer> {
  const config = appSettings(env, log);
  if (!config) return INVALID_SETTINGS;
  const text = await readBody(request);
  if (text === undefined)
    return { status: 413, jsonBody: { error: `the request body is larger than ${MAX_BODY_BYTES} bytes` } };
  const body = parseMirrorHttpBody(text, config.series, config.skipVersions);
  if (!body.ok) return { status: 400, jsonBody: { error: body.error } };

  const series = body.value.series !== undefined ? [body.value.series] : config.series;
  const version = body.value.version;
  const outcomes = await startSeriesMirrors(
    client,
    version !== undefined ? { series, version } : { series },
    log,
  );
  return startAnswer(outcomes, request.url);
}

/**
 * The app's own read-only status URL of a series (src/http-status.ts), beside the starter's route: it
 * carries no key (the caller uses its own function key) and grants nothing more than reading.
 */
export function seriesStatusUrl(requestUrl: string, series: string): string {
  const url = new URL(requestUrl);
  url.search = '';
  url.hash = '';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${encodeURIComponent(series)}`;
  return url.href;
}

/** The outcomes of the starts as one HTTP answer (see the status codes above). */
export function startAnswer(outcomes: readonly SeriesStartOutcome[], requestUrl: string): HttpAnswer {
  const statusUri = (series: string) => seriesStatusUrl(requestUrl, series);
  const [only] = outcomes;
  if (outcomes.length === 1 && only !== undefined) {
    if (isFailedStart(only)) return { status: 500, jsonBody: { error: START_FAILED, id: only.instanceId } };
    if (only.started) {
      return {
        status: 202,
        jsonBody: { id: only.instanceId, series: only.series, statusUri: statusUri(only.series) },
        headers: { Location: statusUri(only.series), 'Retry-After': '10' },
      };
    }
    return {
      status: 409,
      jsonBody: {
        error: `${only.series} is already being mirrored (instance ${only.instanceId} is ${only.runtimeStatus})`,
        id: only.instanceId,
        series: only.series,
        runtimeStatus: only.runtimeStatus,
        statusUri: statusUri(only.series),
      },
    };
  }

  const instances = outcomes.map((outcome) => {
    if (isFailedStart(outcome)) {
      return {
        series: outcome.series,
        outcome: 'failed',
        started: false,
        id: outcome.instanceId,
        error: START_FAILED,
      };
    }
    return {
      series: outcome.series,
      outcome: outcome.started ? 'started' : 'running',
      started: outcome.started,
      ...(outcome.started ? {} : { runtimeStatus: outcome.runtimeStatus }),
      id: outcome.instanceId,
      statusUri: statusUri(outcome.series),
    };
  });
  const failed = outcomes.filter(isFailedStart).length;
  const started = outcomes.filter((outcome) => !isFailedStart(outcome) && outcome.started).length;
  if (started > 0) {
    if (failed === 0) return { status: 202, jsonBody: { instances } };
    return {
      status: 202,
      jsonBody: {
        error: `${failed} of ${outcomes.length} series could not be started; the others are listed with their outcome`,
        instances,
      },
    };
  }
  if (failed > 0) {
    return {
      status: 500,
      jsonBody: {
        error: `no series could be started: ${failed} failed, ${outcomes.length - failed} already being mirrored`,
        instances,
      },
    };
  }
  return { status: 409, jsonBody: { error: 'every configured series is already being mirrored', instances } };
}
