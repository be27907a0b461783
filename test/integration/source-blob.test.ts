/**
 * compareSourceBlob against Azurite's page blobs: the comparison that decides whether an untagged version's
 * source blob holds the verified root.vhd. Each case writes its own blob; the local VHD is a sparse file.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { TokenCredential } from '@azure/identity';
import { BlobServiceClient, PageBlobClient, type ContainerClient } from '@azure/storage-blob';
import { isTransientError } from '../../src/failures.js';
import { compareSourceBlob, unreadableSourceBlob, type LocalVhd } from '../../src/source-blob.js';
import { startAzurite, type AzuriteBlob } from '../support/azurite.js';
import { startHttpsServer } from '../support/https-server.js';

const MIB = 1024 * 1024;
const SIZE = 8 * MIB + 512;

let azurite: AzuriteBlob;
let container: ContainerClient;
let dir: string;
let local: LocalVhd;
let vhd: Buffer;

/** A disk of zeros with data in two places and a last sector, as root.vhd is. */
function disk(): Buffer {
  const bytes = Buffer.alloc(SIZE);
  bytes.fill(0x41, 512, 512 + 3000);
  bytes.fill(0x42, 5 * MIB, 5 * MIB + MIB);
  bytes.fill(0x43, SIZE - 512);
  return bytes;
}

const EXTENTS = [
  { offset: 512, length: 3072 },
  { offset: 5 * MIB, length: MIB },
  { offset: SIZE - 512, length: 512 },
];

/** A page blob holding `bytes`, written only where `ranges` say (the rest reads as zeros). */
async function pageBlob(name: string, bytes: Buffer, ranges: Array<{ offset: number; length: number }>) {
  const blob = container.getPageBlobClient(name);
  await blob.create(bytes.length);
  for (const { offset, length } of ranges) {
    await blob.uploadPages(bytes.subarray(offset, offset + length), offset, length);
  }
  return blob;
}

before(async () => {
  azurite = await startAzurite();
  container = new BlobServiceClient(azurite.blobEndpoint, azurite.sharedKeyCredential).getContainerClient(
    'vhds',
  );
  await container.create();
  dir = await mkdtemp(join(tmpdir(), 'basm-source-blob-'));
  vhd = disk();
  // Sparse like an extraction: only the extents are written.
  const file = await open(join(dir, 'root.vhd'), 'w');
  await file.truncate(SIZE);
  for (const { offset, length } of EXTENTS) await file.write(vhd, offset, length, offset);
  await file.close();
  local = { vhdPath: join(dir, 'root.vhd'), size: SIZE, extents: EXTENTS };
});

after(async () => {
  await azurite?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a blob written only where the VHD holds data is the same', async () => {
  const blob = await pageBlob('sparse.vhd', vhd, EXTENTS);
  assert.deepEqual(await compareSourceBlob(blob, local), {
    outcome: 'same',
    bytesCompared: 3072 + MIB + 512,
  });
});

test('a blob written in full, zeros included, is the same', async () => {
  const blob = await pageBlob('full.vhd', vhd, [{ offset: 0, length: SIZE }]);
  assert.deepEqual(await compareSourceBlob(blob, local), { outcome: 'same', bytesCompared: SIZE });
});

test('one byte changed is a difference, located', async () => {
  const changed = Buffer.from(vhd);
  changed[5 * MIB + 1234] = 0x44;
  const blob = await pageBlob('changed.vhd', changed, EXTENTS);
  const result = await compareSourceBlob(blob, local);
  assert.equal(result.outcome, 'different');
  assert.match(result.outcome === 'different' ? result.reason : '', /^its bytes 5242880-\d+ differ$/);
});

test('data where the blob holds zeros is a difference, without reading it', async () => {
  const blob = await pageBlob('missing-extent.vhd', vhd, [EXTENTS[0]!, EXTENTS[2]!]);
  assert.deepEqual(await compareSourceBlob(blob, local), {
    outcome: 'different',
    reason: `it holds zeros at byte ${5 * MIB}, where the verified root.vhd holds data`,
  });
});

test('data where the VHD holds zeros is a difference', async () => {
  const extra = Buffer.from(vhd);
  extra.fill(0x45, 2 * MIB, 2 * MIB + 512);
  const blob = await pageBlob('extra-data.vhd', extra, [...EXTENTS, { offset: 2 * MIB, length: 512 }]);
  const result = await compareSourceBlob(blob, local);
  assert.equal(result.outcome, 'different');
});

test('another size is a difference', async () => {
  const blob = await pageBlob('bigger.vhd', Buffer.concat([vhd, Buffer.alloc(MIB)]), EXTENTS);
  assert.deepEqual(await compareSourceBlob(blob, local), {
    outcome: 'different',
    reason: `it is ${SIZE + MIB} bytes, the verified root.vhd ${SIZE}`,
  });
});

test('a blob that is gone is reported so, not as a difference', async () => {
  assert.deepEqual(await compareSourceBlob(container.getPageBlobClient('deleted.vhd'), local), {
    outcome: 'gone',
  });
});

test('fault: a blob in an account the identity holds no role on (403) fails at once, naming the role to grant', async () => {
  // Storage's answer to a bearer token whose identity has no data role on the account (RBAC).
  const requests: string[] = [];
  const otherAccount = await startHttpsServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers.authorization?.split(' ')[0]}`);
    res.writeHead(403, {
      'x-ms-error-code': 'AuthorizationPermissionMismatch',
      'x-ms-request-id': '00000000-0000-0000-0000-000000000001',
      'x-ms-version': '2025-01-05',
    });
    res.end();
  });
  const identity: TokenCredential = {
    getToken: () =>
      Promise.resolve({ token: 'token-of-the-mirror', expiresOnTimestamp: Date.now() + 3_600_000 }),
  };
  try {
    const blob = new PageBlobClient(`${otherAccount.url}/oldjobvhds/vhds/a.vhd`, identity, {
      retryOptions: { maxTries: 1 },
    });

    const error = await compareSourceBlob(blob, local).then(
      () => assert.fail('a blob it may not read was compared'),
      (e: unknown) => e,
    );

    assert.equal(isTransientError(error), false, 'a missing role is not retried for minutes');
    assert.deepEqual(requests, ['HEAD /oldjobvhds/vhds/a.vhd Bearer']);
    const explained = unreadableSourceBlob('image version d/1.0.0 is untagged; its source blob', error);
    assert.match(
      explained.message,
      /^image version d\/1\.0\.0 is untagged; its source blob could not be read to compare it with the verified stemcell \(AuthorizationPermissionMismatch, HTTP 403\): the mirror's identity may not read it .*give it Storage Blob Data Reader on that account or container, then run again$/,
    );
    assert.equal(explained.cause, error);
  } finally {
    await otherAccount.stop();
  }
});

test('fault: a source blob unreadable for another reason says to run again, not to grant a role', () => {
  const error = Object.assign(new Error('The specified container does not exist.'), { statusCode: 400 });
  assert.match(
    unreadableSourceBlob('its source blob', error).message,
    /\(The specified container does not exist\.\): run again once it can be read$/,
  );
});
