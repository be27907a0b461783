/**
 * What the parallel download costs on the wire, counted by the fake bosh.io's bucket: a tarball large
 * enough for ranged GETs is sent once, byte for byte, with no part of any answer thrown away.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { after, before, beforeEach, test } from 'node:test';
import { listStemcellReleases, type StemcellRelease } from '../../src/boshio.js';
import { DEFAULT_CONNECTIONS, downloadStream } from '../../src/download.js';
import { startFakeBoshio, type FakeBoshio } from '../support/fake-boshio.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const MiB = 1024 * 1024;
// Six 4 MiB segments and a short last one: the first connection's segment, then ranged GETs.
const TARBALL = randomBytes(24 * MiB + 4321);

let boshio: FakeBoshio;
let release: StemcellRelease;

before(async () => {
  boshio = await startFakeBoshio();
  boshio.publish(SERIES, { version: '1.300', tarball: TARBALL });
  [release] = (await listStemcellReleases(boshio.url, SERIES, { timeoutMs: 5000 })) as [StemcellRelease];
});
after(() => boshio.stop());
beforeEach(() => {
  for (const key of Object.keys(boshio.faults)) delete boshio.faults[key as keyof typeof boshio.faults];
  boshio.requests.length = 0;
  boshio.resetServed();
});

function download(): Promise<Buffer> {
  return buffer(downloadStream(release.url, { timeoutMs: 10_000, expectedSize: release.size }));
}

/** The Range of each bucket request (not the listing, not the `/d/` redirect), in order. */
function bucketRanges(): Array<string | undefined> {
  return boshio.requests.filter((request) => request.path.startsWith('/bucket/')).map((r) => r.range);
}

test('a parallel download receives the tarball once: the bucket sends exactly its size', async () => {
  const bytes = await download();

  assert.ok(bytes.equals(TARBALL), 'the bytes differ from the tarball');
  assert.equal(boshio.bytesServed, TARBALL.length, 'bytes the bucket sent');
  const ranges = bucketRanges();
  assert.equal(ranges[0], `bytes=0-${4 * MiB - 1}`, 'the first GET asks for the first segment only');
  assert.equal(ranges.length, Math.ceil(TARBALL.length / (4 * MiB)));
  assert.ok(boshio.peakConnections > 1 && boshio.peakConnections <= DEFAULT_CONNECTIONS);
});

test('fault: a drop in the first segment resumes to the end of the segment only; the bucket still sends exactly its size', async () => {
  boshio.faults.dropConnectionAt = [MiB];

  const bytes = await download();

  assert.ok(bytes.equals(TARBALL), 'the bytes differ from the tarball');
  assert.equal(boshio.bytesServed, TARBALL.length, 'bytes the bucket sent');
  assert.deepEqual(bucketRanges().slice(0, 2), [`bytes=0-${4 * MiB - 1}`, `bytes=${MiB}-${4 * MiB - 1}`]);
});

test('fault: a bucket that ignores Range is read as one stream to the end; it sends exactly the tarball', async () => {
  boshio.faults.ignoreRange = true;

  const bytes = await download();

  assert.ok(bytes.equals(TARBALL), 'the bytes differ from the tarball');
  assert.equal(boshio.bytesServed, TARBALL.length, 'bytes the bucket sent');
  assert.equal(bucketRanges().length, 1, 'one GET, answered whole');
});
