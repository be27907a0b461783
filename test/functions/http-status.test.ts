/**
 * `GET /api/mirror/{series}` and `GET /api/mirror` as the host delivers them: the real DurableClient of
 * durable-functions reading a fake of the Durable extension's HTTP API, and the status model reading the
 * local services (bosh.io, ARM, storage; test/functions/mirror-status.test.ts covers what it shows).
 */

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  startFakeDurableExtension,
  type FakeDurableExtension,
} from '../support/functions-core/durable-extension.js';
import {
  httpData,
  httpResult,
  invokeFunction,
  loadFunctionsApp,
  type HttpResult,
} from '../support/functions-core/host.js';
import { JAMMY, NOBLE } from '../support/app-settings.js';
import { startLocalAzure, type LocalAzure } from '../support/local-azure.js';
import { buildStemcellFixture } from '../support/stemcell-fixture.js';

const BASE = 'https://stemcell-mirror.azurewebsites.net/api/mirror';
/** What a forged or ordinary start put in the orchestration's input: never part of a status answer. */
const INPUT_MARKER = 'input-only-for-administrators';

let extension: FakeDurableExtension;
let local: LocalAzure;

before(async () => {
  local = await startLocalAzure({ notify: false });
  Object.assign(process.env, local.env, { BASM_STEMCELL_SERIES: `${JAMMY},${NOBLE}` });
  for (const series of [JAMMY, NOBLE]) {
    const fixture = await buildStemcellFixture({ series, version: '1.100' });
    local.boshio.publish(series, { version: '1.100', tarball: fixture.tarball });
  }
  extension = await startFakeDurableExtension();
  await loadFunctionsApp();
});
after(async () => {
  await extension?.stop();
  await local?.stop();
});
beforeEach(() => {
  extension.instances.clear();
});

async function get(series?: string): Promise<HttpResult> {
  const url = series === undefined ? `${BASE}?code=functionkey` : `${BASE}/${series}?code=functionkey`;
  const { response } = await invokeFunction('mirrorStatus', {
    httpTrigger: httpData({ method: 'GET', url, ...(series !== undefined ? { params: { series } } : {}) }),
    durableClient: extension.clientBinding(),
  });
  return httpResult(response);
}

function json(result: HttpResult): Record<string, unknown> {
  return JSON.parse(result.body) as Record<string, unknown>;
}

/** The orchestration part of each series' entry. */
function orchestrations(result: HttpResult): Array<Record<string, unknown>> {
  return (json(result).series as Array<{ orchestration: Record<string, unknown> }>).map(
    (s) => s.orchestration,
  );
}

function putRun(
  instanceId: string,
  runtimeStatus: string,
  fields: { customStatus?: unknown; output?: unknown } = {},
) {
  extension.putInstance(instanceId, runtimeStatus);
  Object.assign(extension.instances.get(instanceId)!, { input: { marker: INPUT_MARKER }, ...fields });
}

describe('one series', () => {
  test('a finished run answers its runtime status, custom status and results', async () => {
    const output = { series: JAMMY, results: [{ series: JAMMY, version: '1.100', action: 'created' }] };
    const customStatus = { series: JAMMY, plan: ['1.100'], counts: { done: 1 }, results: output.results };
    putRun(`mirror-${JAMMY}`, 'Completed', { customStatus, output });

    const result = await get(JAMMY);

    assert.equal(result.status, 200, result.body);
    assert.deepEqual(
      (json(result).series as Array<{ series: string }>).map((s) => s.series),
      [JAMMY],
    );
    const [body = {}] = orchestrations(result);
    assert.equal(body.instanceId, `mirror-${JAMMY}`);
    assert.equal(body.runtimeStatus, 'Completed');
    assert.deepEqual(body.customStatus, customStatus);
    assert.deepEqual(body.output, output);
    assert.equal(typeof body.createdTime, 'string');
  });

  test('a running series also answers the status of the version it is mirroring', async () => {
    const versionId = `mirror-${JAMMY}-1.100-20260504T060000Z`;
    putRun(`mirror-${JAMMY}`, 'Running', {
      customStatus: { series: JAMMY, current: { version: '1.100', instanceId: versionId } },
    });
    putRun(versionId, 'Running', { customStatus: { step: 'uploadVhd', bytesUploaded: 1024 } });

    const [body = {}] = orchestrations(await get(JAMMY));

    assert.deepEqual(body.currentVersion, {
      instanceId: versionId,
      runtimeStatus: 'Running',
      customStatus: { step: 'uploadVhd', bytesUploaded: 1024 },
    });
  });

  test('a series the app never started answers its status, with a runtime status of null', async () => {
    const result = await get(NOBLE);

    assert.equal(result.status, 200, result.body);
    const [entry] = json(result).series as Array<Record<string, unknown>>;
    assert.equal(entry?.newest, '1.100');
    assert.deepEqual(entry?.orchestration, { instanceId: `mirror-${NOBLE}`, runtimeStatus: null });
  });
});

test('GET /api/mirror answers every configured series', async () => {
  putRun(`mirror-${JAMMY}`, 'Running');

  const result = await get();

  assert.equal(result.status, 200, result.body);
  const all = json(result).series as Array<{ series: string; orchestration: Record<string, unknown> }>;
  assert.deepEqual(
    all.map((s) => [s.series, s.orchestration.runtimeStatus]),
    [
      [JAMMY, 'Running'],
      [NOBLE, null],
    ],
  );
});

describe('what a function-key holder cannot learn or reach', () => {
  test('fault: a status answer carries neither the orchestration input nor a key nor a management URL', async () => {
    putRun(`mirror-${JAMMY}`, 'Completed', { customStatus: { series: JAMMY }, output: { series: JAMMY } });

    for (const result of [await get(JAMMY), await get()]) {
      assert.equal(result.status, 200);
      const seen = `${JSON.stringify(result.headers)} ${result.body}`;
      assert.doesNotMatch(seen, new RegExp(INPUT_MARKER));
      assert.doesNotMatch(seen, /systemkey|code=|webhooks|durabletask|purge|terminate|rewind/i);
    }
  });

  test('fault: a series this app does not mirror answers 404 without repeating it or reading its instance', async () => {
    putRun('mirror-bosh-aws-xen-hvm-ubuntu-jammy-go_agent', 'Completed', { output: { secret: 'other' } });

    for (const series of ['bosh-aws-xen-hvm-ubuntu-jammy-go_agent', '<script>alert(1)</script>', '..']) {
      const result = await get(series);
      assert.equal(result.status, 404, series);
      assert.match(String(json(result).error), /not a series this app mirrors/);
      assert.doesNotMatch(result.body, /aws|script|alert|other/);
    }
  });

  test('fault: a custom status naming another series’ instance as current is not followed', async () => {
    putRun(`mirror-${JAMMY}`, 'Running', {
      customStatus: { series: JAMMY, current: { version: '1.1', instanceId: `mirror-${NOBLE}` } },
    });
    putRun(`mirror-${NOBLE}`, 'Running', { customStatus: { step: 'uploadVhd' } });

    const [body = {}] = orchestrations(await get(JAMMY));

    assert.equal(body.runtimeStatus, 'Running');
    assert.equal(body.currentVersion, undefined);
  });
});
