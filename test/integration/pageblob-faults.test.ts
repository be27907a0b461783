/**
 * Page writes of a VHD upload against a storage account that fails: Azurite (HTTPS, OAuth) behind a proxy
 * that answers 500/503 to Put Pages or drops their connections, before or after Azurite wrote the pages.
 * The client is the product's (managed identity token, the SDK's retry policy), with short retry delays
 * so the scenarios take seconds, not the minute the default delays add up to.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isTransientError } from '../../src/failures.js';
import { planPageWrites } from '../../src/page-ranges.js';
import { uploadSparseVhd, type UploadSparseVhdRequest } from '../../src/pageblob.js';
import { buildStemcellFixture, type StemcellFixture } from '../support/stemcell-fixture.js';
import { proxiedIdentityStorage } from '../support/identity-storage.js';
import type { PutPageFault } from '../support/storage-proxy.js';

const blobName = 'bosh-azure-hyperv-ubuntu-jammy-go_agent/1.200/root.vhd';

const storage = proxiedIdentityStorage();
let workDir: string;
let fixture: StemcellFixture;
let vhdPath: string;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'basm-pageblob-faults-'));
  fixture = await buildStemcellFixture({ seed: 7 });
  vhdPath = join(workDir, 'root.vhd');
  await writeFile(vhdPath, fixture.vhd);
});

after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

function request(containerName: string): UploadSparseVhdRequest {
  return {
    container: storage.proxiedContainer(containerName),
    blobName,
    vhdPath,
    extents: fixture.extents,
    size: fixture.vhd.length,
    metadata: { image_sha256: fixture.imageSha256 },
    concurrency: 4,
  };
}

const stored = (containerName: string) => storage.stored(containerName, blobName);
const newContainerName = (): string => storage.newContainerName('faults');

const dataBytes = (): number => planPageWrites(fixture.extents).reduce((sum, w) => sum + w.length, 0);

test('fault: Put Pages answered 500 and 503, cut mid-request and cut after the write: retried, the blob ends byte-identical and complete', async () => {
  const containerName = newContainerName();
  // Each of the first four writes fails once, each in its own way; their retries pass.
  const faults: PutPageFault[] = [503, 'drop-request', 500, 'drop-response'];
  storage.proxy.reset();
  storage.proxy.fault = ({ index }) => faults[index] ?? 'pass';
  try {
    const result = await uploadSparseVhd(request(containerName));

    assert.deepEqual(
      storage.proxy.putPages.slice(0, 4).map((p) => p.fault),
      faults,
    );
    // Every planned write passed once, plus the one whose answer was cut after Azurite wrote it.
    const planned = planPageWrites(fixture.extents).length;
    assert.equal(storage.proxy.putPages.filter((p) => p.fault === 'pass').length, planned);
    assert.equal(result.bytesUploaded, dataBytes());
    const blob = stored(containerName);
    assert.ok((await blob.downloadToBuffer()).equals(fixture.vhd), 'the blob differs from root.vhd');
    assert.equal((await blob.getProperties()).metadata?.['upload_complete'], 'true');
  } finally {
    storage.proxy.fault = () => 'pass';
  }
});

test('fault: Storage keeps answering 503 to page writes: a transient error that says the blob is left incomplete, never marked complete; the next upload resumes it', async () => {
  const containerName = newContainerName();
  storage.proxy.reset();
  // The first writes land, then the account fails every write, alternately busy and cut mid-request.
  storage.proxy.fault = ({ index }) => (index < 2 ? 'pass' : index % 2 === 0 ? 503 : 'drop-request');
  const sentBefore = await (async () => {
    try {
      await assert.rejects(
        uploadSparseVhd({ ...request(containerName), concurrency: 1 }),
        (error: unknown) => {
          assert.equal(isTransientError(error), true, String(error));
          assert.match((error as Error).message, /Uploading bytes \d+-\d+ of .*root\.vhd to page blob/);
          assert.match((error as Error).message, /left incomplete; run the upload again to resume it/);
          return true;
        },
      );
      return storage.proxy.writtenBytes;
    } finally {
      storage.proxy.fault = () => 'pass';
    }
  })();
  // The SDK retried each failing write before giving up (maxTries 4), never endlessly.
  const failed = storage.proxy.putPages.filter((p) => p.fault !== 'pass');
  assert.ok(failed.length >= 2 && failed.length <= 4, `failed writes: ${JSON.stringify(failed)}`);
  const metadata = (await stored(containerName).getProperties()).metadata ?? {};
  assert.equal(metadata['upload_complete'], undefined, 'a failed upload is marked complete');
  assert.ok(sentBefore > 0);

  storage.proxy.reset();
  const resumed = await uploadSparseVhd(request(containerName));
  assert.equal(resumed.resumed, true);
  assert.equal(resumed.bytesUploaded, dataBytes() - sentBefore);
  assert.equal(storage.proxy.writtenBytes, dataBytes() - sentBefore);
  assert.ok(
    (await stored(containerName).downloadToBuffer()).equals(fixture.vhd),
    'the blob differs from root.vhd',
  );
});
