/**
 * `POST /api/mirror` as the host delivers it: the request and the durable client binding in RPC form,
 * the real DurableClient of durable-functions talking to a fake of the Durable extension's HTTP API.
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
import { JAMMY, NOBLE, STARTER_MONITOR, starterSettings } from './app-settings.js';

const URL_BASE = 'https://stemcell-mirror.azurewebsites.net/api/mirror?code=functionkey';

let extension: FakeDurableExtension;

before(async () => {
  Object.assign(process.env, starterSettings(`${JAMMY},${NOBLE}`));
  extension = await startFakeDurableExtension();
  await loadFunctionsApp();
});
after(async () => {
  await extension?.stop();
});
beforeEach(() => {
  extension.instances.clear();
  extension.starts.length = 0;
});

async function post(body?: string): Promise<HttpResult> {
  const init = { method: 'POST', url: URL_BASE, headers: { 'content-type': 'application/json' } };
  const { response } = await invokeFunction('mirrorHttpStart', {
    httpTrigger: httpData(body === undefined ? init : { ...init, body }),
    durableClient: extension.clientBinding(),
  });
  return httpResult(response);
}

function json(result: HttpResult): Record<string, unknown> {
  return JSON.parse(result.body) as Record<string, unknown>;
}

describe('accepted requests', () => {
  test('a series and version start that series’ orchestration and answer 202 with its status URLs', async () => {
    const result = await post(JSON.stringify({ series: JAMMY, version: '1.1364' }));

    assert.equal(result.status, 202);
    const body = json(result);
    assert.equal(body.id, `mirror-${JAMMY}`);
    assert.equal(
      body.statusQueryGetUri,
      `https://stemcell-mirror.azurewebsites.net/runtime/webhooks/durabletask/instances/mirror-${JAMMY}` +
        '?taskHub=StemcellMirror&connection=Storage&code=systemkey',
    );
    assert.equal(result.headers.location, body.statusQueryGetUri);
    assert.deepEqual(extension.starts, [
      {
        name: 'mirrorSeries',
        instanceId: `mirror-${JAMMY}`,
        input: { request: { series: JAMMY, version: '1.1364' }, monitor: STARTER_MONITOR },
        accepted: true,
      },
    ]);
  });

  test('no body starts every configured series', async () => {
    const result = await post();

    assert.equal(result.status, 202);
    assert.deepEqual(
      extension.starts.map((s) => s.input),
      [
        { request: { series: JAMMY }, monitor: STARTER_MONITOR },
        { request: { series: NOBLE }, monitor: STARTER_MONITOR },
      ],
    );
    const instances = json(result).instances as Array<Record<string, unknown>>;
    assert.deepEqual(
      instances.map((i) => [i.series, i.started, i.id]),
      [
        [JAMMY, true, `mirror-${JAMMY}`],
        [NOBLE, true, `mirror-${NOBLE}`],
      ],
    );
  });

  test('a series whose last run completed or failed is started again', async () => {
    extension.putInstance(`mirror-${JAMMY}`, 'Failed');

    const result = await post(JSON.stringify({ series: JAMMY }));

    assert.equal(result.status, 202);
    assert.equal(extension.instances.get(`mirror-${JAMMY}`)?.runtimeStatus, 'Pending');
  });
});

describe('a series already being mirrored', () => {
  test('answers 409 with the running instance’s status URLs and starts nothing', async () => {
    extension.putInstance(`mirror-${JAMMY}`, 'Running');

    const result = await post(JSON.stringify({ series: JAMMY }));

    assert.equal(result.status, 409);
    const body = json(result);
    assert.match(String(body.error), /already being mirrored.*Running/);
    assert.equal(body.id, `mirror-${JAMMY}`);
    assert.match(String(body.statusQueryGetUri), new RegExp(`/instances/mirror-${JAMMY}\\?`));
    assert.equal(extension.starts.length, 0);
  });

  test('with no body, a running series is skipped and the others start', async () => {
    extension.putInstance(`mirror-${NOBLE}`, 'ContinuedAsNew');

    const result = await post('');

    assert.equal(result.status, 202);
    const instances = json(result).instances as Array<Record<string, unknown>>;
    assert.deepEqual(
      instances.map((i) => [i.series, i.started]),
      [
        [JAMMY, true],
        [NOBLE, false],
      ],
    );
    assert.deepEqual(
      extension.starts.map((s) => s.instanceId),
      [`mirror-${JAMMY}`],
    );
  });
});

describe('bad bodies answer 400 and start nothing', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"series": ', /not valid JSON/],
    ['a JSON array', '["bosh"]', /must be a JSON object/],
    ['JSON null', 'null', /must be a JSON object/],
    ['a JSON string', '"bosh-azure-hyperv-ubuntu-jammy-go_agent"', /must be a JSON object/],
    ['an unknown field', JSON.stringify({ series: JAMMY, dryRun: true }), /unknown field/],
    [
      'a series that is not a series name',
      JSON.stringify({ series: '../../etc/passwd' }),
      /not a stemcell series name/,
    ],
    [
      'a valid series this app does not mirror',
      JSON.stringify({ series: 'bosh-aws-xen-hvm-ubuntu-jammy-go_agent' }),
      /not one this app mirrors/,
    ],
    ['a series that is not a string', JSON.stringify({ series: ['a'] }), /"series" must be a string/],
    [
      'a version that is not a version',
      JSON.stringify({ series: JAMMY, version: '1.100-rc1' }),
      /not a stemcell version/,
    ],
    [
      'a version that is a number',
      JSON.stringify({ series: JAMMY, version: 1.1 }),
      /"version" must be a string/,
    ],
    [
      'a version without a series when several are configured',
      JSON.stringify({ version: '1.100' }),
      /"series" is required/,
    ],
  ];
  for (const [what, body, message] of cases) {
    test(`${what}`, async () => {
      const result = await post(body);

      assert.equal(result.status, 400);
      assert.match(String(json(result).error), message);
      assert.equal(extension.starts.length, 0);
    });
  }

  test('the error never repeats what the caller sent', async () => {
    const result = await post(JSON.stringify({ series: '<script>alert(1)</script>', '<img>': 1 }));

    assert.equal(result.status, 400);
    assert.doesNotMatch(result.body, /script|img/);
  });
});
