/**
 * Target regions, end to end: the built CLI against the local services, with the ARM fake replicating to
 * each region over several reads (so a version is `Succeeded` while a region still replicates). Each story
 * owns its series and temp directory, as in mirror-cli.test.ts, and the stories run concurrently.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MIRROR_STEMCELL_REFERENCE } from '../../src/cpi.js';
import { jsonResults, runStemcellMirrorDirect, type CliRun } from '../support/cli-process.js';
import { foreignGallery } from '../support/foreign-versions.js';
import {
  publishStemcell,
  startLocalAzure,
  storyIn,
  TEST_REGION,
  type LocalAzure,
  type Story,
} from '../support/local-azure.js';

const DAY_MS = 86_400_000;

let local: LocalAzure;

before(async () => {
  local = await startLocalAzure({ pollsUntilDone: 1, replicationReadsUntilDone: 2 });
});
after(async () => {
  await local?.stop();
});

const story = (name: string, settings: Record<string, string> = {}): Promise<Story> =>
  storyIn(local, name, settings);

async function publish(series: string, version: string, seed: number): Promise<void> {
  await publishStemcell(local, { series, version, seed });
}

function mirror(s: Story, ...args: string[]): Promise<CliRun> {
  return runStemcellMirrorDirect(['mirror', '--json', ...args], s.env);
}

interface StoredVersion {
  properties: {
    provisioningState: string;
    publishingProfile: {
      targetRegions: Array<{ name: string; regionalReplicaCount: number; storageAccountType: string }>;
      storageAccountType: string;
      endOfLifeDate?: string;
    };
    storageProfile: unknown;
  };
}

function stored(definition: string, version: string): StoredVersion | undefined {
  return local.arm.imageVersions.get(`${definition}/${version}`) as StoredVersion | undefined;
}

function regionsOf(definition: string, version: string): string[] {
  return (stored(definition, version)?.properties.publishingProfile.targetRegions ?? []).map(
    (r) => `${r.name}=${r.regionalReplicaCount}`,
  );
}

/** Requests that change something (not GET) about `definition`'s versions since `since`. */
function versionChanges(since: number, definition: string): string[] {
  return local.arm.requests
    .slice(since)
    .filter((r) => r.method !== 'GET' && r.path.includes(`/images/${definition}/versions/`))
    .map((r) => `${r.method} ${r.path.slice(r.path.indexOf('/versions/') + '/versions/'.length)}`);
}

describe('target regions', { concurrency: true }, () => {
  test('a version in two regions is created with both, and reported only once both have their replicas', async () => {
    const series = 'bosh-azure-hyperv-ubuntu-regions-two';
    const s = await story('regions-two', {
      BASM_TARGET_REGIONS: `${TEST_REGION},eastus=2`,
      BASM_STORAGE_ACCOUNT_TYPE: 'Standard_ZRS',
    });
    await publish(series, '7.1', 71);
    const run = await mirror(s, '--series', series);
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(
      jsonResults(run).map((r) => [r.version, r.action]),
      [['7.1', 'created']],
    );
    assert.deepEqual(regionsOf(series, '7.1.0'), [`${TEST_REGION}=1`, 'eastus=2']);
    assert.equal(stored(series, '7.1.0')?.properties.publishingProfile.storageAccountType, 'Standard_ZRS');
    // Azure said Succeeded while eastus still replicated: the run kept waiting, and said so per region.
    assert.match(
      run.stderr,
      new RegExp(
        `image version 7\\.1\\.0 is Succeeded \\(${TEST_REGION} Completed, eastus Replicating 40%\\)`,
      ),
    );
    assert.match(
      run.stderr,
      new RegExp(`7\\.1\\.0 is Succeeded \\(${TEST_REGION} Completed, eastus Completed\\)`),
    );
    const dispatched = local.github.dispatches.filter((d) => d.inputs.gallery_image_name === series);
    assert.equal(dispatched.length, 1);
  });

  test("fault: replication failing in one region fails the version, naming the region and Azure's details", async () => {
    const series = 'bosh-azure-hyperv-ubuntu-regions-fail';
    const s = await story('regions-fail', { BASM_TARGET_REGIONS: `${TEST_REGION},eastus` });
    await publish(series, '7.2', 72);
    local.arm.failNextReplication(series, '7.2.0', 'eastus', {
      code: 'ReplicationJobsNotCompleted',
      message: 'Replication job not completed at region: eastus. Quota exceeded.',
    });
    const run = await mirror(s, '--series', series);
    assert.equal(run.status, 1);
    const [result] = jsonResults(run);
    assert.equal(result?.action, 'failed');
    assert.match(
      String(result?.error),
      /image version \S+\/7\.2\.0 Failed in eastus \(Replication job not completed at region: eastus\. Quota exceeded\.\)/,
    );
    assert.equal(
      local.github.dispatches.filter((d) => d.inputs.gallery_image_name === series).length,
      0,
      'a version not replicated everywhere is not announced',
    );
  });

  test('an end of life in days is set on the new version, from its creation', async () => {
    const series = 'bosh-azure-hyperv-ubuntu-regions-eol';
    const s = await story('regions-eol', { BASM_END_OF_LIFE_DAYS: '90' });
    await publish(series, '7.3', 73);
    const started = Date.now();
    const run = await mirror(s, '--series', series);
    assert.equal(run.status, 0, run.stderr);
    const endOfLife = Date.parse(stored(series, '7.3.0')?.properties.publishingProfile.endOfLifeDate ?? '');
    assert.ok(endOfLife >= started + 90 * DAY_MS && endOfLife <= Date.now() + 90 * DAY_MS, String(endOfLife));
  });

  // One scenario in four runs: two versions in one region, a region added (dry run, then the run), then nothing.
  test('adding a region extends the versions the mirror created, newest first, by an update; --dry-run only shows it', async () => {
    const series = 'bosh-azure-hyperv-ubuntu-regions-add';
    const one = await story('regions-add');
    await publish(series, '7.4', 74);
    assert.equal((await mirror(one, '--series', series)).status, 0);
    await publish(series, '7.5', 75);
    assert.equal((await mirror(one, '--series', series)).status, 0);
    assert.deepEqual(regionsOf(series, '7.4.0'), [`${TEST_REGION}=1`]);
    const dispatchedBefore = local.github.dispatches.length;

    const two = await story('regions-add', { BASM_TARGET_REGIONS: `${TEST_REGION},eastus` });
    const dryBefore = local.arm.requests.length;
    const dry = await mirror(two, '--series', series, '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.deepEqual(
      jsonResults(dry).map((r) => [r.version, r.action, r.reason ?? null]),
      [
        ['7.5', 'exists', null],
        ['7.5', 'planned-extend', 'adds eastus'],
        ['7.4', 'planned-extend', 'adds eastus'],
      ],
    );
    assert.deepEqual(versionChanges(dryBefore, series), [], 'a dry run changes nothing');
    assert.match(
      dry.stderr,
      new RegExp(`versions are replicated to ${TEST_REGION} \\(1\\), eastus \\(1\\) on Standard_LRS`),
    );

    const runBefore = local.arm.requests.length;
    const run = await mirror(two, '--series', series);
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(
      jsonResults(run).map((r) => [r.version, r.galleryVersion, r.action, r.reason ?? null]),
      [
        ['7.5', '7.5.0', 'exists', null],
        ['7.5', '7.5.0', 'extended', 'adds eastus'],
        ['7.4', '7.4.0', 'extended', 'adds eastus'],
      ],
    );
    // Updates, newest first; never a recreation.
    assert.deepEqual(versionChanges(runBefore, series), ['PATCH 7.5.0', 'PATCH 7.4.0']);
    for (const version of ['7.4.0', '7.5.0']) {
      assert.deepEqual(regionsOf(series, version), [`${TEST_REGION}=1`, 'eastus=1']);
      assert.equal(stored(series, version)?.properties.provisioningState, 'Succeeded');
    }
    assert.equal(local.github.dispatches.length, dispatchedBefore, 'an extension announces nothing');

    const againBefore = local.arm.requests.length;
    const again = await mirror(two, '--series', series);
    assert.deepEqual(
      jsonResults(again).map((r) => [r.version, r.action]),
      [['7.5', 'exists']],
    );
    assert.deepEqual(versionChanges(againBefore, series), []);
  });

  test('extensions are capped per run by BASM_MAX_VERSIONS_PER_RUN, newest first; the next run extends the rest', async () => {
    const series = 'bosh-azure-hyperv-ubuntu-regions-cap';
    const cap = { BASM_MAX_VERSIONS_PER_RUN: '1' };
    const one = await story('regions-cap', cap);
    await publish(series, '7.7', 77);
    assert.equal((await mirror(one, '--series', series)).status, 0);
    await publish(series, '7.8', 78);
    assert.equal((await mirror(one, '--series', series)).status, 0);

    const two = await story('regions-cap', { ...cap, BASM_TARGET_REGIONS: `${TEST_REGION},eastus` });
    const dry = await mirror(two, '--series', series, '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.deepEqual(
      jsonResults(dry).map((r) => [r.version, r.action, r.reason ?? null]),
      [
        ['7.8', 'exists', null],
        ['7.8', 'planned-extend', 'adds eastus'],
      ],
    );
    assert.match(dry.stderr, /7\.7 extended by a later run \(BASM_MAX_VERSIONS_PER_RUN\)/);
    const status = await runStemcellMirrorDirect(['status', '--json', '--series', series], two.env);
    assert.equal(status.status, 0, status.stderr);
    const [entry] = (JSON.parse(status.stdout) as { series: Array<Record<string, unknown>> }).series;
    assert.deepEqual(entry?.['extend'], [{ version: '7.8', galleryVersion: '7.8.0', reason: 'adds eastus' }]);
    assert.deepEqual(entry?.['extendDeferred'], [
      {
        version: '7.7',
        galleryVersion: '7.7.0',
        reason: 'BASM_MAX_VERSIONS_PER_RUN reached; a later run extends it (adds eastus)',
      },
    ]);

    const firstBefore = local.arm.requests.length;
    const first = await mirror(two, '--series', series);
    assert.equal(first.status, 0, first.stderr);
    assert.deepEqual(
      jsonResults(first).map((r) => [r.version, r.action]),
      [
        ['7.8', 'exists'],
        ['7.8', 'extended'],
      ],
    );
    assert.deepEqual(versionChanges(firstBefore, series), ['PATCH 7.8.0']);
    assert.deepEqual(regionsOf(series, '7.7.0'), [`${TEST_REGION}=1`], 'the oldest waits for the next run');

    const secondBefore = local.arm.requests.length;
    const second = await mirror(two, '--series', series);
    assert.deepEqual(
      jsonResults(second).map((r) => [r.version, r.action]),
      [
        ['7.8', 'exists'],
        ['7.7', 'extended'],
      ],
    );
    assert.deepEqual(versionChanges(secondBefore, series), ['PATCH 7.7.0']);
  });

  // A region added later fails a version directors adopted: every later run reports it, downloading nothing.
  test('fault: a Failed version of the mirror that a director adopted is refused by the plan: no download, in the run, the dry run and status', async () => {
    const series = 'bosh-azure-hyperv-ubuntu-regions-inuse';
    const one = await story('regions-inuse');
    await publish(series, '7.6', 76);
    assert.equal((await mirror(one, '--series', series)).status, 0);
    await foreignGallery(local).tagImageVersion(series, '7.6.0', {
      stemcell_references: `${MIRROR_STEMCELL_REFERENCE},bosh-stemcell-1111`,
    });
    const two = await story('regions-inuse', { BASM_TARGET_REGIONS: `${TEST_REGION},eastus` });
    local.arm.failNextReplication(series, '7.6.0', 'eastus', {
      code: 'ReplicationJobsNotCompleted',
      message: 'Replication job not completed at region: eastus. Quota exceeded.',
    });
    const extension = await mirror(two, '--series', series);
    assert.equal(extension.status, 1);
    assert.equal(stored(series, '7.6.0')?.properties.provisioningState, 'Failed');

    const tarballGets = (since: number) =>
      local.boshio.requests.slice(since).filter((r) => !r.path.startsWith('/api/')).length;
    const expected = {
      series,
      version: '7.6',
      galleryVersion: '7.6.0',
      action: 'failed',
      reason: 'failed-in-use',
    };
    const refusal =
      /^image version \S+\/7\.6\.0 is Failed .*, and 1 director references it \(stemcell_references\); the mirror never deletes a version in use: remove the failed target region from it by hand \(az sig image-version update\), or delete it once no director uses it$/;
    for (const args of [['--dry-run'], []]) {
      const boshioBefore = local.boshio.requests.length;
      const armBefore = local.arm.requests.length;
      const run = await mirror(two, '--series', series, ...args);
      assert.equal(run.status, 1, run.stderr);
      const results = jsonResults(run);
      assert.deepEqual(
        results.map(({ error: _, ...r }) => r),
        [expected],
      );
      assert.match(String(results[0]?.error), refusal);
      assert.equal(tarballGets(boshioBefore), 0, `${args.join(' ') || 'a run'} downloads nothing`);
      assert.deepEqual(versionChanges(armBefore, series), [], 'the version in use is left as it is');
    }

    const status = await runStemcellMirrorDirect(['status', '--json', '--series', series], two.env);
    assert.equal(status.status, 0, status.stderr);
    const [entry] = (
      JSON.parse(status.stdout) as { series: Array<{ missing: unknown[]; skipped: unknown[] }> }
    ).series;
    assert.deepEqual(entry?.missing, []);
    assert.deepEqual(entry?.skipped, [
      {
        version: '7.6',
        galleryVersion: '7.6.0',
        reason:
          'Azure failed it and a director uses it: every run reports it failed, downloading nothing, until an ' +
          'operator removes the failed region from it or deletes it',
      },
    ]);
  });
});
