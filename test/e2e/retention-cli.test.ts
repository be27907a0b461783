/**
 * Issue 8, parts 2 and 3, end to end: the built CLI against the local services (Azurite over HTTPS with OAuth,
 * the ARM fake with infra's roles, the bosh.io fake). Retention (BASM_KEEP_VERSIONS) deletes only the mirror's
 * own old versions no director uses, and their blobs; BASM_DELETE_SOURCE_BLOB frees a blob once its version is
 * Succeeded; BASM_SKIP_VERSIONS keeps versions out of every plan. Each story owns its series.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { MIRROR_STEMCELL_REFERENCE } from '../../src/cpi.js';
import type { ComputeGallery } from '../../src/gallery.js';
import { vhdBlobName } from '../../src/pageblob.js';
import { jsonResults, runStemcellMirrorDirect, type CliRun } from '../support/cli-process.js';
import { foreignGallery, succeededVersion, wholeVhdPageBlob } from '../support/foreign-versions.js';
import {
  publishStemcell,
  startLocalAzure,
  TEST_GALLERY,
  TEST_RESOURCE_GROUP,
  TEST_SUBSCRIPTION,
  type LocalAzure,
} from '../support/local-azure.js';
import type { StemcellFixture } from '../support/stemcell-fixture.js';

let local: LocalAzure;

before(async () => {
  local = await startLocalAzure({ pollsUntilDone: 1 });
});
after(async () => {
  await local?.stop();
});

const publish = (series: string, version: string, seed: number): Promise<StemcellFixture> =>
  publishStemcell(local, { series, version, seed });

function run(env: Record<string, string>, ...args: string[]): Promise<CliRun> {
  return runStemcellMirrorDirect(args, { ...local.env, ...env });
}

function container(name: string): ContainerClient {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  return service.getContainerClient(name);
}

function mirrorBlobExists(series: string, version: string): Promise<boolean> {
  return container('stemcell').getBlobClient(vhdBlobName(series, version)).exists();
}

function versionsOf(definition: string): string[] {
  return [...local.arm.imageVersions.keys()]
    .filter((k) => k.startsWith(`${definition}/`))
    .map((k) => k.slice(definition.length + 1))
    .sort();
}

type ImageVersion = {
  tags: Record<string, string>;
  properties: { provisioningState: string; storageProfile: { osDiskImage: { source: { uri: string } } } };
};

function imageVersion(definition: string, version: string): ImageVersion | undefined {
  return local.arm.imageVersions.get(`${definition}/${version}`) as ImageVersion | undefined;
}

/** Requests since `since` that can change something in the definition (anything but GET/HEAD). */
function armChanges(since: number, definition: string): string[] {
  return local.arm.requests
    .slice(since)
    .filter((r) => r.method !== 'GET' && r.method !== 'HEAD')
    .filter((r) => decodeURIComponent(r.path).includes(`/images/${definition}`))
    .map((r) => `${r.method} ${r.path}`);
}

/** The gallery as a director's CPI sees it: the same ARM, a token from the identity endpoint. */
const director = (): ComputeGallery => foreignGallery(local);

/** What `bosh upload-stemcell` leaves with a compute gallery: the CPI's blob and a version referencing it. */
async function directorUpload(series: string, galleryVersion: string, vhd: Buffer): Promise<void> {
  const stemcells = container('director-stemcells');
  await stemcells.createIfNotExists();
  const blobUrl = await wholeVhdPageBlob(stemcells, `bosh-stemcell-${galleryVersion}.vhd`, vhd);
  await succeededVersion(
    director(),
    {
      definitionName: series,
      versionName: galleryVersion,
      blobUrl,
      tags: { stemcell_references: 'bosh-stemcell-2222' },
    },
    'director upload',
  );
}

describe('stories', { concurrency: 3 }, () => {
  describe('retention: BASM_KEEP_VERSIONS=2', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-retention-go_agent';
    const keep = { BASM_KEEP_VERSIONS: '2' };
    let oldest: StemcellFixture;

    before(async () => {
      oldest = await publish(series, '2.1', 71);
      const first = await run({}, 'mirror', '--json', '--series', series);
      assert.equal(first.status, 0, first.stderr);
      for (const [version, seed] of [
        ['2.2', 72],
        ['2.3', 73],
        ['2.4', 74],
      ] as const) {
        await publish(series, version, seed);
      }
      const second = await run({}, 'mirror', '--json', '--series', series);
      assert.equal(second.status, 0, second.stderr);
      assert.deepEqual(versionsOf(series), ['2.1.0', '2.2.0', '2.3.0', '2.4.0']);
      // A director adopted 2.2 (the CPI appends its stemcell id), and uploaded 1.9 itself (bosh.io lists none).
      await director().tagImageVersion(series, '2.2.0', {
        stemcell_references: `${MIRROR_STEMCELL_REFERENCE},bosh-stemcell-1111`,
      });
      await directorUpload(series, '1.9.0', oldest.vhd);
    });

    test('a dry run shows the planned deletion with its reason and changes nothing', async () => {
      const since = local.arm.requests.length;
      const dry = await run(keep, 'mirror', '--json', '--dry-run', '--series', series);
      assert.equal(dry.status, 0, dry.stderr);
      assert.deepEqual(jsonResults(dry), [
        {
          series,
          version: '2.4',
          galleryVersion: '2.4.0',
          action: 'exists',
          blobUrl: container('stemcell').getBlobClient(vhdBlobName(series, '2.4')).url,
        },
        {
          series,
          version: '2.1',
          galleryVersion: '2.1.0',
          action: 'planned-delete',
          reason: 'older than the newest 2 the mirror keeps (BASM_KEEP_VERSIONS); no director uses it',
        },
      ]);
      assert.deepEqual(armChanges(since, series), []);
      assert.equal(await mirrorBlobExists(series, '2.1'), true);
      assert.deepEqual(versionsOf(series), ['1.9.0', '2.1.0', '2.2.0', '2.3.0', '2.4.0']);
    });

    test('a run deletes the oldest mirror-made version and its blob, and leaves what directors use', async () => {
      const since = local.arm.requests.length;
      const real = await run(keep, 'mirror', '--json', '--series', series);
      assert.equal(real.status, 0, real.stderr);
      const results = jsonResults(real);
      assert.deepEqual(
        results.map((r) => [r.version, r.action]),
        [
          ['2.4', 'exists'],
          ['2.1', 'deleted'],
        ],
      );
      assert.match(String(results[1]?.reason), /BASM_KEEP_VERSIONS/);
      assert.deepEqual(
        armChanges(since, series).map((w) => w.replace(/\?.*$/, '')),
        [
          `DELETE /subscriptions/${TEST_SUBSCRIPTION}/resourceGroups/${TEST_RESOURCE_GROUP}/providers/Microsoft.Compute/galleries/${TEST_GALLERY}/images/${series}/versions/2.1.0`,
        ],
      );
      assert.deepEqual(versionsOf(series), ['1.9.0', '2.2.0', '2.3.0', '2.4.0']);
      assert.equal(await mirrorBlobExists(series, '2.1'), false, 'the deleted version’s blob goes too');
      assert.equal(await mirrorBlobExists(series, '2.2'), true, 'the referenced version keeps its blob');
      assert.equal(
        await container('director-stemcells').getBlobClient('bosh-stemcell-1.9.0.vhd').exists(),
        true,
      );
      assert.match(real.stderr, /retention: keeps the newest 2 versions/);

      const status = await run(keep, 'status', '--json', '--series', series);
      assert.equal(status.status, 0, status.stderr);
      const [entry] = (
        JSON.parse(status.stdout) as { series: Array<{ lastRun: { outcome: string; versions: unknown[] } }> }
      ).series;
      assert.equal(entry?.lastRun.outcome, 'succeeded');
      assert.deepEqual(entry?.lastRun.versions, [
        { version: '2.4', galleryVersion: '2.4.0', action: 'exists' },
        { version: '2.1', galleryVersion: '2.1.0', action: 'deleted' },
      ]);
    });

    test('the next run neither mirrors the deleted version again nor deletes anything more', async () => {
      const since = local.arm.requests.length;
      const again = await run(keep, 'mirror', '--json', '--series', series);
      assert.equal(again.status, 0, again.stderr);
      assert.deepEqual(
        jsonResults(again).map((r) => [r.version, r.action]),
        [['2.4', 'exists']],
      );
      assert.deepEqual(armChanges(since, series), []);
    });
  });

  describe('retention against a director adopting meanwhile', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-retention-race-go_agent';

    test('fault: a director adopts a version between the plan and its deletion: the step reads its tags again and keeps it', async () => {
      await publish(series, '5.1', 75);
      const first = await run({}, 'mirror', '--json', '--series', series);
      assert.equal(first.status, 0, first.stderr);
      await publish(series, '5.2', 76);
      await publish(series, '5.3', 77);
      const second = await run({}, 'mirror', '--json', '--series', series);
      assert.equal(second.status, 0, second.stderr);

      // The plan saw 5.1 unused; right before the step's own read of it, a director adopts it.
      local.arm.beforeNext('GET', `/images/${series}/versions/5.1.0`, async () => {
        await director().tagImageVersion(series, '5.1.0', {
          stemcell_references: `${MIRROR_STEMCELL_REFERENCE},bosh-stemcell-3333`,
        });
      });
      const kept = await run({ BASM_KEEP_VERSIONS: '1' }, 'mirror', '--json', '--series', series);
      assert.equal(kept.status, 0, kept.stderr);
      assert.deepEqual(jsonResults(kept).slice(1), [
        {
          series,
          version: '5.1',
          galleryVersion: '5.1.0',
          action: 'exists',
          reason: 'kept: 1 director references it (stemcell_references)',
        },
        {
          series,
          version: '5.2',
          galleryVersion: '5.2.0',
          action: 'deleted',
          reason: 'older than the newest 1 the mirror keeps (BASM_KEEP_VERSIONS); no director uses it',
        },
      ]);
      assert.deepEqual(versionsOf(series), ['5.1.0', '5.3.0']);
      assert.equal(await mirrorBlobExists(series, '5.1'), true);
      assert.equal(await mirrorBlobExists(series, '5.2'), false);
    });
  });

  describe('BASM_DELETE_SOURCE_BLOB=true', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-noblob-go_agent';
    const env = { BASM_DELETE_SOURCE_BLOB: 'true' };

    test('the source blob goes once the version is Succeeded, and later runs and status still work', async () => {
      await publish(series, '4.1', 81);
      const created = await run(env, 'mirror', '--json', '--series', series);
      assert.equal(created.status, 0, created.stderr);
      const [result, ...more] = jsonResults(created);
      assert.equal(more.length, 0);
      assert.deepEqual([result?.version, result?.action], ['4.1', 'created']);
      assert.equal(imageVersion(series, '4.1.0')?.properties.provisioningState, 'Succeeded');
      assert.equal(
        imageVersion(series, '4.1.0')?.properties.storageProfile.osDiskImage.source.uri,
        result?.blobUrl,
      );
      assert.equal(await mirrorBlobExists(series, '4.1'), false);
      assert.match(
        created.stderr,
        /source blob deleted, the version is Succeeded \(BASM_DELETE_SOURCE_BLOB\)/,
      );

      const again = await run(env, 'mirror', '--json', '--series', series);
      assert.equal(again.status, 0, again.stderr);
      assert.deepEqual(
        jsonResults(again).map((r) => [r.version, r.action]),
        [['4.1', 'exists']],
      );
      const status = await run(env, 'status', '--json', '--series', series);
      assert.equal(status.status, 0, status.stderr);
    });

    test('without the setting the source blob stays', async () => {
      const kept = 'bosh-azure-hyperv-ubuntu-keepblob-go_agent';
      await publish(kept, '4.2', 82);
      const created = await run({}, 'mirror', '--json', '--series', kept);
      assert.equal(created.status, 0, created.stderr);
      assert.equal(await mirrorBlobExists(kept, '4.2'), true);
    });
  });

  describe('BASM_SKIP_VERSIONS', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-skip-go_agent';
    const skip = { BASM_SKIP_VERSIONS: '1.918,1.926' };

    before(async () => {
      await publish(series, '1.917', 91);
      await publish(series, '1.918', 92);
    });

    test('a dry run lists the skipped newest with its reason, and plans the next newest', async () => {
      const since = local.arm.requests.length;
      const dry = await run(skip, 'mirror', '--json', '--dry-run', '--series', series);
      assert.equal(dry.status, 0, dry.stderr);
      assert.deepEqual(jsonResults(dry), [
        {
          series,
          version: '1.918',
          galleryVersion: '1.918.0',
          action: 'skipped',
          reason: 'BASM_SKIP_VERSIONS: never mirrored',
        },
        { series, version: '1.917', galleryVersion: '1.917.0', action: 'planned', reason: 'newest' },
      ]);
      assert.deepEqual(armChanges(since, series), []);
    });

    test('--version of a skipped version is refused as bad usage, before anything is called', async () => {
      const since = local.arm.requests.length;
      const boshioSince = local.boshio.requests.length;
      const refused = await run(skip, 'mirror', '--json', '--series', series, '--version', '1.918');
      assert.equal(refused.status, 2);
      assert.equal(refused.stdout, '');
      assert.match(
        refused.stderr,
        new RegExp(`--version: ${series} 1\\.918 is in BASM_SKIP_VERSIONS: the mirror never mirrors it`),
      );
      // Other stories run meanwhile: nothing about this series was asked of ARM or bosh.io.
      const about = (path: string) => decodeURIComponent(path).includes(series);
      assert.deepEqual(
        local.arm.requests.slice(since).filter((r) => about(r.path)),
        [],
      );
      assert.deepEqual(
        local.boshio.requests.slice(boshioSince).filter((r) => about(r.path)),
        [],
      );
    });

    test('a run mirrors the next newest and does not list the skipped one', async () => {
      const real = await run(skip, 'mirror', '--json', '--series', series);
      assert.equal(real.status, 0, real.stderr);
      assert.deepEqual(
        jsonResults(real).map((r) => [r.version, r.action]),
        [['1.917', 'created']],
      );
      assert.match(real.stderr, /1\.918 never mirrored \(BASM_SKIP_VERSIONS\)/);
      assert.equal(imageVersion(series, '1.918.0'), undefined);
    });

    test('a bad skip list is a settings error naming the variable', async () => {
      const bad = await run({ BASM_SKIP_VERSIONS: '1.918,latest' }, 'mirror', '--json', '--series', series);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /BASM_SKIP_VERSIONS: "latest" is not a stemcell version/);
    });
  });
});
