/**
 * Faults of bosh.io and its bucket, through the real listing and download code against the fake bosh.io
 * (its `/d/` link redirects to the bucket, as bosh.io does): drops, validators, ignored ranges, redirects to
 * plain http, sizes that disagree and servers that never finish.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { after, before, beforeEach, test } from 'node:test';
import { BoshioError, listStemcellReleases, type StemcellRelease } from '../../src/boshio.js';
import { DownloadError, downloadStream } from '../../src/download.js';
import { startFakeBoshio, type FakeBoshio } from '../support/fake-boshio.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const TARBALL = randomBytes(3 * 1024 * 1024 + 321);
// Four segments: the validator cases go through the first-segment GET and the ranged GETs after it.
const SEGMENT = 1024 * 1024;

let boshio: FakeBoshio;
let plainHttp: { server: Server; url: string; hits: number };
let release: StemcellRelease;

before(async () => {
  boshio = await startFakeBoshio();
  boshio.publish(SERIES, { version: '1.200', tarball: TARBALL });
  [release] = (await listStemcellReleases(boshio.url, SERIES, { timeoutMs: 5000 })) as [StemcellRelease];
  const server = createServer((_req, res) => {
    plainHttp.hits += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  plainHttp = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: 0 };
});
after(async () => {
  plainHttp.server.closeAllConnections();
  plainHttp.server.close();
  await boshio.stop();
});
beforeEach(() => {
  for (const key of Object.keys(boshio.faults)) delete boshio.faults[key as keyof typeof boshio.faults];
  boshio.requests.length = 0;
  plainHttp.hits = 0;
});

function download(
  options: { timeoutMs?: number; deadlineMs?: number; segmentBytes?: number } = {},
): Promise<Buffer> {
  return buffer(
    downloadStream(release.url, {
      timeoutMs: options.timeoutMs ?? 5000,
      expectedSize: release.size,
      ...(options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs }),
      ...(options.segmentBytes === undefined ? {} : { segmentBytes: options.segmentBytes }),
    }),
  );
}

/** `bytes=start-last` of a request as [start, last], or undefined for any other Range. */
function boundedRange(request: { range?: string }): [number, number] | undefined {
  const match = /^bytes=(\d+)-(\d+)$/.exec(request.range ?? '');
  return match === null ? undefined : [Number(match[1]), Number(match[2])];
}

/** The last byte a GET from `start` asks for: the end of the segment it lies in. */
function segmentLast(start: number): number {
  return Math.min(TARBALL.length, (Math.floor(start / SEGMENT) + 1) * SEGMENT) - 1;
}

/** The bucket's requests (not the listing, not the `/d/` redirect). */
function bucketRequests(): FakeBoshio['requests'] {
  return boshio.requests.filter((request) => request.path.startsWith('/bucket/'));
}

async function downloadError(promise: Promise<unknown>): Promise<DownloadError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DownloadError, `expected a DownloadError, got ${String(error)}`);
    return error;
  }
  assert.fail('the download succeeded');
}

async function bucketValidators(): Promise<{ etag: string | null; lastModified: string | null }> {
  const response = await fetch(release.url, { method: 'HEAD' });
  boshio.requests.length = 0;
  return { etag: response.headers.get('etag'), lastModified: response.headers.get('last-modified') };
}

const OFFSETS = [1, 65_536, 1_048_576, TARBALL.length - 1];

test('fault: connection drops at 1 B, 64 KiB, 1 MiB and the last byte resume with Range and If-Range: the strong ETag', async () => {
  const { etag } = await bucketValidators();
  assert.match(etag ?? '', /^"[0-9a-f]+"$/);
  boshio.faults.dropConnectionAt = [...OFFSETS];

  const bytes = await download({ segmentBytes: SEGMENT });

  assert.ok(bytes.equals(TARBALL), 'the bytes differ from the tarball');
  const [first, ...later] = bucketRequests();
  assert.equal(first?.range, `bytes=0-${SEGMENT - 1}`, 'the first GET asks for the first segment');
  assert.equal(first?.ifRange, undefined);
  for (const request of later) {
    assert.equal(request.ifRange, etag);
    const [start, last] = boundedRange(request) ?? [NaN, NaN];
    assert.equal(last, segmentLast(start), `${request.range} asks for the rest of its segment only`);
  }
  // Each segment's GET, and one resume per cut: 1 B and 64 KiB in the first segment, 1 MiB as the second
  // segment begins, the last byte in the last segment.
  const starts = later.map((request) => boundedRange(request)?.[0]).sort((a, b) => (a ?? 0) - (b ?? 0));
  assert.deepEqual(starts, [1, 65_536, SEGMENT, SEGMENT, 2 * SEGMENT, 3 * SEGMENT, TARBALL.length - 1]);
});

test('fault: connection drops resume with If-Range: the Last-Modified date when the bucket sends no ETag', async () => {
  boshio.faults.validators = 'last-modified';
  const { etag, lastModified } = await bucketValidators();
  assert.equal(etag, null);
  boshio.faults.dropConnectionAt = [65_536, 2_000_000];

  const bytes = await download({ segmentBytes: SEGMENT });

  assert.ok(bytes.equals(TARBALL), 'the bytes differ from the tarball');
  const later = bucketRequests().slice(1);
  for (const request of later) {
    assert.equal(request.ifRange, lastModified);
    const [start, last] = boundedRange(request) ?? [NaN, NaN];
    assert.equal(last, segmentLast(start), `${request.range} asks for the rest of its segment only`);
  }
  const starts = later.map((request) => boundedRange(request)?.[0]).sort((a, b) => (a ?? 0) - (b ?? 0));
  assert.deepEqual(starts, [65_536, SEGMENT, 2_000_000, 2 * SEGMENT, 3 * SEGMENT], 'two resumes, in place');
});

test('fault: a weak ETag is never used for If-Range: the dropped download is not resumed and fails as transient', async () => {
  boshio.faults.validators = 'weak-etag';
  boshio.faults.dropConnectionAt = [1_048_576];

  const error = await downloadError(download({ segmentBytes: SEGMENT }));

  assert.match(error.message, /cannot be resumed/);
  assert.equal(error.transient, true);
  const requests = bucketRequests();
  assert.deepEqual(
    requests.map((request) => request.range),
    [`bytes=0-${SEGMENT - 1}`, undefined],
    'the first segment is set aside, then the file asked whole, never resumed',
  );
  for (const request of requests) assert.equal(request.ifRange, undefined);
});

test('fault: a bucket that ignores Range (200, the same file) still yields exactly the tarball', async () => {
  boshio.faults.ignoreRange = true;
  boshio.faults.dropConnectionAt = [1_048_576, 2_500_000];

  const bytes = await download({ segmentBytes: SEGMENT });

  assert.ok(bytes.equals(TARBALL), 'the bytes differ from the tarball');
  assert.deepEqual(
    bucketRequests().map((request) => request.range),
    [`bytes=0-${SEGMENT - 1}`, 'bytes=1048576-', 'bytes=2500000-'],
    'the whole-file answers are read on to the end, resumed where each dropped',
  );
});

test('fault: the download link redirecting to http:// is refused, naming the host; nothing is fetched over http', async () => {
  boshio.faults.redirectDownloadTo = `${plainHttp.url}/bucket/stemcell.tgz?X-Goog-Signature=abc`;

  const error = await downloadError(download());

  assert.equal(error.transient, false);
  assert.ok(error.message.includes(`redirects to ${plainHttp.url}`), error.message);
  assert.match(error.message, /https is required/);
  assert.doesNotMatch(error.message, /X-Goog-Signature/);
  assert.equal(plainHttp.hits, 0);
});

test('fault: the bosh.io listing redirecting to http:// is refused as permanent, naming the host', async () => {
  boshio.faults.redirectListingTo = `${plainHttp.url}/api/v1/stemcells/${SERIES}`;

  await assert.rejects(listStemcellReleases(boshio.url, SERIES, { timeoutMs: 5000 }), (error: unknown) => {
    assert.ok(error instanceof BoshioError, `expected a BoshioError, got ${String(error)}`);
    assert.equal(error.transient, false);
    assert.ok(error.message.includes(`redirects to ${plainHttp.url}`), error.message);
    assert.match(error.message, /https is required/);
    return true;
  });
  assert.equal(plainHttp.hits, 0);
});

test('fault: a Content-Length larger than the listed size is refused before the body is read', async () => {
  boshio.faults.contentLength = TARBALL.length + 1024 * 1024;

  const error = await downloadError(download());

  assert.equal(error.transient, false);
  assert.match(
    error.message,
    new RegExp(`Content-Length ${TARBALL.length + 1024 * 1024}, but bosh.io lists ${TARBALL.length} bytes`),
  );
});

test('fault: endless trailing zeros after the tarball are cut at the listed size and refused', async () => {
  boshio.faults.trailingZeros = 256 * 1024 * 1024;
  let delivered = 0;
  const stream = downloadStream(release.url, { timeoutMs: 5000, expectedSize: release.size });
  stream.on('data', (chunk: Buffer) => (delivered += chunk.length));

  const error = await downloadError(buffer(stream));

  assert.equal(error.transient, false);
  assert.match(error.message, new RegExp(`sent more than the ${TARBALL.length} bytes bosh.io lists`));
  assert.ok(delivered <= TARBALL.length, `${delivered} bytes reached the consumer`);
});

test('fault: a bucket dribbling a byte at a time is stopped by the overall deadline', async () => {
  boshio.faults.dribbleAfter = { bytes: 100_000, intervalMs: 50 };
  const started = Date.now();

  const error = await downloadError(download({ timeoutMs: 5000, deadlineMs: 2000 }));

  assert.equal(error.transient, false);
  assert.match(error.message, /did not finish within 2 s/);
  assert.ok(Date.now() - started < 5000, `it took ${Date.now() - started} ms`);
});

for (const [status, transient] of [
  [408, true],
  [429, true],
  [500, true],
  [503, true],
  [403, false],
  [404, false],
] as const) {
  test(`fault: the bosh.io listing answers HTTP ${status}: a ${transient ? 'transient' : 'permanent'} BoshioError`, async () => {
    boshio.setSeriesResponse(`${SERIES}-${status}`, { status, body: 'unavailable' });
    await assert.rejects(
      listStemcellReleases(boshio.url, `${SERIES}-${status}`, { timeoutMs: 5000 }),
      (error: unknown) => {
        assert.ok(error instanceof BoshioError, `expected a BoshioError, got ${String(error)}`);
        assert.equal(error.transient, transient);
        assert.match(error.message, new RegExp(`bosh.io answered ${status}`));
        return true;
      },
    );
  });
}

test('fault: the tarball changes on the bucket between a drop and its resume: refused, never two files mixed', async () => {
  const changed = randomBytes(TARBALL.length);
  boshio.faults.dropConnectionAt = [65_536];
  let republished = false;
  const stream = downloadStream(release.url, {
    timeoutMs: 5000,
    expectedSize: release.size,
    segmentBytes: SEGMENT,
    onProgress: (bytes) => {
      if (!republished && bytes > 0) {
        republished = true;
        boshio.publish(SERIES, { version: '1.200', tarball: changed });
      }
    },
  });

  try {
    const error = await downloadError(buffer(stream));

    assert.equal(error.transient, true);
    assert.match(
      error.message,
      /answered HTTP 200, expected 206 \(the file may have changed on the server\)/,
    );
    const [, resumed] = bucketRequests();
    assert.equal(resumed?.range, `bytes=65536-${SEGMENT - 1}`);
    assert.match(resumed?.ifRange ?? '', /^"[0-9a-f]+"$/);
  } finally {
    boshio.publish(SERIES, { version: '1.200', tarball: TARBALL });
  }
});
