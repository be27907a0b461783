/**
 * The activities as the host invokes them (activity trigger input in RPC form), running the real steps
 * against the local services: Azurite over HTTPS with managed-identity tokens, and fakes of bosh.io and ARM.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import type { StepOutcome, StepOutputs } from '../../src/workflow.js';
import {
  invokeFunction,
  jsonData,
  loadFunctionsApp,
  returnedJson,
  type Invocation,
} from '../support/functions-core/host.js';
import { startLocalAzure, type LocalAzure } from '../support/local-azure.js';
import { buildStemcellFixture, type StemcellFixture } from '../support/stemcell-fixture.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const OUTAGE_SERIES = 'bosh-azure-hyperv-ubuntu-noble';

let local: LocalAzure;
let fixture: StemcellFixture;

before(async () => {
  local = await startLocalAzure({ notify: false });
  Object.assign(process.env, local.env);
  fixture = await buildStemcellFixture({ series: SERIES, version: '1.100', seed: 3 });
  local.boshio.publish(SERIES, { version: '1.100', tarball: fixture.tarball });
  await loadFunctionsApp();
});
after(async () => {
  await local?.stop();
});

async function activity(name: string, input: unknown): Promise<Invocation & { outcome: unknown }> {
  const invocation = await invokeFunction(name, { activityTrigger: jsonData(input) });
  return { ...invocation, outcome: returnedJson(invocation.response) };
}

function valueOf<T>(outcome: unknown): T {
  const result = outcome as StepOutcome<T>;
  if (!result.ok) assert.fail(`the step failed: ${result.error}`);
  return result.value;
}

async function blobBytes(url: string): Promise<Buffer> {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  const [container = '', ...name] = new URL(url).pathname.split('/').slice(2);
  return service
    .getContainerClient(container)
    .getBlobClient(decodeURIComponent(name.join('/')))
    .downloadToBuffer();
}

describe('resolveVersions', () => {
  test('plans the newest published version the gallery lacks, and logs to the invocation', async () => {
    const { outcome, logs } = await activity('resolveVersions', { series: SERIES });

    const plan = valueOf<StepOutputs['resolveVersions']>(outcome);
    assert.deepEqual(
      plan.mirror.map((p) => [p.release.version, p.galleryVersion, p.reason]),
      [['1.100', '1.100.0', 'newest']],
    );
    assert.ok(
      logs.some((l) => l.category === 'user' && l.message.includes('1.100: to mirror')),
      JSON.stringify(logs),
    );
  });

  test('throws on a bosh.io outage, so the orchestrator’s retry policy applies', async () => {
    local.boshio.setSeriesResponse(OUTAGE_SERIES, { status: 503, body: 'Service Unavailable' });

    await assert.rejects(activity('resolveVersions', { series: OUTAGE_SERIES }), /503/);
  });
});

describe('downloadAndExtract, then uploadVhd', () => {
  let release: StepOutputs['resolveVersions']['newest'];
  let stemcell: StepOutputs['downloadAndExtract'];
  let uploaded: StepOutputs['uploadVhd'];

  before(async () => {
    release = valueOf<StepOutputs['resolveVersions']>(
      (await activity('resolveVersions', { series: SERIES })).outcome,
    ).newest;
    stemcell = valueOf((await activity('downloadAndExtract', { release })).outcome);
    uploaded = valueOf((await activity('uploadVhd', { release, stemcell })).outcome);
  });

  test('downloadAndExtract returns the verified stemcell’s digests and sizes as small JSON', () => {
    assert.equal(stemcell.imageSha256, fixture.imageSha256);
    assert.equal(stemcell.tarballSha256, fixture.sha256);
    assert.equal(stemcell.vhdSize, fixture.vhd.length);
    assert.ok(JSON.stringify(stemcell).length < 4096);
  });

  test('uploadVhd leaves a page blob holding exactly root.vhd', async () => {
    assert.equal(uploaded.alreadyComplete, false);
    assert.ok((await blobBytes(uploaded.blobUrl)).equals(fixture.vhd));
  });

  test('uploadVhd run again finds the complete blob and uploads nothing', async () => {
    const again = valueOf<StepOutputs['uploadVhd']>(
      (await activity('uploadVhd', { release, stemcell })).outcome,
    );

    assert.deepEqual(again, { ...uploaded, bytesUploaded: 0, alreadyComplete: true });
  });
});

test('a stemcell whose checksum does not match fails downloadAndExtract permanently, as a value', async () => {
  const bad = await buildStemcellFixture({ series: SERIES, version: '1.101', seed: 4 });
  local.boshio.publish(SERIES, { version: '1.101', tarball: bad.tarball, sha256: '0'.repeat(64), sha1: '' });
  const plan = valueOf<StepOutputs['resolveVersions']>(
    (await activity('resolveVersions', { series: SERIES, version: '1.101' })).outcome,
  );
  const release = plan.mirror[0]?.release;
  assert.equal(release?.version, '1.101');

  const { outcome } = await activity('downloadAndExtract', { release });

  assert.equal((outcome as StepOutcome<unknown>).ok, false);
  assert.match((outcome as { error: string }).error, /sha|checksum|SHA/i);
});
