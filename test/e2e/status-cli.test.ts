/**
 * `status` as an operator runs it (the built CLI) against the local services: what it shows of a gallery
 * the mirror and a director share, that it only reads (and reads little), and its exit statuses.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { loadConfig } from '../../src/config.js';
import { createAzureCredential } from '../../src/credentials.js';
import { computeGalleryFor } from '../../src/services.js';
import { runStemcellMirror, runStemcellMirrorDirect } from '../support/cli-process.js';
import { startLocalAzure, TEST_REGION, type LocalAzure } from '../support/local-azure.js';
import { buildStemcellFixture } from '../support/stemcell-fixture.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const VERSIONS = ['1.1', '1.2', '1.3', '1.4', '1.5', '1.6'];

let local: LocalAzure;
let env: Record<string, string>;

before(async () => {
  local = await startLocalAzure({ pollsUntilDone: 1, notify: false });
  env = { ...local.env, BASM_STEMCELL_SERIES: SERIES, BASM_MAX_VERSIONS_PER_RUN: '1' };
  for (const [i, version] of VERSIONS.entries()) {
    const fixture = await buildStemcellFixture({ series: SERIES, version, seed: 40 + i });
    local.boshio.publish(SERIES, { version, tarball: fixture.tarball });
  }
  // The mirror makes 1.2 and 1.6; then a director adopts 1.6 and starts using 1.2 too.
  for (const version of ['1.2', '1.6']) {
    const run = await runStemcellMirrorDirect(['mirror', '--json', '--version', version], env);
    assert.equal(run.status, 0, `setup mirror of ${version} failed:\n${run.stdout}\n${run.stderr}`);
  }
  process.env.IDENTITY_ENDPOINT = local.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = local.env.IDENTITY_HEADER;
  // As a director's CPI would: through ARM, as the identity the tests' token endpoint serves.
  const gallery = computeGalleryFor(loadConfig(env), createAzureCredential(undefined));
  const retag = async (version: string, references: string) => {
    await gallery.tagImageVersion(SERIES, version, { stemcell_references: references });
  };
  await retag('1.2.0', 'bosh-azure-stemcell-mirror,bosh-stemcell-0001');
  await retag('1.6.0', 'bosh-stemcell-0002,bosh-stemcell-0003,bosh-azure-stemcell-mirror');
});
after(async () => {
  await local?.stop();
});

function status(...args: string[]) {
  return runStemcellMirrorDirect(['status', ...args], env);
}

describe('status of a gallery the mirror and a director share', () => {
  test('--json prints exactly one document: versions, who made them, what the next run does, the last run', async () => {
    const run = await status('--json');

    assert.equal(run.status, 0, run.stderr);
    const document = JSON.parse(run.stdout) as { series: Array<Record<string, unknown>> };
    assert.deepEqual(Object.keys(document), ['series']);
    const [entry] = document.series;
    assert.deepEqual(Object.keys(entry ?? {}), [
      'series',
      'newest',
      'versions',
      'missing',
      'deferred',
      'skipped',
      'lastRun',
    ]);
    assert.equal(entry?.newest, '1.6');
    assert.deepEqual(entry?.versions, [
      {
        version: '1.2',
        galleryVersion: '1.2.0',
        provisioningState: 'Succeeded',
        regions: [{ name: TEST_REGION, state: 'Completed' }],
        createdBy: 'mirror',
        references: 1,
        notified: true,
      },
      {
        version: '1.6',
        galleryVersion: '1.6.0',
        provisioningState: 'Succeeded',
        regions: [{ name: TEST_REGION, state: 'Completed' }],
        createdBy: 'adopted',
        references: 2,
        notified: true,
      },
    ]);
    // planSeries with a cap of 1: the gap above 1.2 is filled one version a run.
    assert.deepEqual(entry?.missing, [
      { version: '1.3', galleryVersion: '1.3.0', reason: 'a gap above the oldest version the mirror made' },
    ]);
    assert.deepEqual(
      (entry?.deferred as Array<{ version: string }>).map((d) => d.version),
      ['1.4', '1.5'],
    );
    assert.deepEqual(entry?.skipped, [
      {
        version: '1.1',
        galleryVersion: '1.1.0',
        reason: 'older than 1.2, the oldest version the mirror made: no backfill below it',
      },
    ]);
    const lastRun = entry?.lastRun as Record<string, unknown>;
    assert.equal(lastRun.runner, 'cli');
    assert.equal(lastRun.outcome, 'succeeded');
    assert.deepEqual(lastRun.versions, [{ version: '1.6', galleryVersion: '1.6.0', action: 'created' }]);
  });

  test('on a terminal: a compact table per series, then the next run, deferred, skipped and the last run', async () => {
    const run = await runStemcellMirror(['status'], env);

    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.split('\n');
    assert.equal(lines[0], `${SERIES}  (newest on bosh.io: 1.6)`);
    assert.match(lines[1] ?? '', /^ {2}VERSION +GALLERY +STATE +REGIONS +BY +REFS +NOTIFIED$/);
    assert.match(
      lines[2] ?? '',
      new RegExp(`^  1\\.2 +1\\.2\\.0 +Succeeded +${TEST_REGION}:Completed +mirror +1 +yes$`),
    );
    assert.match(
      lines[3] ?? '',
      new RegExp(`^  1\\.6 +1\\.6\\.0 +Succeeded +${TEST_REGION}:Completed +adopted +2 +yes$`),
    );
    assert.equal(lines[4], '  next run: 1.3 (a gap above the oldest version the mirror made)');
    assert.match(lines[5] ?? '', /^ {2}deferred: 1\.4 \(BASM_MAX_VERSIONS_PER_RUN/);
    assert.match(lines[6] ?? '', /^ {2}skipped: {2}1\.1 \(older than 1\.2/);
    assert.match(
      lines[7] ?? '',
      /^ {2}last run: \d{4}-\d\d-\d\dT[\d:.]+Z by cli, succeeded \(1\.6 created\)$/,
    );
  });

  test('only reads, and little: no ARM write, no download, no blob written, a few requests per series', async () => {
    const armBefore = local.arm.requests.length;
    const boshioBefore = local.boshio.requests.length;
    const container = new BlobServiceClient(
      local.azurite.blobEndpoint,
      local.azurite.sharedKeyCredential,
    ).getContainerClient('stemcell');
    const blobsBefore: string[] = [];
    for await (const blob of container.listBlobsFlat())
      blobsBefore.push(`${blob.name} ${blob.properties.etag}`);

    const run = await status('--json');

    assert.equal(run.status, 0, run.stderr);
    const arm = local.arm.requests.slice(armBefore);
    assert.deepEqual(
      arm.filter((r) => r.method !== 'GET'),
      [],
    );
    // List the definitions, list the one definition's versions, one GET per version (replication status).
    assert.equal(arm.length, 4, arm.map((r) => r.path).join('\n'));
    assert.deepEqual(
      local.boshio.requests.slice(boshioBefore).map((r) => r.path),
      [`/api/v1/stemcells/${SERIES}`],
    );
    const blobsAfter: string[] = [];
    for await (const blob of container.listBlobsFlat())
      blobsAfter.push(`${blob.name} ${blob.properties.etag}`);
    assert.deepEqual(blobsAfter, blobsBefore);
  });

  test('fault: bosh.io unreadable: status exits 1 and still shows the rest', async () => {
    local.boshio.setSeriesResponse(SERIES, { status: 503, body: 'maintenance' });
    try {
      const run = await status('--json');

      assert.equal(run.status, 1);
      const [entry] = (JSON.parse(run.stdout) as { series: Array<Record<string, unknown>> }).series;
      assert.equal(entry?.newest, null);
      assert.equal((entry?.versions as unknown[]).length, 2);
      assert.match(String((entry?.errors as string[])[0]), /^bosh\.io: /);
      assert.match(run.stderr, /could not be read/);
    } finally {
      local.boshio.setSeriesResponse(SERIES, { status: 200, body: '' });
    }
  });

  test('exits 2 for an option status does not take, with its usage', async () => {
    const run = await status('--version', '1.2');

    assert.equal(run.status, 2);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /Usage: npm run --silent stemcell-mirror -- status/);
  });
});
