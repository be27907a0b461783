import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { ContainerClient } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { createAzureCredential } from '../../src/credentials.js';
import { planPageWrites } from '../../src/page-ranges.js';
import { findCompletedVhdBlob, uploadSparseVhd } from '../../src/pageblob.js';
import type { UploadSparseVhdRequest, UploadSparseVhdResult } from '../../src/pageblob.js';
import { SparseFileWriter } from '../../src/vhd.js';
import type { Extent } from '../../src/vhd.js';
import { startAzurite } from '../support/azurite.js';
import type { AzuriteBlob } from '../support/azurite.js';
import { startIdentityEndpoint } from '../support/identity.js';
import type { IdentityEndpoint } from '../support/identity.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const blobName = 'bosh-azure-hyperv-ubuntu-jammy-go_agent/1.1364/root.vhd';
const imageSha256 = 'a'.repeat(64);

interface TestVhd {
  path: string;
  size: number;
  /** The non-zero ranges, as `readExtents` reports them: sorted, disjoint, footer last. */
  extents: Extent[];
  dataBytes: number;
}

let identity: IdentityEndpoint;
let azurite: AzuriteBlob;
let credential: TokenCredential;
let workDir: string;
let vhd: TestVhd;
let containerCount = 0;

before(async () => {
  identity = await startIdentityEndpoint();
  Object.assign(process.env, identity.env());
  azurite = await startAzurite();
  credential = createAzureCredential();
  workDir = await mkdtemp(join(tmpdir(), 'basm-pageblob-'));
  vhd = await writeTestVhd(join(workDir, 'root.vhd'));
});

after(async () => {
  await azurite?.stop();
  await identity?.stop();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('a first upload', () => {
  let containerName: string;
  let result: UploadSparseVhdResult;

  before(async () => {
    containerName = newContainerName();
    result = await uploadSparseVhd(request(containerName));
  });

  test('authenticates with a managed identity token for Azure Storage', () => {
    assert.ok(
      identity.requests.some((r) => /^https:\/\/storage\.azure\.com\/?$/.test(r.resource)),
      `token requests: ${JSON.stringify(identity.requests)}`,
    );
  });

  test('creates the container without public access', async () => {
    const properties = await assertions(containerName).getProperties();

    assert.equal(properties.blobPublicAccess, undefined);
  });

  test('stores the VHD byte for byte', async () => {
    const stored = await assertions(containerName).getPageBlobClient(blobName).downloadToBuffer();

    assert.ok(stored.equals(await readFile(vhd.path)), 'the blob differs from the local VHD');
  });

  test('writes exactly the extents, no zero pages', async () => {
    assert.deepEqual(await pageRanges(containerName), vhd.extents);
  });

  test('sends exactly the data bytes', () => {
    assert.equal(result.bytesUploaded, vhd.dataBytes);
  });

  test('marks the blob complete in its metadata', async () => {
    const { metadata } = await assertions(containerName).getPageBlobClient(blobName).getProperties();

    assert.deepEqual(metadata, {
      image_sha256: imageSha256,
      stemcell_series: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
      stemcell_version: '1.1364',
      vhd_size: String(vhd.size),
      upload_complete: 'true',
    });
  });

  test('reports the blob URL', () => {
    assert.equal(result.blobUrl, assertions(containerName).getPageBlobClient(blobName).url);
  });

  test('is found as a completed VHD blob afterwards, with its metadata', async () => {
    const found = await findCompletedVhdBlob(container(containerName), blobName, imageSha256);

    assert.deepEqual(found, {
      blobUrl: result.blobUrl,
      size: vhd.size,
      metadata: {
        image_sha256: imageSha256,
        stemcell_series: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
        stemcell_version: '1.1364',
        vhd_size: String(vhd.size),
        upload_complete: 'true',
      },
    });
  });

  test('a second upload of the same content sends nothing and leaves the blob untouched', async () => {
    const blob = assertions(containerName).getPageBlobClient(blobName);
    const before = await blob.getProperties();

    const again = await uploadSparseVhd(request(containerName));

    assert.deepEqual(
      {
        alreadyComplete: again.alreadyComplete,
        bytesUploaded: again.bytesUploaded,
        etag: (await blob.getProperties()).etag,
      },
      { alreadyComplete: true, bytesUploaded: 0, etag: before.etag },
    );
  });
});

describe('a pathological VHD', () => {
  test('fault: alternating 512-byte data and zero sectors upload byte for byte, in extents that take in small zero gaps', async () => {
    const size = 2 * MiB;
    const data = Buffer.alloc(size);
    for (let at = 0; at < size; at += 1024) data.fill(0x5a, at, at + 512);
    const path = join(workDir, 'alternating.vhd');
    const writer = new SparseFileWriter(path, { maxExtents: 16 });
    await pipeline(Readable.from([data]), writer);
    assert.ok(writer.extents.length <= 16, `${writer.extents.length} extents`);
    const containerName = newContainerName();

    const result = await uploadSparseVhd({
      ...request(containerName),
      vhdPath: path,
      extents: writer.extents,
      size,
    });

    const stored = await assertions(containerName).getPageBlobClient(blobName).downloadToBuffer();
    assert.ok(stored.equals(data), 'the blob differs from the VHD');
    assert.deepEqual(await pageRanges(containerName), writer.extents);
    assert.equal(result.bytesUploaded, sum(writer.extents));
    assert.ok(planPageWrites(writer.extents).length <= 16, 'one Put Page per extent, not one per sector');
  });
});

describe('resuming', () => {
  test('fault: an incomplete upload of the same content sends only the missing pages', async () => {
    const containerName = newContainerName();
    const blob = assertions(containerName).getPageBlobClient(blobName);
    await assertions(containerName).create();
    await blob.create(vhd.size, { metadata: { image_sha256: imageSha256, vhd_size: String(vhd.size) } });
    // The first extent whole, and part of the 4 MiB write that starts the long extent.
    const file = await readFile(vhd.path);
    const prewritten = [vhd.extents[0]!, { offset: 3 * MiB, length: 1 * MiB }];
    for (const { offset, length } of prewritten) {
      await blob.uploadPages(file.subarray(offset, offset + length), offset, length);
    }

    const result = await uploadSparseVhd(request(containerName));

    assert.deepEqual(
      { resumed: result.resumed, bytesUploaded: result.bytesUploaded },
      { resumed: true, bytesUploaded: vhd.dataBytes - sum(prewritten) },
    );
  });

  test('a resumed upload leaves the blob byte for byte equal to the VHD', async () => {
    const containerName = newContainerName();
    const blob = assertions(containerName).getPageBlobClient(blobName);
    await assertions(containerName).create();
    await blob.create(vhd.size, { metadata: { image_sha256: imageSha256 } });
    const firstExtent = vhd.extents[0]!;
    const file = await readFile(vhd.path);
    await blob.uploadPages(
      file.subarray(firstExtent.offset, firstExtent.offset + firstExtent.length),
      firstExtent.offset,
      firstExtent.length,
    );

    await uploadSparseVhd(request(containerName));

    assert.ok((await blob.downloadToBuffer()).equals(file), 'the blob differs from the local VHD');
  });

  test('an aborted upload is left incomplete', async () => {
    const containerName = newContainerName();
    await abortAfterFirstWrite(containerName);

    const { metadata } = await assertions(containerName).getPageBlobClient(blobName).getProperties();

    assert.equal(metadata?.['upload_complete'], undefined);
  });

  test('an aborted upload fails with an AbortError', async () => {
    const containerName = newContainerName();

    const failure = await abortAfterFirstWrite(containerName);

    assert.equal((failure as Error).name, 'AbortError');
  });

  test('fault: the upload after an abort sends only what the aborted one did not', async () => {
    const containerName = newContainerName();
    await abortAfterFirstWrite(containerName);
    const alreadyWritten = sum(await pageRanges(containerName));

    const result = await uploadSparseVhd(request(containerName));

    assert.deepEqual(
      {
        resumed: result.resumed,
        bytesUploaded: result.bytesUploaded,
        written: await pageRanges(containerName),
      },
      { resumed: true, bytesUploaded: vhd.dataBytes - alreadyWritten, written: vhd.extents },
    );
  });
});

describe('replacing', () => {
  test('fault: a blob holding another image is replaced, its stale pages gone', async () => {
    const containerName = newContainerName();
    const blob = assertions(containerName).getPageBlobClient(blobName);
    await assertions(containerName).create();
    const otherImage = { image_sha256: 'b'.repeat(64), vhd_size: String(vhd.size), upload_complete: 'true' };
    await blob.create(vhd.size, { metadata: otherImage });
    await blob.uploadPages(Buffer.alloc(512, 0xee), 10 * MiB, 512);

    const result = await uploadSparseVhd(request(containerName));

    assert.deepEqual(
      {
        replacedBecause: result.replacedBecause?.includes('image_sha256'),
        written: await pageRanges(containerName),
      },
      { replacedBecause: true, written: vhd.extents },
    );
  });

  test('fault: a blob of another size is replaced by one of the VHD size', async () => {
    const containerName = newContainerName();
    const blob = assertions(containerName).getPageBlobClient(blobName);
    await assertions(containerName).create();
    await blob.create(1 * MiB, { metadata: { image_sha256: imageSha256 } });

    await uploadSparseVhd(request(containerName));

    assert.equal((await blob.getProperties()).contentLength, vhd.size);
  });

  test('fault: a block blob of that name is replaced by a page blob holding the VHD', async () => {
    const containerName = newContainerName();
    await assertions(containerName).create();
    await assertions(containerName).getBlockBlobClient(blobName).upload('not a vhd', 9);

    const result = await uploadSparseVhd(request(containerName));

    const blob = assertions(containerName).getPageBlobClient(blobName);
    assert.deepEqual(
      {
        replacedBecause: result.replacedBecause?.includes('BlockBlob'),
        blobType: (await blob.getProperties()).blobType,
        sameBytes: (await blob.downloadToBuffer()).equals(await readFile(vhd.path)),
      },
      { replacedBecause: true, blobType: 'PageBlob', sameBytes: true },
    );
  });
});

describe('refusing', () => {
  test('a size that is not a multiple of 512 bytes is refused before anything is sent', async () => {
    const containerName = newContainerName();

    await assert.rejects(
      uploadSparseVhd({ ...request(containerName), size: vhd.size - 1 }),
      /not a positive multiple of 512/,
    );
    assert.equal(await assertions(containerName).exists(), false);
  });

  test('metadata without image_sha256 is refused', async () => {
    await assert.rejects(
      uploadSparseVhd({ ...request(newContainerName()), metadata: { stemcell_version: '1.1364' } }),
      /must include image_sha256/,
    );
  });
});

describe('findCompletedVhdBlob', () => {
  test('finds nothing when the container does not exist', async () => {
    assert.equal(await findCompletedVhdBlob(container(newContainerName()), blobName, imageSha256), undefined);
  });

  test('finds nothing when the blob holds another image', async () => {
    const containerName = newContainerName();
    await uploadSparseVhd(request(containerName));

    assert.equal(await findCompletedVhdBlob(container(containerName), blobName, 'c'.repeat(64)), undefined);
  });

  test('finds nothing when the upload is incomplete', async () => {
    const containerName = newContainerName();
    await assertions(containerName).create();
    const metadata = { image_sha256: imageSha256, vhd_size: String(vhd.size) };
    await assertions(containerName).getPageBlobClient(blobName).create(vhd.size, { metadata });

    assert.equal(await findCompletedVhdBlob(container(containerName), blobName, imageSha256), undefined);
  });
});

describe('racing another upload', () => {
  test('fault: a blob that another upload created after the inspection is not wiped: the upload fails as transient', async () => {
    const containerName = newContainerName();
    const theirs = assertions(containerName).getPageBlobClient(blobName);
    const racing = withPageBlobHook(container(containerName), 'create', async () => {
      await theirs.create(vhd.size, { metadata: { image_sha256: imageSha256, vhd_size: String(vhd.size) } });
      await theirs.uploadPages(Buffer.alloc(512, 0x11), 0, 512);
    });

    await assert.rejects(
      uploadSparseVhd({ ...request(containerName), container: racing }),
      (error: unknown) => {
        assert.equal((error as { transient?: unknown }).transient, true);
        assert.match(
          (error as Error).message,
          /another upload created .*root\.vhd.* meanwhile; retry resumes it/i,
        );
        return true;
      },
    );
    assert.deepEqual(await pageRanges(containerName), [{ offset: 0, length: 512 }]);
  });

  test('fault: a blob that changed after the inspection is not deleted: the upload fails as transient', async () => {
    const containerName = newContainerName();
    const theirs = assertions(containerName).getPageBlobClient(blobName);
    await assertions(containerName).create();
    await theirs.create(vhd.size, { metadata: { image_sha256: 'b'.repeat(64) } });
    const newer = { image_sha256: 'c'.repeat(64), upload_complete: 'true', vhd_size: String(vhd.size) };
    const racing = withPageBlobHook(container(containerName), 'deleteIfExists', async () => {
      await theirs.setMetadata(newer);
    });

    await assert.rejects(
      uploadSparseVhd({ ...request(containerName), container: racing }),
      (error: unknown) => {
        assert.equal((error as { transient?: unknown }).transient, true);
        assert.match((error as Error).message, /another upload changed .*root\.vhd.* meanwhile/i);
        return true;
      },
    );
    assert.deepEqual((await theirs.getProperties()).metadata, newer);
  });
});

describe('fault: two writers of one blob', () => {
  const otherSha256 = 'b'.repeat(64);
  let otherVhd: TestVhd;

  before(async () => {
    // Same layout, other bytes: a mix of the two would pass a count of written bytes.
    otherVhd = await writeTestVhd(join(workDir, 'other-root.vhd'));
  });

  function otherWriter(containerName: string): UploadSparseVhdRequest {
    return {
      ...request(containerName),
      vhdPath: otherVhd.path,
      metadata: { ...request(containerName).metadata, image_sha256: otherSha256 },
    };
  }

  test('fault: a second writer cannot replace a blob while the first is writing it; the first completes it alone', async () => {
    const containerName = newContainerName();
    let second: Promise<unknown> = Promise.resolve();
    const first = withPageBlobHook(
      container(containerName),
      'uploadPages',
      async () => {
        second = uploadSparseVhd(otherWriter(containerName)).then(
          () => new Error('the second writer replaced a blob that the first was writing'),
          (error: unknown) => error,
        );
        await second;
      },
      2,
    );

    const result = await uploadSparseVhd({ ...request(containerName), container: first, concurrency: 1 });

    const refused = await second;
    assert.equal((refused as { transient?: unknown }).transient, true, String(refused));
    assert.match((refused as Error).message, /another upload is writing .*root\.vhd/i);
    assert.equal(result.bytesUploaded, vhd.dataBytes);
    const blob = assertions(containerName).getPageBlobClient(blobName);
    assert.ok(
      (await blob.downloadToBuffer()).equals(await readFile(vhd.path)),
      'the blob is not the first VHD',
    );
    const properties = await blob.getProperties();
    assert.equal(properties.metadata?.['image_sha256'], imageSha256);
    assert.equal(properties.metadata?.['upload_complete'], 'true');
    assert.equal(properties.leaseState, 'available', 'the finished upload left its lease on the blob');
  });

  test('fault: a writer whose blob was taken over never writes into it nor marks it complete', async () => {
    const containerName = newContainerName();
    const blob = assertions(containerName).getPageBlobClient(blobName);
    const first = withPageBlobHook(
      container(containerName),
      'uploadPages',
      async () => {
        // The first writer stalled past its lease (as a paused process would); the second takes over.
        await blob.getBlobLeaseClient().breakLease(0);
        await uploadSparseVhd(otherWriter(containerName));
      },
      2,
    );

    await assert.rejects(
      uploadSparseVhd({ ...request(containerName), container: first, concurrency: 1 }),
      (error: unknown) => {
        assert.equal((error as { transient?: unknown }).transient, true, String(error));
        assert.match((error as Error).message, /lost its lease on .*root\.vhd/);
        return true;
      },
    );
    assert.ok(
      (await blob.downloadToBuffer()).equals(await readFile(otherVhd.path)),
      'the blob mixes the two writers',
    );
    const metadata = (await blob.getProperties()).metadata;
    assert.equal(metadata?.['image_sha256'], otherSha256);
    assert.equal(metadata?.['upload_complete'], 'true');
  });

  test('fault: a writer that died holding the lease blocks the blob for at most the lease, then is resumed', async () => {
    const containerName = newContainerName();
    const blob = assertions(containerName).getPageBlobClient(blobName);
    await abortAfterFirstWrite(containerName);
    // What a killed writer leaves: an incomplete blob under a lease nobody renews.
    await blob.getBlobLeaseClient().acquireLease(15);

    await assert.rejects(uploadSparseVhd(request(containerName)), (error: unknown) => {
      assert.equal((error as { transient?: unknown }).transient, true, String(error));
      assert.match((error as Error).message, /another upload is writing .*at most 60 s/i);
      return true;
    });
    await new Promise((resolve) => setTimeout(resolve, 16_000));
    const resumed = await uploadSparseVhd(request(containerName));
    assert.equal(resumed.resumed, true);
    assert.ok((await blob.downloadToBuffer()).equals(await readFile(vhd.path)));
  });
});

describe('deadlines', () => {
  let proxy: HangingProxy;

  before(async () => {
    proxy = await startHangingProxy(new URL(azurite.blobEndpoint));
  });

  after(async () => {
    await proxy?.close();
  });

  const calls: Array<[string, (req: IncomingMessage, query: URLSearchParams) => boolean, boolean]> = [
    ['createIfNotExists', (req, q) => req.method === 'PUT' && q.get('restype') === 'container', false],
    ['getProperties', (req) => req.method === 'HEAD', false],
    ['delete', (req) => req.method === 'DELETE', true],
    [
      'create',
      (req, q) => req.method === 'PUT' && req.headers['x-ms-blob-type'] === 'PageBlob' && !q.has('comp'),
      false,
    ],
    ['uploadPages', (req, q) => req.method === 'PUT' && q.get('comp') === 'page', false],
    ['listPageRanges', (req, q) => req.method === 'GET' && q.get('comp') === 'pagelist', false],
    ['setMetadata', (req, q) => req.method === 'PUT' && q.get('comp') === 'metadata', false],
  ];
  for (const [call, matches, needsOtherBlob] of calls) {
    test(`fault: a ${call} call that gets no answer fails the upload as transient after the deadline`, async () => {
      const containerName = newContainerName();
      if (needsOtherBlob) {
        await assertions(containerName).create();
        await assertions(containerName)
          .getPageBlobClient(blobName)
          .create(1 * MiB, { metadata: { a: 'b' } });
      }
      proxy.hang = matches;
      const started = Date.now();
      try {
        await assert.rejects(
          uploadSparseVhd({
            ...request(containerName),
            container: viaProxy(proxy, containerName),
            requestTimeoutMs: 2000,
          }),
          (error: unknown) => {
            assert.equal((error as { transient?: unknown }).transient, true, String(error));
            assert.match((error as Error).message, new RegExp(`${call}.*root\\.vhd.*within 2 s`));
            return true;
          },
        );
      } finally {
        proxy.hang = () => false;
      }
      assert.ok(proxy.held > 0, 'the proxy held no request');
      assert.ok(Date.now() - started < 20_000, 'the deadline did not cut the call');
    });
  }

  test('fault: findCompletedVhdBlob gives up on a getProperties without answer, as transient', async () => {
    proxy.hang = (req) => req.method === 'HEAD';
    try {
      await assert.rejects(
        findCompletedVhdBlob(viaProxy(proxy, newContainerName()), blobName, imageSha256, { timeoutMs: 300 }),
        (error: unknown) => {
          assert.equal((error as { transient?: unknown }).transient, true);
          assert.match((error as Error).message, /getProperties on page blob '.*root\.vhd'.*within 0\.3 s/);
          return true;
        },
      );
    } finally {
      proxy.hang = () => false;
    }
  });

  test("the caller's abort of a call without answer is an AbortError, not a deadline", async () => {
    proxy.hang = (req, q) => req.method === 'PUT' && q.get('comp') === 'page';
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 300);
    try {
      await assert.rejects(
        uploadSparseVhd({
          ...request(newContainerName()),
          container: viaProxy(proxy, `vhds-abort-${containerCount}`),
          signal: controller.signal,
          requestTimeoutMs: 60_000,
        }),
        { name: 'AbortError' },
      );
    } finally {
      clearTimeout(timer);
      proxy.hang = () => false;
    }
  });

  test('calls through the proxy that get answers work as usual', async () => {
    const containerName = newContainerName();
    const result = await uploadSparseVhd({
      ...request(containerName),
      container: viaProxy(proxy, containerName),
      requestTimeoutMs: 10_000,
    });
    assert.equal(result.bytesUploaded, vhd.dataBytes);
    assert.deepEqual(await pageRanges(containerName), vhd.extents);
  });
});

interface HangingProxy {
  endpoint: string;
  /** Requests for which this is true are held without an answer (a half-open connection). */
  hang: (req: IncomingMessage, query: URLSearchParams) => boolean;
  held: number;
  close: () => Promise<void>;
}

/** A plain HTTP proxy to Azurite that holds the requests `hang` picks and passes the others on. */
async function startHangingProxy(target: URL): Promise<HangingProxy> {
  const proxy: HangingProxy = { endpoint: '', hang: () => false, held: 0, close: () => Promise.resolve() };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    if (proxy.hang(req, url.searchParams)) {
      proxy.held += 1;
      req.resume();
      return;
    }
    const upstream = httpsRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', (error) => res.destroy(error));
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  proxy.endpoint = `http://127.0.0.1:${port}${target.pathname}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

/** Shared key through the proxy (plain http carries no bearer token). */
function viaProxy(proxy: HangingProxy, name: string): ContainerClient {
  return new ContainerClient(`${proxy.endpoint}/${name}`, azurite.sharedKeyCredential);
}

/** The container, with `hook` run just before the page blob client's `method` (another uploader's move). */
function withPageBlobHook(
  client: ContainerClient,
  method: 'create' | 'deleteIfExists' | 'uploadPages',
  hook: () => Promise<void>,
  /** Run the hook before this call of the method only (default: before every call). */
  onCall?: number,
): ContainerClient {
  const getPageBlobClient = client.getPageBlobClient.bind(client);
  let calls = 0;
  client.getPageBlobClient = (name: string) => {
    const blob = getPageBlobClient(name);
    const original = (blob[method] as (...args: unknown[]) => Promise<unknown>).bind(blob);
    Object.assign(blob, {
      [method]: async (...args: unknown[]) => {
        calls += 1;
        if (onCall === undefined || calls === onCall) await hook();
        return original(...args);
      },
    });
    return blob;
  };
  return client;
}

/** The production path: a bearer token from the managed identity endpoint. */
function container(name: string): ContainerClient {
  return new ContainerClient(`${azurite.blobEndpoint}/${name}`, credential);
}

/** Shared key, for setting up and checking state only. */
function assertions(name: string): ContainerClient {
  return new ContainerClient(`${azurite.blobEndpoint}/${name}`, azurite.sharedKeyCredential);
}

function newContainerName(): string {
  containerCount += 1;
  return `vhds-${containerCount}`;
}

function request(containerName: string): UploadSparseVhdRequest {
  return {
    container: container(containerName),
    blobName,
    vhdPath: vhd.path,
    extents: vhd.extents,
    size: vhd.size,
    metadata: {
      image_sha256: imageSha256,
      stemcell_series: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
      stemcell_version: '1.1364',
    },
    concurrency: 4,
  };
}

/** One write at a time, aborted from the progress callback of the first; returns the rejection. */
async function abortAfterFirstWrite(containerName: string): Promise<unknown> {
  const controller = new AbortController();
  const onProgress = (bytesUploaded: number): void => {
    if (bytesUploaded > 0) controller.abort();
  };
  try {
    await uploadSparseVhd({
      ...request(containerName),
      concurrency: 1,
      onProgress,
      signal: controller.signal,
    });
  } catch (error) {
    return error;
  }
  throw new Error('the aborted upload resolved');
}

/** The blob's written ranges, touching ones joined (the service may report them in pieces). */
async function pageRanges(containerName: string): Promise<Extent[]> {
  const ranges: Extent[] = [];
  for await (const range of assertions(containerName).getPageBlobClient(blobName).listPageRanges()) {
    const last = ranges.at(-1);
    if (last !== undefined && last.offset + last.length === range.start)
      last.length += range.end - range.start + 1;
    else ranges.push({ offset: range.start, length: range.end - range.start + 1 });
  }
  return ranges;
}

function sum(extents: readonly Extent[]): number {
  return extents.reduce((total, extent) => total + extent.length, 0);
}

/**
 * A ~12 MiB fixed-VHD-shaped file, sparse on disk: scattered non-zero ranges (one longer than a
 * 4 MiB write) and a 512-byte footer at the end; everything else zero.
 */
async function writeTestVhd(path: string): Promise<TestVhd> {
  const size = 12 * MiB + 512;
  const extents: Extent[] = [
    { offset: 0, length: 64 * KiB },
    { offset: 1 * MiB, length: 512 },
    { offset: 2 * MiB, length: 6 * MiB + 4 * KiB },
    { offset: 11 * MiB - 8 * KiB, length: 8 * KiB },
    { offset: 12 * MiB, length: 512 },
  ];
  const file = await open(path, 'w');
  try {
    for (const { offset, length } of extents) {
      await file.write(nonZeroBytes(length), 0, length, offset);
    }
    await file.truncate(size);
  } finally {
    await file.close();
  }
  assert.ok(planPageWrites(extents).length > extents.length, 'the fixture must need a split write');
  return { path, size, extents, dataBytes: sum(extents) };
}

/** Random bytes with no zero byte, so no page of an extent is all zeros and misplaced data shows. */
function nonZeroBytes(length: number): Buffer {
  const bytes = randomBytes(length);
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0) bytes[i] = 0x5a;
  return bytes;
}
