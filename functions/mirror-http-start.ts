/**
 * HTTP starter `mirrorHttpStart`: `POST /api/mirror` (function key), optional JSON body
 * `{ "series": "...", "version": "..." }`.
 *
 * One series (named in the body, or the only one configured): 202 with the Durable status URLs, 409 when
 * the series is already being mirrored, 500 when its orchestration could not be started.
 * Several series (no body, several configured): each is started on its own, and a failure for one does not
 * hide the others. The answer lists every series with its outcome (`started`, `running` or `failed`) and is
 * 202 when at least one started, 409 when every one was already running, 500 when none started and at least
 * one failed. 400 for a body it cannot use, 413 for one larger than 4 KiB.
 *
 * `series` must be one of the configured series (BASM_STEMCELL_SERIES): the app settings decide what the
 * gallery holds (and how its definitions are named), not whoever holds a function key. Without `series`
 * every configured series is started; `version` then needs exactly one configured series.
 *
 * The status URLs carry the task hub's system key (they allow terminate, purge and rewind): whoever holds
 * this function's key gets them.
 */

import {
  app,
  type HttpRequest,
  type HttpResponse,
  type HttpResponseInit,
  type InvocationContext,
} from '@azure/functions';
import * as df from 'durable-functions';
import { loadConfig, SERIES_PATTERN } from '../src/config.js';
import { errorMessage } from '../src/failures.js';
import { isStemcellVersion } from '../src/versions.js';
import { seriesInstanceId, type MirrorRequest } from '../src/workflow.js';
import { monitorSettings, startSeriesMirror, type SeriesStart } from './series-start.js';

/** A body that names a series and a version is well under this; anything bigger is not ours. */
const MAX_BODY_BYTES = 4096;
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
    value.version = fields.version;
  }
  return { ok: true, value };
}

/** What a caller learns about a start that failed: the cause is in the function log. */
const START_FAILED = 'could not start the mirror orchestration; the function log has the cause';

type SeriesOutcome = SeriesStart | { failed: true; series: string; instanceId: string };

function isFailed(outcome: SeriesOutcome): outcome is { failed: true; series: string; instanceId: string } {
  return 'failed' in outcome;
}

function jsonResponse(status: number, jsonBody: unknown): HttpResponseInit {
  return { status, jsonBody };
}

async function readBody(request: HttpRequest): Promise<string | undefined> {
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > MAX_BODY_BYTES) return undefined;
  const text = await request.text();
  return Buffer.byteLength(text) > MAX_BODY_BYTES ? undefined : text;
}

async function startMirror(
  request: HttpRequest,
  context: InvocationContext,
): Promise<HttpResponseInit | HttpResponse> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    context.error(errorMessage(error));
    return jsonResponse(500, {
      error: 'the function app settings are invalid; the function log names each one to fix',
    });
  }

  const text = await readBody(request);
  if (text === undefined)
    return jsonResponse(413, { error: `the request body is larger than ${MAX_BODY_BYTES} bytes` });
  const body = parseMirrorHttpBody(text, config.series);
  if (!body.ok) return jsonResponse(400, { error: body.error });

  const client = df.getClient(context);
  const monitor = monitorSettings(config);
  const targets = body.value.series !== undefined ? [body.value.series] : config.series;
  const outcomes: SeriesOutcome[] = [];
  for (const series of targets) {
    const mirrorRequest: MirrorRequest = { series };
    if (body.value.version !== undefined) mirrorRequest.version = body.value.version;
    try {
      const start = await startSeriesMirror(client, { request: mirrorRequest, monitor });
      context.info(
        start.started
          ? `${series}: started orchestration ${start.instanceId}`
          : `${series}: orchestration ${start.instanceId} is still ${start.runtimeStatus}; not starting another`,
      );
      outcomes.push(start);
    } catch (error) {
      // The cause goes to the log only: it may name internal endpoints, and the caller cannot act on it.
      context.error(`${series}: could not start the mirror orchestration: ${errorMessage(error)}`);
      outcomes.push({ failed: true, series, instanceId: seriesInstanceId(series) });
    }
  }

  const [only] = outcomes;
  if (outcomes.length === 1 && only !== undefined) {
    if (isFailed(only)) return jsonResponse(500, { error: START_FAILED, id: only.instanceId });
    if (only.started) return client.createCheckStatusResponse(request, only.instanceId);
    return jsonResponse(409, {
      error: `${only.series} is already being mirrored (instance ${only.instanceId} is ${only.runtimeStatus})`,
      ...client.createHttpManagementPayload(only.instanceId),
    });
  }

  const instances = outcomes.map((outcome) => {
    if (isFailed(outcome)) {
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
      ...client.createHttpManagementPayload(outcome.instanceId),
    };
  });
  const failed = outcomes.filter(isFailed).length;
  const started = outcomes.filter((outcome) => !isFailed(outcome) && outcome.started).length;
  if (started > 0) {
    if (failed === 0) return jsonResponse(202, { instances });
    return jsonResponse(202, {
      error: `${failed} of ${outcomes.length} series could not be started; the others are listed with their outcome`,
      instances,
    });
  }
  if (failed > 0) {
    return jsonResponse(500, {
      error: `no series could be started: ${failed} failed, ${outcomes.length - failed} already being mirrored`,
      instances,
    });
  }
  return jsonResponse(409, { error: 'every configured series is already being mirrored', instances });
}

app.http('mirrorHttpStart', {
  route: 'mirror',
  methods: ['POST'],
  authLevel: 'function',
  extraInputs: [df.input.durableClient()],
  handler: startMirror,
});
