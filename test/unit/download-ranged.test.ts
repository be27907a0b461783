/**
 * The parallel ranged download: after the first segment, ranged GETs fetch the rest a few at a time
 * into the one in-order stream; drops resume per segment; a server without ranges (or one that ignores
 * them) is read as one stream; a file that changes between requests is refused.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DownloadError, downloadStream } from '../../src/download.js';
import { ensureTestCertificate } from '../support/tls.js';

const SEGMENT = 256 * 1024;
const BODY = randomBytes(3 * 1024 * 1024 + 4321);
const OTHER_BODY = randomBytes(BODY.length);
const ETAG = '"v1"';
// Long before any response's Date: a strong validator (RFC 9110 8.8.2.2).
const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT';

interface Behaviour {
  /** Send Accept-Ranges and a strong ETag (default true). */
  ranges?: boolean;
  /** Send a weak ETag: ranges are served, but nothing tells one file from another (RFC 9110 13.1.5). */
  weakEtag?: boolean;
  /** Ranged GETs get the whole file (200) with the same ETag: the server ignores Range after the first answer. */
  ignoreRangeAfterFirst?: boolean;
  /** Ranged GETs get another file (200, another ETag): it changed on the server. */
  changedAfterFirst?: boolean;
  /** Cut the connection of the request with this index after this many body bytes. */
  dropRequest?: { index: number; after: number };
  /** Serve this instead of BODY (ranges included). */
  body?: Buffer;
  /** `/stemcell.tgz` redirects (302) to `/bucket/stemcell.tgz`, as bosh.io's links do. */
  redirect?: boolean;
  /** The first signed bucket URL is refused (403) after one request, as an expired signature would be. */
  bucketExpiresAfterFirst?: boolean;
  /** No Accept-Ranges header, though ranges are served: a 206 is proof enough. */
  noAcceptRanges?: boolean;
  /** Last-Modified instead of an ETag: the date is the validator. */
  lastModifiedOnly?: boolean;
  /** The first answer's Content-Range starts a byte later than the bytes it sends. */
  wrongFirstStart?: boolean;
  /** Ranged answers run to the end of the file, whatever end was asked. */
  openEnded?: boolean;
  /**
   * Like openEnded, for the answers after the first only, and what follows the end asked is never sent:
   * a client that reads on past its segment waits for nothing.
   */
  openEndedAfterFirst?: boolean;
  /** Ranged answers hold at most this many bytes, as a server that caps ranges sends. */
  capRange?: number;
  /** Ranged answers after the first hold no bytes: a Content-Range whose end comes before its start. */
  emptyAfterFirst?: boolean;
  /** Ranged answers (the first, or those after it) send 10 bytes more than their Content-Range announces. */
  understated?: 'first' | 'after-first';
  /** Every request is answered 416 Range Not Satisfiable. */
  unsatisfiable?: boolean;
}

interface Server {
  url: string;
  requests: Array<{ path: string; range?: string; ifRange?: string }>;
  /** Redirects answered by the listed link. */
  redirects: number;
  peakActive: number;
  close(): Promise<void>;
}

async function serve(behaviour: Behaviour = {}): Promise<Server> {
  const { cert, key } = ensureTestCertificate();
  const state: Server = {
    url: '',
    requests: [],
    redirects: 0,
    peakActive: 0,
    close: () => Promise.resolve(),
  };
  let active = 0;
  let bucketRequests = 0;
  const server = createServer({ cert, key }, (req, res: ServerResponse) => {
    const path = req.url ?? '/';
    if (behaviour.redirect && path === '/stemcell.tgz') {
      state.redirects++;
      // Each redirect signs the bucket URL anew, as bosh.io's links to the bucket do.
      res.writeHead(302, { location: `/bucket/stemcell.tgz?sig=${state.redirects}`, 'content-length': 0 });
      res.end();
      return;
    }
    const firstSignature = path.endsWith('?sig=1');
    if (firstSignature && behaviour.bucketExpiresAfterFirst && bucketRequests++ > 0) {
      res.writeHead(403, { 'content-length': 0 });
      res.end();
      return;
    }
    const index = state.requests.length;
    const range = req.headers.range;
    const ifRange = req.headers['if-range'];
    state.requests.push({
      path,
      ...(range ? { range } : {}),
      ...(typeof ifRange === 'string' ? { ifRange } : {}),
    });
    active++;
    state.peakActive = Math.max(state.peakActive, active);
    res.on('close', () => active--);
    const headers: Record<string, string | number> = {};
    if (behaviour.ranges !== false) {
      if (!behaviour.noAcceptRanges) headers['accept-ranges'] = 'bytes';
      if (behaviour.lastModifiedOnly) headers['last-modified'] = LAST_MODIFIED;
      else headers.etag = behaviour.weakEtag ? `W/${ETAG}` : ETAG;
    }
    const match = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    const file = behaviour.body ?? BODY;
    let body = file;
    const validator = behaviour.lastModifiedOnly ? LAST_MODIFIED : behaviour.weakEtag ? undefined : ETAG;
    if (behaviour.unsatisfiable) {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${file.length}`, 'content-length': 0 });
      res.end();
      return;
    }
    if (index > 0 && behaviour.changedAfterFirst) {
      body = OTHER_BODY;
      headers.etag = '"v2"';
      res.writeHead(200, { ...headers, 'content-length': body.length });
    } else if (
      match &&
      // RFC 9110 13.1.5: a Range without If-Range applies; with one, only when it matches.
      (ifRange === undefined || ifRange === validator) &&
      behaviour.ranges !== false &&
      !(behaviour.ignoreRangeAfterFirst && index > 0)
    ) {
      const start = Number(match[1]);
      let end =
        match[2] === '' || behaviour.openEnded || (behaviour.openEndedAfterFirst && index > 0)
          ? file.length
          : Math.min(file.length, Number(match[2]) + 1);
      if (behaviour.capRange !== undefined) end = Math.min(end, start + behaviour.capRange);
      body = file.subarray(start, end);
      if (behaviour.emptyAfterFirst && index > 0) end = start;
      const said = behaviour.wrongFirstStart && index === 0 ? start + 1 : start;
      const last = behaviour.understated === (index === 0 ? 'first' : 'after-first') ? end - 11 : end - 1;
      headers['content-range'] = `bytes ${said}-${last}/${file.length}`;
      res.writeHead(206, { ...headers, 'content-length': body.length });
    } else {
      res.writeHead(200, { ...headers, 'content-length': body.length });
    }
    const drop = behaviour.dropRequest?.index === index ? behaviour.dropRequest.after : undefined;
    const asked = match?.[2] ? Number(match[2]) + 1 - Number(match[1]) : undefined;
    if (drop !== undefined) res.write(body.subarray(0, drop), () => res.socket?.destroy());
    else if (behaviour.openEndedAfterFirst && index > 0 && asked !== undefined)
      res.write(body.subarray(0, asked));
    else res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/stemcell.tgz`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

const options = { timeoutMs: 5000, expectedSize: BODY.length, segmentBytes: SEGMENT, connections: 4 };

/** The ranges asked for after the first request, as [start, end] pairs in order of start. */
function rangesAsked(server: Server): Array<[number, number]> {
  return server.requests
    .slice(1)
    .map((r) => /^bytes=(\d+)-(\d+)$/.exec(r.range ?? ''))
    .filter((m) => m !== null)
    .map((m): [number, number] => [Number(m[1]), Number(m[2])])
    .sort((a, b) => a[0] - b[0]);
}

test('after the first segment the rest comes as ranged GETs with If-Range, in order, byte for byte', async () => {
  const server = await serve();
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.requests[0]?.range, `bytes=0-${SEGMENT - 1}`, 'the first GET asks for one segment');
    assert.equal(server.requests[0]?.ifRange, undefined, 'no validator is known before the first answer');
    const segments = Math.ceil((BODY.length - SEGMENT) / SEGMENT);
    assert.equal(server.requests.length, 1 + segments);
    let next = SEGMENT;
    for (const [start, end] of rangesAsked(server)) {
      assert.equal(start, next, 'the ranges tile the file after the first segment');
      next = end + 1;
    }
    assert.equal(next, BODY.length);
    for (const request of server.requests.slice(1)) assert.equal(request.ifRange, ETAG);
    assert.ok(server.peakActive > 1, 'ranges were fetched in parallel');
  } finally {
    await server.close();
  }
});

test('memory stays bounded: a consumer that stops reading holds the stream buffer and `connections` segments', async () => {
  const big = randomBytes(24 * 1024 * 1024);
  const server = await serve({ body: big });
  try {
    const stream = downloadStream(server.url, { ...options, expectedSize: big.length });
    const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const chunks: Buffer[] = [];
    const first = await iterator.next();
    if (!first.done) chunks.push(first.value);
    await sleep(1000);
    // The Readable's own buffer (highWaterMark) fills first, then at most `connections` segments wait.
    const bound = 1 + Math.ceil(stream.readableHighWaterMark / SEGMENT) + options.connections + 1;
    assert.ok(server.requests.length <= bound, `${server.requests.length} requests, at most ${bound}`);
    assert.ok(server.requests.length < big.length / SEGMENT, 'the download paused');
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) chunks.push(r.value);
    assert.ok(Buffer.concat(chunks).equals(big), 'the bytes differ');
  } finally {
    await server.close();
  }
});

test('fault: a ranged GET that drops resumes where it stopped and the bytes stay identical', async () => {
  const server = await serve({ dropRequest: { index: 2, after: 100_000 } });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    const resumed = rangesAsked(server).filter(([start]) => (start - SEGMENT) % SEGMENT !== 0);
    assert.equal(resumed.length, 1, 'one range resumed inside a segment');
    assert.equal((resumed[0]![0] - SEGMENT) % SEGMENT, 100_000 % SEGMENT);
  } finally {
    await server.close();
  }
});

test('a dropped first connection resumes with Range, then goes on with ranged GETs', async () => {
  const server = await serve({ dropRequest: { index: 0, after: 50_000 } });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.requests[1]?.range, `bytes=50000-${SEGMENT - 1}`);
    assert.equal(server.requests[1]?.ifRange, ETAG);
  } finally {
    await server.close();
  }
});

test('fault: a server without ranges or a strong validator is read as one stream', async () => {
  const server = await serve({ ranges: false });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('fault: a server with ranges but only a weak ETag: the first segment is set aside and the file read whole as one stream', async () => {
  const server = await serve({ weakEtag: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.deepEqual(
      server.requests.map((request) => request.range),
      [`bytes=0-${SEGMENT - 1}`, undefined],
      'one ranged GET set aside, then the whole file',
    );
    assert.ok(
      server.requests.every((request) => request.ifRange === undefined),
      'never If-Range',
    );
  } finally {
    await server.close();
  }
});

test('fault: a server that answers ranged GETs with the same file whole is read on as one stream', async () => {
  const server = await serve({ ignoreRangeAfterFirst: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
  } finally {
    await server.close();
  }
});

test('fault: a file that changes between the first GET and the ranged ones is refused, as transient', async () => {
  const server = await serve({ changedAfterFirst: true });
  try {
    await assert.rejects(buffer(downloadStream(server.url, options)), (error: unknown) => {
      assert.ok(error instanceof DownloadError, String(error));
      assert.equal(error.transient, true);
      assert.match(error.message, /expected 206/);
      return true;
    });
  } finally {
    await server.close();
  }
});

test('fault: a first segment whose Content-Range total disagrees with the listed size is refused as permanent', async () => {
  const server = await serve();
  try {
    const listed = BODY.length + 1;
    await assert.rejects(
      buffer(downloadStream(server.url, { ...options, expectedSize: listed })),
      (error: unknown) => {
        assert.ok(error instanceof DownloadError, String(error));
        assert.equal(error.transient, false);
        assert.match(
          error.message,
          new RegExp(`Content-Range of ${BODY.length} bytes, but bosh.io lists ${listed}`),
        );
        return true;
      },
    );
    assert.equal(server.requests.length, 1, 'nothing more was asked');
  } finally {
    await server.close();
  }
});

test('connections: 1 keeps one connection', async () => {
  const server = await serve();
  try {
    const bytes = await buffer(downloadStream(server.url, { ...options, connections: 1 }));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('ranged GETs go straight to where the first GET was redirected, one round trip fewer each', async () => {
  const server = await serve({ redirect: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.redirects, 1, 'only the first GET went through the redirect');
    assert.ok(server.requests.length > 2);
    for (const request of server.requests) assert.equal(request.path, '/bucket/stemcell.tgz?sig=1');
  } finally {
    await server.close();
  }
});

test('fault: a redirect target that refuses the ranged GETs (an expired signed URL) is left for the listed link', async () => {
  const server = await serve({ redirect: true, bucketExpiresAfterFirst: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(
      server.redirects,
      1 + Math.ceil((BODY.length - SEGMENT) / SEGMENT),
      'every ranged GET asked the link',
    );
  } finally {
    await server.close();
  }
});

test('fault: a first answer whose Content-Range does not start at byte 0 is refused, worded for the first GET', async () => {
  const server = await serve({ wrongFirstStart: true });
  try {
    await assert.rejects(buffer(downloadStream(server.url, options)), (error: unknown) => {
      assert.ok(error instanceof DownloadError, String(error));
      assert.equal(error.transient, true);
      assert.ok(
        error.message.includes(
          `GET ${server.url}: server answered Content-Range "bytes 1-${SEGMENT - 1}/${BODY.length}", expected "bytes 0-.../${BODY.length}"`,
        ),
        error.message,
      );
      assert.doesNotMatch(error.message, /resuming/);
      return true;
    });
    assert.equal(server.requests.length, 1, 'nothing more was asked');
  } finally {
    await server.close();
  }
});

test('a 206 without Accept-Ranges and with only a Last-Modified date goes parallel, the date as If-Range', async () => {
  const server = await serve({ noAcceptRanges: true, lastModifiedOnly: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.requests.length, 1 + Math.ceil((BODY.length - SEGMENT) / SEGMENT));
    for (const request of server.requests.slice(1)) assert.equal(request.ifRange, LAST_MODIFIED);
    assert.equal(rangesAsked(server)[0]?.[0], SEGMENT, 'the ranged GETs start after the first segment');
  } finally {
    await server.close();
  }
});

test('fault: a drop in the first segment answered by the same file whole (200) is read on in one GET to the end', async () => {
  const server = await serve({ dropRequest: { index: 0, after: 50_000 }, ignoreRangeAfterFirst: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.deepEqual(
      server.requests.map((request) => request.range),
      [`bytes=0-${SEGMENT - 1}`, `bytes=50000-${SEGMENT - 1}`],
      'the whole-file answer is read to its end, not cut at the segment',
    );
  } finally {
    await server.close();
  }
});

test('fault: a first answer that runs to the end of the file (an open-ended 206) is read to its end, nothing thrown away', async () => {
  const server = await serve({ openEnded: true });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.requests.length, 1, 'one GET');
  } finally {
    await server.close();
  }
});

test('fault: ranged GETs answered with the rest of the file (open-ended 206s) are each cut at their segment', async () => {
  const server = await serve({ openEndedAfterFirst: true });
  try {
    const bytes = await buffer(downloadStream(server.url, { ...options, timeoutMs: 1000, maxResumes: 0 }));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(
      server.requests.length,
      1 + Math.ceil((BODY.length - SEGMENT) / SEGMENT),
      'one GET a segment',
    );
  } finally {
    await server.close();
  }
});

for (const [understated, message] of [
  ['first', `sent more than the bytes up to ${SEGMENT - 11} its Content-Range announced; refused`],
  [
    'after-first',
    `sent more than the ${SEGMENT - 10} bytes of range ${SEGMENT}-${2 * SEGMENT - 11} it announced; refused`,
  ],
] as const) {
  test(`fault: a ranged answer (${understated}) with more bytes than its Content-Range announces is refused as permanent`, async () => {
    const server = await serve({ understated });
    try {
      await assert.rejects(buffer(downloadStream(server.url, options)), (error: unknown) => {
        assert.ok(error instanceof DownloadError, String(error));
        assert.equal(error.transient, false);
        assert.ok(error.message.includes(message), error.message);
        return true;
      });
    } finally {
      await server.close();
    }
  });
}

test('fault: a server that caps ranges: each short 206 is followed by a GET of the rest, no resume spent', async () => {
  const cap = 100_000;
  const server = await serve({ capRange: cap });
  try {
    const bytes = await buffer(downloadStream(server.url, { ...options, maxResumes: 0 }));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    let expected = 0;
    for (let start = 0; start < BODY.length; start += SEGMENT)
      expected += Math.ceil((Math.min(BODY.length, start + SEGMENT) - start) / cap);
    assert.equal(server.requests.length, expected, 'each segment asked again from where its answer ended');
    assert.deepEqual(
      server.requests.slice(0, 3).map((request) => request.range),
      [`bytes=0-${SEGMENT - 1}`, `bytes=${cap}-${SEGMENT - 1}`, `bytes=${2 * cap}-${SEGMENT - 1}`],
    );
  } finally {
    await server.close();
  }
});

test('fault: a 206 that holds no bytes is refused, never asked for again and again', async () => {
  const server = await serve({ dropRequest: { index: 0, after: 50_000 }, emptyAfterFirst: true });
  try {
    await assert.rejects(buffer(downloadStream(server.url, options)), (error: unknown) => {
      assert.ok(error instanceof DownloadError, String(error));
      assert.ok(error.message.includes('server answered Content-Range "bytes 50000-49999/'), error.message);
      return true;
    });
    assert.equal(server.requests.length, 2, 'the empty answer was not asked again');
  } finally {
    await server.close();
  }
});

test('fault: a 416 to the first segment is a transient error that says 206 was expected', async () => {
  const server = await serve({ unsatisfiable: true });
  try {
    await assert.rejects(buffer(downloadStream(server.url, options)), (error: unknown) => {
      assert.ok(error instanceof DownloadError, String(error));
      assert.equal(error.status, 416);
      assert.equal(error.transient, true);
      assert.match(error.message, new RegExp(`bytes 0-${SEGMENT - 1} answered HTTP 416 .*, expected 206;`));
      return true;
    });
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('a resume of the first segment goes straight to where the first GET was redirected', async () => {
  const server = await serve({ redirect: true, dropRequest: { index: 0, after: 50_000 } });
  try {
    const bytes = await buffer(downloadStream(server.url, options));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.equal(server.redirects, 1, 'only the first GET went through the redirect');
    assert.deepEqual(server.requests[1], {
      path: '/bucket/stemcell.tgz?sig=1',
      range: `bytes=50000-${SEGMENT - 1}`,
      ifRange: ETAG,
    });
  } finally {
    await server.close();
  }
});

test('fault: a first-segment resume refused by the redirect target (an expired signed URL) goes back through the listed link', async () => {
  const server = await serve({
    redirect: true,
    bucketExpiresAfterFirst: true,
    dropRequest: { index: 0, after: 50_000 },
  });
  try {
    const bytes = await buffer(downloadStream(server.url, { ...options, maxResumes: 1 }));
    assert.ok(bytes.equals(BODY), 'the bytes differ');
    assert.deepEqual(server.requests[1], {
      path: '/bucket/stemcell.tgz?sig=2',
      range: `bytes=50000-${SEGMENT - 1}`,
      ifRange: ETAG,
    });
  } finally {
    await server.close();
  }
});
