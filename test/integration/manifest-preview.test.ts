import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { listStemcellReleases, type StemcellRelease } from '../../src/boshio.js';
import { StemcellError } from '../../src/manifest.js';
import { previewManifest } from '../../src/manifest-preview.js';
import { startFakeBoshio, type FakeBoshio } from '../support/fake-boshio.js';
import { buildStemcellFixture } from '../support/stemcell-fixture.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-noble';
let boshio: FakeBoshio;

before(async () => {
  boshio = await startFakeBoshio();
});
after(async () => {
  await boshio.stop();
});

async function published(version: string, tarball: Buffer): Promise<StemcellRelease> {
  boshio.publish(SERIES, { version, tarball });
  const releases = await listStemcellReleases(boshio.url, SERIES, { timeoutMs: 5000 });
  const release = releases.find((r) => r.version === version);
  assert.ok(release);
  return release;
}

test('stemcell.MF is read from the head of the tarball with one ranged request', async () => {
  const fixture = await buildStemcellFixture({
    series: SERIES,
    version: '1.10',
    cloudProperties: { generation: 'gen2', disk_controller_types: ['scsi', 'nvme'] },
  });
  const release = await published('1.10', fixture.tarball);
  const before = boshio.requests.length;

  const manifest = await previewManifest(release, 5000);

  assert.equal(manifest.name, SERIES);
  assert.equal(manifest.version, '1.10');
  assert.equal(manifest.cloudProperties.generation, 'gen2');
  assert.deepEqual(manifest.cloudProperties.diskControllerTypes, ['scsi', 'nvme']);
  // The /d/ link and the bucket it redirects to: one download, asked for its head only.
  const asked = boshio.requests.slice(before);
  assert.deepEqual(
    asked.map((r) => r.path.startsWith('/d/')),
    [true, false],
  );
  assert.deepEqual(
    asked.map((r) => r.range),
    ['bytes=0-5242879', 'bytes=0-5242879'],
  );
});

test('fault: a stemcell.MF naming another version is refused as the download refuses it', async () => {
  const fixture = await buildStemcellFixture({ series: SERIES, version: '1.11' });
  const release = await published('1.12', fixture.tarball);
  await assert.rejects(previewManifest(release, 5000), (error: unknown) => {
    assert.ok(error instanceof StemcellError);
    assert.match(error.message, /describes bosh-azure-hyperv-ubuntu-noble\/1\.11, expected .*\/1\.12/);
    return true;
  });
});

test('fault: bytes that are no stemcell tarball are refused, not hung on', async () => {
  const release = await published('1.13', randomBytes(64 * 1024));
  await assert.rejects(previewManifest(release, 5000), StemcellError);
});
