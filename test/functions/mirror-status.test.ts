/**
 * `status` across runners, end to end against the local services: the Functions app (its registered
 * orchestrators and activities, driven as the Durable extension would) mirrors one series and the built
 * CLI's `status` reads it; the CLI mirrors another and `GET /api/mirror/{series}` (through the stand-in
 * host, with the real DurableClient against a fake of the extension's API) reads that.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runStemcellMirrorDirect } from '../support/cli-process.js';
import { driveOrchestration } from '../support/durable-driver.js';
import {
  startFakeDurableExtension,
  type FakeDurableExtension,
} from '../support/functions-core/durable-extension.js';
import {
  httpResult,
  invokeFunction,
  loadFunctionsApp,
  type HttpResult,
} from '../support/functions-core/host.js';
import { startLocalAzure, TEST_REGION, type LocalAzure } from '../support/local-azure.js';
import { buildStemcellFixture } from '../support/stemcell-fixture.js';
import { JAMMY, NOBLE } from '../support/app-settings.js';

const APP_SERIES = JAMMY;
const CLI_SERIES = NOBLE;
const UNRUN_SERIES = 'bosh-azure-hyperv-ubuntu-noble-fips';

let local: LocalAzure;
let extension: FakeDurableExtension;
let env: Record<string, string>;

before(async () => {
  local = await startLocalAzure({ notify: false, pollsUntilDone: 1 });
  env = { ...local.env, BASM_STEMCELL_SERIES: `${APP_SERIES},${CLI_SERIES},${UNRUN_SERIES}` };
  Object.assign(process.env, env);
  for (const [series, version, seed] of [
    [APP_SERIES, '1.100', 11],
    [CLI_SERIES, '1.200', 12],
    [UNRUN_SERIES, '1.300', 13],
  ] as const) {
    const fixture = await buildStemcellFixture({ series, version, seed });
    local.boshio.publish(series, { version, tarball: fixture.tarball });
  }
  extension = await startFakeDurableExtension();
  await loadFunctionsApp();
});
after(async () => {
  await extension?.stop();
  await local?.stop();
});

/** `GET /api/mirror[/{series}]?code=...` as the host delivers it (route parameters included). */
async function getStatus(series?: string): Promise<HttpResult> {
  const url = `https://stemcell-mirror.azurewebsites.net/api/mirror${series ? `/${series}` : ''}?code=functionkey`;
  const { response } = await invokeFunction('mirrorStatus', {
    httpTrigger: {
      http: {
        method: 'GET',
        url,
        headers: {},
        body: {},
        params: series ? { series } : {},
        query: { code: 'functionkey' },
      },
    },
    durableClient: extension.clientBinding(),
  });
  return httpResult(response);
}

async function cliStatus(
  ...series: string[]
): Promise<{ status: number | null; document: { series: Array<Record<string, unknown>> } }> {
  const run = await runStemcellMirrorDirect(['status', '--json', '--series', series.join(',')], env);
  return {
    status: run.status,
    document: JSON.parse(run.stdout) as { series: Array<Record<string, unknown>> },
  };
}

describe('status across runners', () => {
  before(async () => {
    // The input the timer starts it with.
    const app = await driveOrchestration('mirrorSeries', `mirror-${APP_SERIES}`, {
      request: { series: APP_SERIES },
    });
    const appResults = (app.output as { results: Array<{ action: string }> }).results;
    assert.deepEqual(
      appResults.map((r) => r.action),
      ['created'],
      `setup: the app's run failed: ${JSON.stringify(app.output)}`,
    );
    const cli = await runStemcellMirrorDirect(['mirror', '--json', '--series', CLI_SERIES], env);
    assert.equal(cli.status, 0, `setup: the CLI's run failed:\n${cli.stdout}\n${cli.stderr}`);
  });

  test('the CLI reads what the Functions app mirrored: the version, made by the mirror, and the app’s last run', async () => {
    const before = Date.now();
    const { status, document } = await cliStatus(APP_SERIES);

    assert.equal(status, 0);
    assert.equal(document.series.length, 1);
    const [entry] = document.series;
    assert.deepEqual(
      { ...entry, lastRun: undefined },
      {
        series: APP_SERIES,
        newest: '1.100',
        versions: [
          {
            version: '1.100',
            galleryVersion: '1.100.0',
            provisioningState: 'Succeeded',
            regions: [{ name: TEST_REGION, state: 'Completed' }],
            createdBy: 'mirror',
            references: 0,
            notified: true,
          },
        ],
        missing: [],
        deferred: [],
        skipped: [],
        lastRun: undefined,
      },
    );
    const lastRun = entry?.lastRun as Record<string, unknown>;
    assert.equal(lastRun.runner, 'functions');
    assert.equal(lastRun.outcome, 'succeeded');
    assert.deepEqual(lastRun.versions, [{ version: '1.100', galleryVersion: '1.100.0', action: 'created' }]);
    assert.ok(Date.parse(String(lastRun.finishedAt)) <= before, 'finishedAt is when the app’s run ended');
  });

  test('GET /api/mirror/{series} reads what the CLI mirrored, with the CLI’s last run and the orchestration', async () => {
    const instanceId = `mirror-${CLI_SERIES}`;
    extension.putInstance(instanceId, 'Completed');
    const customStatus = { series: CLI_SERIES, plan: ['1.200'], results: [] };
    Object.assign(extension.instances.get(instanceId) ?? {}, { customStatus, input: { secret: 'input' } });

    const result = await getStatus(CLI_SERIES);

    assert.equal(result.status, 200, result.body);
    const body = JSON.parse(result.body) as { series: Array<Record<string, unknown>> };
    assert.equal(body.series.length, 1);
    const [entry] = body.series;
    assert.equal(entry?.series, CLI_SERIES);
    assert.equal(entry?.newest, '1.200');
    assert.deepEqual(
      (entry?.versions as Array<Record<string, unknown>>).map((v) => [v.version, v.createdBy, v.notified]),
      [['1.200', 'mirror', true]],
    );
    assert.equal((entry?.lastRun as Record<string, unknown>).runner, 'cli');
    const orchestration = entry?.orchestration as Record<string, unknown>;
    assert.equal(orchestration.instanceId, instanceId);
    assert.equal(orchestration.runtimeStatus, 'Completed');
    assert.deepEqual(orchestration.customStatus, customStatus);
  });

  test('GET /api/mirror answers every configured series with exactly what `status --json` prints, plus the orchestration', async () => {
    const result = await getStatus();
    const cli = await cliStatus(APP_SERIES, CLI_SERIES, UNRUN_SERIES);

    assert.equal(result.status, 200, result.body);
    const body = JSON.parse(result.body) as { series: Array<Record<string, unknown>> };
    assert.deepEqual(
      body.series.map(({ orchestration: _orchestration, ...rest }) => rest),
      cli.document.series,
    );
    const unrun = body.series.find((s) => s.series === UNRUN_SERIES);
    assert.deepEqual(unrun?.orchestration, { instanceId: `mirror-${UNRUN_SERIES}`, runtimeStatus: null });
    assert.equal(unrun?.lastRun, null);
    assert.deepEqual(unrun?.missing, [
      { version: '1.300', galleryVersion: '1.300.0', reason: 'newest on bosh.io' },
    ]);
  });

  test('the answer grants nothing: no system key, no management URL, no orchestration input', async () => {
    const result = await getStatus();

    assert.doesNotMatch(result.body, /systemkey|code=|webhooks|statusQueryGetUri|terminatePostUri|"input"/);
  });

  test('a series this app does not mirror is 404, and the answer does not repeat it', async () => {
    const result = await getStatus('bosh-azure-hyperv-windows2019');

    assert.equal(result.status, 404);
    assert.doesNotMatch(result.body, /windows2019/);
    assert.match(result.body, new RegExp(APP_SERIES));
  });

  test('fault: bosh.io unreadable: the status endpoint answers 502 with everything else that could be read', async () => {
    local.boshio.setSeriesResponse(APP_SERIES, { status: 503, body: 'down for maintenance' });
    try {
      const result = await getStatus(APP_SERIES);

      assert.equal(result.status, 502);
      const [entry] = (JSON.parse(result.body) as { series: Array<Record<string, unknown>> }).series;
      assert.equal(entry?.newest, null);
      assert.equal((entry?.versions as unknown[]).length, 1, 'the gallery was still read');
      assert.equal((entry?.lastRun as Record<string, unknown>).runner, 'functions');
      assert.match(String((entry?.errors as string[])[0]), /^bosh\.io: /);
    } finally {
      local.boshio.setSeriesResponse(APP_SERIES, { status: 200, body: '' });
    }
  });
});
