/**
 * The overlapped upload: a real extraction (real gzip and tar) whose root.vhd goes to a page blob in Azurite
 * (HTTPS, managed-identity tokens) while it is written, behind a proxy that logs every blob request in order
 * and can fail Put Pages; then the product's upload completes the blob.
 */

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { StemcellRelease } from '../../src/boshio.js';
import { OverlappedUpload } from '../../src/overlap-upload.js';
import { planPageWrites } from '../../src/page-ranges.js';
import { uploadSparseVhd } from '../../src/pageblob.js';
import { StemcellError, extractStemcellFrom, type ExtractedStemcell } from '../../src/stemcell.js';
import { readExtents, type Extent } from '../../src/vhd.js';
import { buildStemcellFixture, type StemcellFixture } from '../support/stemcell-fixture.js';
import { proxiedIdentityStorage } from '../support/identity-storage.js';
import type { PutPageFault, StorageProxy } from '../support/storage-proxy.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const VERSION = '1.400';
const blobName = `${SERIES}/${VERSION}/root.vhd`;

const storage = proxiedIdentityStorage();
let workDir: string;
let fixture: StemcellFixture;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'basm-overlap-'));
  fixture = await buildStemcellFixture({ series: SERIES, version: VERSION, seed: 17, dataMiB: 8 });
});

after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

const release = (overrides: Partial<StemcellRelease> = {}): StemcellRelease => ({
  series: SERIES,
  version: VERSION,
  url: `https://bosh.io/d/stemcells/${SERIES}?v=${VERSION}`,
  size: fixture.tarball.length,
  sha256: fixture.sha256,
  ...overrides,
});

const LABEL = {
  stemcell_series: SERIES,
  stemcell_version: VERSION,
  source_url: `https://bosh.io/d/stemcells/${SERIES}`,
};

const proxiedContainer = (name: string) => storage.proxiedContainer(name);
const stored = (containerName: string) => storage.stored(containerName, blobName);
const newContainerName = (): string => storage.newContainerName('overlap');

function overlapped(containerName: string, warnings: string[] = []): OverlappedUpload {
  return new OverlappedUpload({
    container: proxiedContainer(containerName),
    blobName,
    label: { ...LABEL, tarball_sha256: fixture.sha256 },
    concurrency: 4,
    log: { info: () => undefined, warn: (message) => warnings.push(message) },
    subject: `${SERIES} ${VERSION}`,
  });
}

/**
 * The tarball in two parts, the second only once `gate` resolves (a download still going on); `end` cuts it
 * there.
 */
function gatedSource(at: number, gate: () => Promise<void>, end = fixture.tarball.length): Readable {
  const tarball = fixture.tarball;
  return Readable.from(
    (async function* () {
      yield tarball.subarray(0, at);
      await gate();
      yield tarball.subarray(at, end);
    })(),
  );
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Sorted, touching ranges joined: how two lists of written ranges compare whatever their cuts. */
function merged(ranges: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const { offset, length } of [...ranges].sort((a, b) => a.offset - b.offset)) {
    const last = out.at(-1);
    if (last && last.offset + last.length === offset) last.length += length;
    else out.push({ offset, length });
  }
  return out;
}

async function writtenRanges(containerName: string): Promise<Extent[]> {
  const ranges: Extent[] = [];
  for await (const range of stored(containerName).listPageRanges()) {
    ranges.push({ offset: range.start, length: range.end - range.start + 1 });
  }
  return ranges;
}

const dataBytes = (): number => planPageWrites(fixture.extents).reduce((sum, w) => sum + w.length, 0);

/** The product's upload of the extracted VHD, as uploadVhd calls it. */
async function completeUpload(containerName: string, extracted: ExtractedStemcell) {
  return uploadSparseVhd({
    container: proxiedContainer(containerName),
    blobName,
    vhdPath: extracted.vhdPath,
    extents: await readExtents(extracted.extentsPath),
    size: extracted.vhdSize,
    metadata: { ...LABEL, tarball_sha256: extracted.tarballSha256, image_sha256: extracted.imageSha256 },
    concurrency: 4,
  });
}

describe('an overlapped extraction', () => {
  const containerName = newContainerName();
  let extracted: ExtractedStemcell;
  let follower: OverlappedUpload;
  let requests: StorageProxy['requests'];

  before(async () => {
    storage.proxy.reset();
    follower = overlapped(containerName);
    const dir = await mkdtemp(join(workDir, 'first-'));
    extracted = await extractStemcellFrom(Readable.from([fixture.tarball]), release(), {
      workDir: dir,
      follower,
    });
    requests = storage.proxy.requests;
  });

  test('labels the blob before its first page: the listed tarball digest, source and VHD size, no image_sha256', () => {
    const firstPage = requests.findIndex((r) => r.comp === 'page');
    const create = requests.findIndex((r) => r.method === 'PUT' && r.comp === undefined);
    assert.ok(create >= 0 && firstPage > create, `requests: ${JSON.stringify(requests)}`);
    assert.deepEqual(requests[create]?.metadata, {
      ...LABEL,
      tarball_sha256: fixture.sha256,
      vhd_size: String(fixture.vhd.length),
    });
  });

  test('stamps image_sha256 once the stemcell is verified, after its last page, and leaves the blob unleased', async () => {
    const lastPage = requests.findLastIndex((r) => r.comp === 'page');
    const stamp = requests.findIndex((r) => r.comp === 'metadata');
    assert.ok(stamp > lastPage, `requests: ${JSON.stringify(requests)}`);
    assert.equal(requests[stamp]?.metadata['image_sha256'], fixture.imageSha256);
    const properties = await stored(containerName).getProperties();
    assert.equal(properties.metadata?.['image_sha256'], fixture.imageSha256);
    assert.equal(
      properties.metadata?.['upload_complete'],
      undefined,
      'only the upload step marks it complete',
    );
    assert.equal(properties.leaseState, 'available');
    assert.equal(follower.stamped, true);
  });

  test("leaves pages equal to the VHD's non-zero extents, no zero page", async () => {
    assert.deepEqual(merged(await writtenRanges(containerName)), merged(fixture.extents));
    assert.equal(follower.bytesSent, dataBytes());
    assert.equal(storage.proxy.writtenBytes, dataBytes());
  });

  test('the upload then sends 0 bytes and marks the blob complete, byte-identical to root.vhd', async () => {
    storage.proxy.reset();
    const result = await completeUpload(containerName, extracted);
    assert.equal(result.bytesUploaded, 0);
    assert.equal(result.resumed, true);
    assert.equal(storage.proxy.putPages.length, 0);
    const blob = stored(containerName);
    assert.ok((await blob.downloadToBuffer()).equals(fixture.vhd), 'the blob differs from root.vhd');
    assert.equal((await blob.getProperties()).metadata?.['upload_complete'], 'true');
  });
});

describe('a failed extraction after pages were sent', () => {
  const cases: Array<{ name: string; release: () => StemcellRelease; cut?: boolean; error: RegExp }> = [
    {
      name: 'a tarball whose SHA-256 differs from bosh.io',
      release: () => release({ sha256: '0'.repeat(64) }),
      error: /tarball SHA-256 is [0-9a-f]{64}, expected 0{64} \(from bosh\.io\)/,
    },
    {
      name: 'a tarball cut short',
      release: () => release(),
      cut: true,
      error: /corrupt or truncated|truncated/,
    },
  ];
  for (const c of cases) {
    test(`fault: ${c.name} after pages were sent: the blob is deleted, the error as without the overlap`, async () => {
      const containerName = newContainerName();
      storage.proxy.reset();
      const dir = await mkdtemp(join(workDir, 'failed-'));
      const length = fixture.tarball.length;
      const source = gatedSource(
        Math.floor(length / 2),
        () => until(() => storage.proxy.writtenBytes > 0, 'a page was written'),
        c.cut ? Math.floor(length * 0.7) : length,
      );
      await assert.rejects(
        extractStemcellFrom(source, c.release(), { workDir: dir, follower: overlapped(containerName) }),
        (error: unknown) => {
          assert.ok(error instanceof StemcellError, String(error));
          assert.match(error.message, c.error);
          return true;
        },
      );
      assert.ok(storage.proxy.writtenBytes > 0, 'no page was sent before the failure');
      assert.equal(await stored(containerName).exists(), false, 'the blob is left behind');
      assert.deepEqual(await readdir(dir), [], 'the extraction left files behind');
    });
  }
});

describe('Storage failing during the overlap', () => {
  const faults: PutPageFault[] = [503, 'drop-request'];
  for (const fault of faults) {
    test(`fault: Put Pages answered ${fault} during the overlap: the extraction succeeds, the upload finishes the blob`, async () => {
      const containerName = newContainerName();
      storage.proxy.reset();
      // The first writes land, then every write fails: the overlap stops and leaves the rest.
      storage.proxy.fault = ({ index }) => (index < 2 ? 'pass' : fault);
      const warnings: string[] = [];
      const follower = overlapped(containerName, warnings);
      let extracted: ExtractedStemcell;
      try {
        const dir = await mkdtemp(join(workDir, 'storage-'));
        extracted = await extractStemcellFrom(Readable.from([fixture.tarball]), release(), {
          workDir: dir,
          follower,
        });
      } finally {
        storage.proxy.fault = () => 'pass';
      }
      assert.equal(extracted.imageSha256, fixture.imageSha256);
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0]!, /stopped .*the uploadVhd step sends the rest/);
      const sentBefore = storage.proxy.writtenBytes;
      assert.ok(sentBefore > 0 && sentBefore < dataBytes(), `${sentBefore} of ${dataBytes()} bytes`);
      // Every page on it came from this attempt's verified bytes, under its lease: stamped, so resumed.
      assert.equal(follower.stamped, true);

      storage.proxy.reset();
      const result = await completeUpload(containerName, extracted);
      assert.equal(result.resumed, true);
      assert.equal(result.bytesUploaded, dataBytes() - sentBefore);
      const blob = stored(containerName);
      assert.ok((await blob.downloadToBuffer()).equals(fixture.vhd), 'the blob differs from root.vhd');
      assert.equal((await blob.getProperties()).metadata?.['upload_complete'], 'true');
    });
  }

  test('fault: the lease broken during the overlap: the blob is not stamped, and the upload replaces it', async () => {
    const containerName = newContainerName();
    storage.proxy.reset();
    const follower = overlapped(containerName);
    const dir = await mkdtemp(join(workDir, 'lease-'));
    const source = gatedSource(Math.floor(fixture.tarball.length / 2), async () => {
      await until(() => storage.proxy.writtenBytes > 0, 'a page was written');
      // Another writer's doing: the lease this attempt wrote under is gone.
      await stored(containerName).getBlobLeaseClient().breakLease(0);
    });
    const extracted = await extractStemcellFrom(source, release(), { workDir: dir, follower });

    assert.equal(follower.stamped, false);
    assert.equal((await stored(containerName).getProperties()).metadata?.['image_sha256'], undefined);
    storage.proxy.reset();
    const result = await completeUpload(containerName, extracted);
    assert.match(result.replacedBecause ?? '', /image_sha256 'none'/);
    assert.equal(result.bytesUploaded, dataBytes());
    assert.ok((await stored(containerName).downloadToBuffer()).equals(fixture.vhd), 'the blob differs');
  });
});
