/**
 * The command line, built and run as an operator runs it, against the local services: Azurite (HTTPS,
 * OAuth through the managed-identity endpoint) and faithful fakes of bosh.io, ARM and GitHub.
 */

import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { jsonResults, runStemcellMirror } from '../support/cli-process.js';
import {
  startLocalAzure,
  TEST_GALLERY,
  TEST_RESOURCE_GROUP,
  TEST_SUBSCRIPTION,
  type LocalAzure,
} from '../support/local-azure.js';
import { buildStemcellFixture, type StemcellFixture } from '../support/stemcell-fixture.js';

const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

let local: LocalAzure;

before(async () => {
  local = await startLocalAzure();
});
after(async () => {
  await local?.stop();
});

async function publish(
  options: Parameters<typeof buildStemcellFixture>[0] & { series: string; version: string },
): Promise<StemcellFixture> {
  const fixture = await buildStemcellFixture(options);
  local.boshio.publish(options.series, { version: options.version, tarball: fixture.tarball });
  return fixture;
}

function mirror(...args: string[]) {
  return runStemcellMirror(['mirror', '--json', ...args], local.env);
}

function versionsOf(definition: string): string[] {
  return [...local.arm.imageVersions.keys()]
    .filter((k) => k.startsWith(`${definition}/`))
    .map((k) => k.slice(definition.length + 1));
}

function armWrites(since: number): string[] {
  return local.arm.requests
    .slice(since)
    .filter((r) => r.method === 'PUT' || r.method === 'DELETE')
    .map((r) => `${r.method} ${r.path}`);
}

async function blobBytes(url: string): Promise<Buffer> {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  const path = new URL(url).pathname.split('/').slice(2).join('/'); // drop the account segment
  const [container, ...name] = path.split('/');
  return service
    .getContainerClient(container ?? '')
    .getBlobClient(decodeURIComponent(name.join('/')))
    .downloadToBuffer();
}

async function workDirEntries(): Promise<string[]> {
  return readdir(local.workDir, { recursive: true });
}

describe('mirror a new stemcell version', () => {
  let fixture: StemcellFixture;
  let first: Awaited<ReturnType<typeof mirror>>;

  before(async () => {
    fixture = await publish({ series: JAMMY, version: '1.100', seed: 1 });
    first = await mirror('--series', JAMMY);
  });

  test('exits 0 and reports the version created, with its blob', () => {
    assert.equal(first.status, 0, first.stderr);
    const [result, ...rest] = jsonResults(first);
    assert.equal(rest.length, 0);
    assert.equal(result?.series, JAMMY);
    assert.equal(result?.version, '1.100');
    assert.equal(result?.galleryVersion, '1.100.0');
    assert.equal(result?.action, 'created');
    assert.match(String(result?.blobUrl), /^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/stemcell\//);
  });

  test('the page blob holds the VHD byte for byte', async () => {
    const [result] = jsonResults(first);
    const bytes = await blobBytes(String(result?.blobUrl));
    assert.equal(bytes.length, fixture.vhd.length);
    assert.ok(bytes.equals(fixture.vhd), 'blob content differs from root.vhd');
  });

  test('the image definition is created as the BOSH Azure CPI would create it', () => {
    const definition = local.arm.imageDefinitions.get(JAMMY) as
      { properties: Record<string, unknown> } | undefined;
    assert.ok(definition, `no image definition ${JAMMY}`);
    assert.equal(definition.properties.osType, 'Linux');
    assert.equal(definition.properties.osState, 'Generalized');
    assert.equal(definition.properties.hyperVGeneration, 'V1');
    assert.equal(definition.properties.architecture, 'x64');
    assert.deepEqual(definition.properties.identifier, { publisher: 'bosh', offer: JAMMY, sku: 'gen1' });
  });

  test('the image version comes from the blob and carries the CPI tags', () => {
    const version = local.arm.imageVersions.get(`${JAMMY}/1.100.0`) as
      | {
          tags: Record<string, string>;
          properties: {
            provisioningState: string;
            storageProfile: { osDiskImage: { source: Record<string, string> } };
          };
        }
      | undefined;
    assert.ok(version, 'no image version 1.100.0');
    assert.equal(version.properties.provisioningState, 'Succeeded');
    const source = version.properties.storageProfile.osDiskImage.source;
    assert.equal(
      source.storageAccountId,
      `/subscriptions/${TEST_SUBSCRIPTION}/resourceGroups/${TEST_RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/devstoreaccount1`,
    );
    assert.equal(source.uri, jsonResults(first)[0]?.blobUrl);
    assert.equal(version.tags.image_sha256, fixture.imageSha256);
    assert.equal(version.tags.compute_gallery_name, TEST_GALLERY);
    assert.equal(version.tags.compute_gallery_image_definition, JAMMY);
    assert.ok(version.tags.stemcell_references, 'stemcell_references tag missing');
  });

  test('one workflow dispatch with the five inputs', () => {
    const dispatches = local.github.dispatches.filter((d) => d.inputs.gallery_image_version === '1.100.0');
    assert.deepEqual(dispatches, [
      {
        owner: 'example',
        repo: 'stemcell-consumer',
        workflow: 'stemcell-published.yml',
        ref: 'main',
        inputs: {
          gallery_name: TEST_GALLERY,
          gallery_image_name: JAMMY,
          gallery_image_version: '1.100.0',
          gallery_subscription_id: TEST_SUBSCRIPTION,
          gallery_resource_group: TEST_RESOURCE_GROUP,
        },
      },
    ]);
  });

  test('the storage and ARM calls were made with managed-identity tokens', () => {
    const resources = new Set(local.identity.requests.map((r) => r.resource));
    assert.ok(resources.has('https://storage.azure.com'), [...resources].join(', '));
  });

  test('the GitHub token never reaches the output', () => {
    assert.doesNotMatch(
      first.stdout + first.stderr,
      new RegExp(local.env.BASM_NOTIFY_GITHUB_TOKEN ?? 'unset'),
    );
  });

  test('no temp file is left behind', async () => {
    assert.deepEqual(await workDirEntries(), []);
  });

  test('a second run does nothing and uploads nothing', async () => {
    const armBefore = local.arm.requests.length;
    const boshioBefore = local.boshio.requests.length;
    const dispatchesBefore = local.github.dispatches.length;
    const second = await mirror('--series', JAMMY);
    assert.equal(second.status, 0, second.stderr);
    assert.deepEqual(
      jsonResults(second).map((r) => [r.version, r.action]),
      [['1.100', 'exists']],
    );
    assert.deepEqual(armWrites(armBefore), []);
    const downloads = local.boshio.requests.slice(boshioBefore).filter((r) => !r.path.startsWith('/api/'));
    assert.deepEqual(downloads, []);
    assert.equal(local.github.dispatches.length, dispatchesBefore);
  });

  test('--dry-run reports the plan and changes nothing', async () => {
    await publish({ series: JAMMY, version: '1.101', seed: 2 });
    const armBefore = local.arm.requests.length;
    const boshioBefore = local.boshio.requests.length;
    const run = await mirror('--series', JAMMY, '--dry-run');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(jsonResults(run), [
      { series: JAMMY, version: '1.101', galleryVersion: '1.101.0', action: 'planned' },
    ]);
    assert.deepEqual(armWrites(armBefore), []);
    assert.deepEqual(
      local.boshio.requests.slice(boshioBefore).filter((r) => !r.path.startsWith('/api/')),
      [],
    );
    assert.deepEqual(versionsOf(JAMMY), ['1.100.0']);
  });

  test('a missed day is caught up, oldest first', async () => {
    await publish({ series: JAMMY, version: '1.102', seed: 3 });
    await publish({ series: JAMMY, version: '1.99', seed: 4 }); // older than the gallery's: not a gap
    const armBefore = local.arm.requests.length;
    const run = await mirror('--series', JAMMY);
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(
      jsonResults(run).map((r) => [r.version, r.action]),
      [
        ['1.101', 'created'],
        ['1.102', 'created'],
      ],
    );
    const created = armWrites(armBefore).filter((w) => w.startsWith('PUT') && w.includes('/versions/'));
    assert.deepEqual(
      created.map((w) => w.replace(/.*\/versions\//, '')),
      ['1.101.0', '1.102.0'],
    );
  });
});

describe('bad stemcells fail cleanly', () => {
  const cases: Array<{
    name: string;
    series: string;
    expect: RegExp;
    setup: (series: string) => Promise<void>;
  }> = [
    {
      name: 'a tarball whose SHA-256 differs from bosh.io',
      series: 'bosh-azure-hyperv-ubuntu-badsha-go_agent',
      expect: /sha-?256/i,
      setup: async (series) => {
        const f = await buildStemcellFixture({ series, version: '2.1' });
        local.boshio.publish(series, { version: '2.1', tarball: f.tarball, sha256: 'ab'.repeat(32) });
      },
    },
    {
      name: 'an image whose SHA-1 differs from stemcell.MF',
      series: 'bosh-azure-hyperv-ubuntu-badmf-go_agent',
      expect: /sha-?1/i,
      setup: async (series) => {
        await publish({ series, version: '2.1', manifest: { sha1: 'cd'.repeat(20) } });
      },
    },
    {
      name: 'a truncated tarball',
      series: 'bosh-azure-hyperv-ubuntu-truncated-go_agent',
      expect: /truncat|unexpected end|corrupt|incomplete/i,
      setup: async (series) => {
        const f = await buildStemcellFixture({ series, version: '2.1' });
        local.boshio.publish(series, {
          version: '2.1',
          tarball: f.tarball.subarray(0, Math.floor(f.tarball.length / 2)),
        });
      },
    },
    {
      name: 'a tarball without image',
      series: 'bosh-azure-hyperv-ubuntu-noimage-go_agent',
      expect: /image/,
      setup: async (series) => {
        await publish({ series, version: '2.1', omitImage: true });
      },
    },
    {
      name: 'an image without root.vhd',
      series: 'bosh-azure-hyperv-ubuntu-novhd-go_agent',
      expect: /root\.vhd/,
      setup: async (series) => {
        await publish({ series, version: '2.1', omitRootVhd: true });
      },
    },
    {
      name: 'a VHD that is not a whole number of MiB',
      series: 'bosh-azure-hyperv-ubuntu-oddsize-go_agent',
      expect: /MiB/,
      setup: async (series) => {
        await publish({ series, version: '2.1', vhdSizeBytes: 16 * 1024 * 1024 + 512 + 512 });
      },
    },
  ];

  for (const c of cases) {
    test(`${c.name}: exits non-zero, says why, creates no version, leaves no temp file`, async () => {
      await c.setup(c.series);
      const armBefore = local.arm.requests.length;
      const run = await mirror('--series', c.series);
      assert.equal(run.status, 1, run.stderr);
      const [result] = jsonResults(run);
      assert.equal(result?.action, 'failed');
      assert.match(String(result?.error), c.expect);
      assert.deepEqual(Object.keys(result ?? {}), ['series', 'version', 'galleryVersion', 'action', 'error']);
      assert.deepEqual(
        armWrites(armBefore).filter((w) => w.includes('/versions/')),
        [],
      );
      assert.deepEqual(versionsOf(c.series), []);
      assert.deepEqual(await workDirEntries(), []);
    });
  }
});

describe('a gallery version that Azure fails', () => {
  const series = 'bosh-azure-hyperv-ubuntu-noble';

  test('is reported failed, then deleted and created again by the next run', async () => {
    await publish({ series, version: '3.5', seed: 7 });
    local.arm.failNextVersion(series, '3.5.0', {
      code: 'InternalOperationError',
      message: 'Replication failed in westeurope',
    });
    const failed = await mirror('--series', series);
    assert.equal(failed.status, 1);
    const [result] = jsonResults(failed);
    assert.equal(result?.action, 'failed');
    assert.match(String(result?.error), /Replication failed in westeurope/);

    const armBefore = local.arm.requests.length;
    const retried = await mirror('--series', series);
    assert.equal(retried.status, 0, retried.stderr);
    assert.deepEqual(
      jsonResults(retried).map((r) => [r.version, r.action]),
      [['3.5', 'created']],
    );
    const writes = armWrites(armBefore).filter((w) => w.includes('/versions/3.5.0'));
    assert.deepEqual(
      writes.map((w) => w.split(' ')[0]),
      ['DELETE', 'PUT'],
    );
  });
});

describe('a run that stops after the version was created', () => {
  const series = 'bosh-azure-hyperv-ubuntu-notify-go_agent';

  test('is finished by the next run: the dispatch is sent then, without mirroring again', async () => {
    await publish({ series, version: '5.1', seed: 21 });
    const unreachableWorkflow = { ...local.env, BASM_NOTIFY_GITHUB_WORKFLOW: 'not-there.yml' };
    const first = await runStemcellMirror(['mirror', '--json', '--series', series], unreachableWorkflow);
    assert.equal(first.status, 1);
    const [failed] = jsonResults(first);
    assert.equal(failed?.action, 'failed');
    assert.match(String(failed?.error), /Not Found|404/);
    const version = local.arm.imageVersions.get(`${series}/5.1.0`) as
      { tags: Record<string, string> } | undefined;
    assert.equal(version?.tags.mirror_notified, undefined);

    const boshioBefore = local.boshio.requests.length;
    const second = await mirror('--series', series);
    assert.equal(second.status, 0, second.stderr);
    assert.deepEqual(
      jsonResults(second).map((r) => [r.version, r.action]),
      [['5.1', 'created']],
    );
    assert.deepEqual(
      local.github.dispatches
        .filter((d) => d.inputs.gallery_image_name === series)
        .map((d) => d.inputs.gallery_image_version),
      ['5.1.0'],
    );
    assert.deepEqual(
      local.boshio.requests.slice(boshioBefore).filter((r) => !r.path.startsWith('/api/')),
      [],
      'finishing does not download the stemcell again',
    );
    const finished = local.arm.imageVersions.get(`${series}/5.1.0`) as
      { tags: Record<string, string> } | undefined;
    assert.match(String(finished?.tags.mirror_notified), /^\d{4}-\d\d-\d\dT/);

    const third = await mirror('--series', series);
    assert.deepEqual(
      jsonResults(third).map((r) => [r.version, r.action]),
      [['5.1', 'exists']],
    );
  });
});

describe('command-line contract', () => {
  test('an unknown option exits 2 with usage', async () => {
    const run = await runStemcellMirror(['mirror', '--frobnicate'], local.env);
    assert.equal(run.status, 2);
    assert.match(run.stderr, /Usage: npm run --silent stemcell-mirror -- mirror/);
  });

  test('a bad setting exits 2 naming every offending variable before any network call', async () => {
    const boshioBefore = local.boshio.requests.length;
    const env = {
      ...local.env,
      AZURE_SUBSCRIPTION_ID: 'not-a-guid',
      BASM_BOSHIO_URL: 'http://bosh.io',
      BASM_MAX_VERSIONS_PER_RUN: 'many',
    };
    const run = await runStemcellMirror(['mirror', '--json'], env);
    assert.equal(run.status, 2);
    for (const name of ['AZURE_SUBSCRIPTION_ID', 'BASM_BOSHIO_URL', 'BASM_MAX_VERSIONS_PER_RUN'])
      assert.match(run.stderr, new RegExp(name));
    assert.equal(local.boshio.requests.length, boshioBefore);
  });

  test('an unknown series fails that series with a clear message', async () => {
    const run = await mirror('--series', 'bosh-azure-hyperv-ubuntu-nosuch-go_agent');
    assert.equal(run.status, 1);
    assert.match(String(jsonResults(run)[0]?.error), /lists no versions/);
  });

  test('--json results carry exactly the documented fields', async () => {
    const run = await mirror('--series', JAMMY);
    for (const result of jsonResults(run)) {
      for (const key of Object.keys(result)) {
        assert.ok(['series', 'version', 'galleryVersion', 'action', 'blobUrl', 'error'].includes(key), key);
      }
    }
  });

  test('--version mirrors exactly that version', async () => {
    const series = 'bosh-azure-hyperv-ubuntu-pinned-go_agent';
    await publish({ series, version: '4.1', seed: 11 });
    await publish({ series, version: '4.2', seed: 12 });
    const run = await mirror('--series', series, '--version', '4.1');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(
      jsonResults(run).map((r) => [r.version, r.action]),
      [['4.1', 'created']],
    );
    assert.deepEqual(versionsOf(series), ['4.1.0']);

    const boshioBefore = local.boshio.requests.length;
    const again = await mirror('--series', series, '--version', '4.1');
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(
      jsonResults(again).map((r) => [r.version, r.action]),
      [['4.1', 'exists']],
    );
    assert.deepEqual(
      local.boshio.requests.slice(boshioBefore).filter((r) => !r.path.startsWith('/api/')),
      [],
      'an existing version is not downloaded again',
    );
  });
});
