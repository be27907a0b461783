import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { DownloadError, downloadDeadlineMs, downloadStream } from '../../src/download.js';
import { ensureTestCertificate } from '../support/tls.js';

const BODY = randomBytes(3 * 1024 * 1024 + 123);
const ETAG = '"v1-abc"';
const LAST_MODIFIED = 'Mon, 01 Jun 2026 10:00:00 GMT';
// What the server sends once the file changed under the same URL.
const CHANGED_BODY = randomBytes(BODY.length);
const CHANGED_ETAG = '"v2-def"';

interface Behaviour {
  /** Send the ETag and Accept-Ranges (default true); false sends neither. */
  etag?: boolean;
  /** Which validator goes with Accept-Ranges (default strong ETag); Last-Modified is always sent. */
  validator?: 'strong' | 'weak' | 'last-modified';
  /** For each request (by index): cut the connection after this many body bytes. */
  dropAfter?: Array<number | undefined>;
  /** For each request (by index): send this many bytes, then stop sending without closing. */
  stallAfter?: Array<number | undefined>;
  /** Answer resumed requests with the whole file: the same one (Range ignored), or one that changed. */
  ignoreRange?: 'same-file' | 'changed-file';
}

interface Served {
  url: string;
  requests: Array<{ range?: string; ifRange?: string }>;
  close: () => Promise<void>;
}

async function serve(
  behaviour: Behaviour,
  handler?: (req: IncomingMessage, res: ServerResponse) => boolean,
): Promise<Served> {
  const requests: Served['requests'] = [];
  const { cert, key } = ensureTestCertificate();
  const server = createServer({ cert, key }, (req, res) => {
    if (handler?.(req, res)) return;
    const index = requests.length;
    const range = req.headers.range;
    const ifRange = req.headers['if-range'];
    requests.push({ ...(range ? { range } : {}), ...(typeof ifRange === 'string' ? { ifRange } : {}) });
    const validator = behaviour.validator ?? 'strong';
    const changed = index > 0 && behaviour.ignoreRange === 'changed-file';
    const headers: Record<string, string | number> = { 'last-modified': LAST_MODIFIED };
    if (behaviour.etag !== false) {
      if (validator !== 'last-modified') headers.etag = validator === 'weak' ? `W/${ETAG}` : ETAG;
      if (changed) headers.etag = CHANGED_ETAG;
      headers['accept-ranges'] = 'bytes';
    }
    let start = 0;
    const match = /^bytes=(\d+)-$/.exec(range ?? '');
    // If-Range matches only the strong ETag, or the date when no ETag is sent (RFC 9110 13.1.5).
    const matches =
      (validator === 'strong' && ifRange === ETAG) ||
      (validator === 'last-modified' && ifRange === LAST_MODIFIED);
    if (match && behaviour.ignoreRange === undefined && matches) {
      start = Number(match[1]);
      headers['content-range'] = `bytes ${start}-${BODY.length - 1}/${BODY.length}`;
      res.writeHead(206, { ...headers, 'content-length': BODY.length - start });
    } else {
      res.writeHead(200, { ...headers, 'content-length': BODY.length });
    }
    const body = (changed ? CHANGED_BODY : BODY).subarray(start);
    const drop = behaviour.dropAfter?.[index];
    const stall = behaviour.stallAfter?.[index];
    if (drop !== undefined) {
      res.write(body.subarray(0, drop), () => res.socket?.destroy());
    } else if (stall !== undefined) {
      res.write(body.subarray(0, stall));
    } else {
      res.end(body);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/stemcells/light.tgz?X-Signature=secret`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

test('a complete response is passed on byte for byte', async () => {
  const server = await serve({});
  try {
    const bytes = await buffer(downloadStream(server.url, { timeoutMs: 5000 }));
    assert.ok(bytes.equals(BODY));
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('fault: a dropped connection is resumed with Range and If-Range and yields identical bytes', async () => {
  const server = await serve({ dropAfter: [1_000_000, 700_000] });
  try {
    const bytes = await buffer(downloadStream(server.url, { timeoutMs: 5000 }));
    assert.ok(bytes.equals(BODY));
    assert.equal(server.requests.length, 3);
    const resumedAt = Number(/bytes=(\d+)-/.exec(server.requests[1]?.range ?? '')?.[1]);
    assert.ok(resumedAt >= 1_000_000 - 65536 && resumedAt <= 1_000_000, `resumed at ${resumedAt}`);
    assert.equal(server.requests[1]?.ifRange, ETAG);
  } finally {
    await server.close();
  }
});

test('fault: a stalled response is cut by the inactivity timeout and resumed with Range, yielding identical bytes', async () => {
  // The first response sends 500,000 bytes and then nothing, for as long as the client keeps it open:
  // only the client's inactivity timeout can end it, however slow or fast the machine is.
  let stalledClosed!: () => void;
  const stalledResponseClosed = new Promise<void>((resolve) => (stalledClosed = resolve));
  let first = true;
  const server = await serve({ stallAfter: [500_000] }, (_req, res) => {
    if (first) res.once('close', () => stalledClosed());
    first = false;
    return false;
  });
  try {
    const bytes = await buffer(downloadStream(server.url, { timeoutMs: 300 }));

    assert.ok(bytes.equals(BODY));
    await stalledResponseClosed; // the client gave up on the stalled response rather than waiting forever
    const [initial, ...resumed] = server.requests;
    assert.equal(initial?.range, undefined);
    assert.ok(resumed.length > 0, 'the download was never resumed');
    for (const request of resumed) {
      const from = Number(/^bytes=(\d+)-$/.exec(request.range ?? '')?.[1]);
      assert.ok(from > 0 && from < BODY.length, `resumed with ${request.range}`);
      assert.equal(request.ifRange, ETAG);
    }
  } finally {
    await server.close();
  }
});

test('progress reports the bytes so far and the total', async () => {
  const server = await serve({});
  try {
    const seen: Array<[number, number | undefined]> = [];
    await buffer(downloadStream(server.url, { timeoutMs: 5000, onProgress: (b, t) => seen.push([b, t]) }));
    assert.deepEqual(seen.at(-1), [BODY.length, BODY.length]);
  } finally {
    await server.close();
  }
});

test('a non-2xx answer fails with the status and the URL without its query string', async () => {
  const server = await serve({}, (_req, res) => {
    res.writeHead(404).end('no such stemcell');
    return true;
  });
  try {
    await assert.rejects(buffer(downloadStream(server.url, { timeoutMs: 5000 })), (error: unknown) => {
      assert.ok(error instanceof DownloadError);
      assert.equal(error.status, 404);
      assert.match(error.message, /HTTP 404/);
      assert.match(error.message, /\/stemcells\/light\.tgz/);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
  } finally {
    await server.close();
  }
});

test('redirects are followed', async () => {
  const target = await serve({});
  const redirect = await serve({}, (_req, res) => {
    res.writeHead(302, { location: target.url }).end();
    return true;
  });
  try {
    const bytes = await buffer(downloadStream(redirect.url, { timeoutMs: 5000 }));
    assert.ok(bytes.equals(BODY));
  } finally {
    await Promise.all([target.close(), redirect.close()]);
  }
});

test('fault: a dropped connection without an ETag cannot be resumed and fails clearly', async () => {
  const server = await serve({ etag: false, dropAfter: [1_000_000] });
  try {
    await assert.rejects(buffer(downloadStream(server.url, { timeoutMs: 5000 })), {
      name: 'DownloadError',
      message: /failed at byte \d+ of 3145851 .*cannot be resumed/,
    });
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('fault: a resume answered with the whole file (it changed) fails instead of mixing two files', async () => {
  const server = await serve({ dropAfter: [1_000_000], ignoreRange: 'changed-file' });
  try {
    await assert.rejects(buffer(downloadStream(server.url, { timeoutMs: 5000 })), {
      name: 'DownloadError',
      message: /answered HTTP 200, expected 206/,
    });
  } finally {
    await server.close();
  }
});

test('fault: a connection that keeps dropping fails after the allowed resumes', async () => {
  const server = await serve({ dropAfter: [100_000, 100_000, 100_000, 100_000] });
  try {
    await assert.rejects(buffer(downloadStream(server.url, { timeoutMs: 5000, maxResumes: 2 })), {
      name: 'DownloadError',
      message: /after 2 resume\(s\)/,
    });
    assert.equal(server.requests.length, 3);
  } finally {
    await server.close();
  }
});

test('an aborted signal stops the download', async () => {
  const server = await serve({ stallAfter: [100_000] });
  try {
    const controller = new AbortController();
    const stream = downloadStream(server.url, { timeoutMs: 60_000, signal: controller.signal });
    stream.once('data', () => controller.abort(new Error('stopped by test')));
    await assert.rejects(buffer(stream), { message: 'stopped by test' });
  } finally {
    await server.close();
  }
});

test('an abort while the consumer is not reading still ends the stream', async () => {
  const server = await serve({});
  try {
    const controller = new AbortController();
    const stream = downloadStream(server.url, { timeoutMs: 60_000, signal: controller.signal });
    const failed = new Promise<unknown>((resolve) => stream.once('error', resolve));
    stream.once('readable', () => controller.abort(new Error('stopped while paused')));
    assert.equal(((await failed) as Error).message, 'stopped while paused');
  } finally {
    await server.close();
  }
});

/** Rejects with a DownloadError whose `transient` flag is `expected`. */
async function assertTransient(
  stream: NodeJS.ReadableStream,
  expected: boolean,
  message: RegExp,
): Promise<void> {
  await assert.rejects(buffer(stream), (error: unknown) => {
    assert.ok(error instanceof DownloadError, `expected a DownloadError, got ${String(error)}`);
    assert.match(error.message, message);
    assert.equal(error.transient, expected);
    return true;
  });
}

test('fault: a download that stalls on every attempt fails as transient', async () => {
  const server = await serve({ stallAfter: [100_000, 100_000, 100_000] });
  try {
    await assertTransient(
      downloadStream(server.url, { timeoutMs: 200, maxResumes: 2 }),
      true,
      /no data for 200 ms/,
    );
  } finally {
    await server.close();
  }
});

test('a connection that keeps dropping fails as transient once the resumes ran out', async () => {
  const server = await serve({ dropAfter: [100_000, 100_000, 100_000] });
  try {
    await assertTransient(
      downloadStream(server.url, { timeoutMs: 5000, maxResumes: 2 }),
      true,
      /after 2 resume/,
    );
  } finally {
    await server.close();
  }
});

test('a dropped connection that cannot be resumed fails as transient: a new download may succeed', async () => {
  const server = await serve({ etag: false, dropAfter: [1_000_000] });
  try {
    await assertTransient(downloadStream(server.url, { timeoutMs: 5000 }), true, /cannot be resumed/);
  } finally {
    await server.close();
  }
});

test('a resume answered with 200 instead of 206 fails as transient', async () => {
  const server = await serve({ dropAfter: [1_000_000], ignoreRange: 'changed-file' });
  try {
    await assertTransient(
      downloadStream(server.url, { timeoutMs: 5000 }),
      true,
      /answered HTTP 200, expected 206/,
    );
  } finally {
    await server.close();
  }
});

test('fault: a resume answered with another Content-Range fails as transient', async () => {
  let requests = 0;
  const server = await serve({ dropAfter: [1_000_000] }, (req, res) => {
    if (requests++ === 0 || !req.headers.range) return false;
    res.writeHead(206, {
      'content-range': `bytes 0-${BODY.length - 1}/${BODY.length}`,
      'content-length': BODY.length,
    });
    res.end(BODY);
    return true;
  });
  try {
    await assertTransient(downloadStream(server.url, { timeoutMs: 5000 }), true, /Content-Range/);
  } finally {
    await server.close();
  }
});

test('fault: a server that refuses connections fails as transient', async () => {
  const server = await serve({});
  await server.close();
  await assertTransient(
    downloadStream(server.url, { timeoutMs: 5000, maxResumes: 1 }),
    true,
    /failed at byte 0/,
  );
});

for (const [status, transient] of [
  [408, true],
  [429, true],
  [500, true],
  [503, true],
  [403, false],
  [404, false],
] as const) {
  test(`fault: HTTP ${status} fails as ${transient ? 'transient' : 'permanent'}`, async () => {
    const server = await serve({}, (_req, res) => {
      res.writeHead(status).end();
      return true;
    });
    try {
      await assertTransient(
        downloadStream(server.url, { timeoutMs: 5000 }),
        transient,
        new RegExp(`HTTP ${status}`),
      );
    } finally {
      await server.close();
    }
  });
}

/** A plain-http listener that records whether anything reached it. */
async function plainHttp(): Promise<{ url: string; hits: number; close: () => Promise<void> }> {
  const seen = { hits: 0 };
  const server = createHttpServer((_req, res) => {
    seen.hits += 1;
    res.writeHead(200, { 'content-length': BODY.length }).end(BODY);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/stemcells/light.tgz?sig=secret`,
    get hits() {
      return seen.hits;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

test('an http:// URL is refused before anything is sent, naming the host', async () => {
  const target = await plainHttp();
  try {
    await assertTransient(
      downloadStream(target.url, { timeoutMs: 5000 }),
      false,
      /127\.0\.0\.1:\d+\/stemcells\/light\.tgz is not an https URL: refused, https is required/,
    );
    assert.equal(target.hits, 0);
  } finally {
    await target.close();
  }
});

test('fault: a download redirected to http:// is refused, naming the host, and the http URL is never fetched', async () => {
  const target = await plainHttp();
  const redirect = await serve({}, (_req, res) => {
    res.writeHead(302, { location: target.url }).end();
    return true;
  });
  try {
    const host = new URL(target.url).host;
    await assert.rejects(buffer(downloadStream(redirect.url, { timeoutMs: 5000 })), (error: unknown) => {
      assert.ok(error instanceof DownloadError, `expected a DownloadError, got ${String(error)}`);
      assert.equal(error.transient, false);
      assert.ok(error.message.includes(`redirects to http://${host}`), error.message);
      assert.match(error.message, /https is required/);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
    assert.equal(target.hits, 0);
  } finally {
    await Promise.all([target.close(), redirect.close()]);
  }
});

test('fault: a redirect loop is refused after 5 hops', async () => {
  let hops = 0;
  const loop = await serve({}, (req, res) => {
    hops += 1;
    res.writeHead(302, { location: `/hop-${hops}${req.url ?? ''}` }).end();
    return true;
  });
  try {
    await assertTransient(
      downloadStream(loop.url, { timeoutMs: 5000 }),
      false,
      /redirects more than 5 times/,
    );
    assert.equal(hops, 6);
  } finally {
    await loop.close();
  }
});

test('fault: connection drops at several offsets resume with Range and If-Range: Last-Modified when there is no ETag', async () => {
  const server = await serve({ validator: 'last-modified', dropAfter: [1, 65_536, 1_000_000, 2_000_000] });
  try {
    const bytes = await buffer(downloadStream(server.url, { timeoutMs: 5000 }));
    assert.ok(bytes.equals(BODY));
    assert.equal(server.requests.length, 5);
    const [first, ...resumed] = server.requests;
    assert.deepEqual(first, {});
    let previous = 0;
    for (const request of resumed) {
      assert.equal(request.ifRange, LAST_MODIFIED);
      const from = Number(/^bytes=(\d+)-$/.exec(request.range ?? '')?.[1]);
      assert.ok(from > previous, `resumed at ${request.range} after ${previous}`);
      previous = from;
    }
  } finally {
    await server.close();
  }
});

test('fault: a weak ETag is never sent as If-Range, nor the date beside it; the drop fails clearly', async () => {
  const server = await serve({ validator: 'weak', dropAfter: [1_000_000] });
  try {
    await assertTransient(downloadStream(server.url, { timeoutMs: 5000 }), true, /cannot be resumed/);
    assert.deepEqual(server.requests, [{}]);
  } finally {
    await server.close();
  }
});

test('fault: a server that ignores Range and resends the same file whole: the bytes already delivered are skipped', async () => {
  const server = await serve({ dropAfter: [1_000_000, 1_500_000], ignoreRange: 'same-file' });
  try {
    const bytes = await buffer(downloadStream(server.url, { timeoutMs: 5000 }));
    assert.ok(bytes.equals(BODY));
    assert.equal(server.requests.length, 3);
    assert.equal(server.requests[1]?.ifRange, ETAG);
    assert.match(server.requests[1]?.range ?? '', /^bytes=\d+-$/);
  } finally {
    await server.close();
  }
});

test('fault: a Content-Length that disagrees with the listed size is refused before reading the body', async () => {
  const server = await serve({});
  try {
    await assertTransient(
      downloadStream(server.url, { timeoutMs: 5000, expectedSize: BODY.length - 1 }),
      false,
      new RegExp(`Content-Length ${BODY.length}, but bosh.io lists ${BODY.length - 1} bytes`),
    );
  } finally {
    await server.close();
  }
});

test('fault: endless bytes without a Content-Length stop at the listed size, refused', async () => {
  let sent = 0;
  const server = await serve({}, (_req, res) => {
    res.writeHead(200, { 'accept-ranges': 'bytes', etag: ETAG });
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      // At most 64 MiB, so a client that does not stop is still caught by the assertion below.
      while (sent < 64 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
      if (sent < 64 * 1024 * 1024 && !res.destroyed) res.once('drain', pump);
      else res.end();
    };
    pump();
    return true;
  });
  try {
    const listed = 1024 * 1024;
    let delivered = 0;
    const stream = downloadStream(server.url, { timeoutMs: 5000, expectedSize: listed });
    stream.on('data', (chunk: Buffer) => (delivered += chunk.length));
    await assertTransient(stream, false, new RegExp(`sent more than the ${listed} bytes bosh.io lists`));
    assert.ok(delivered <= listed, `delivered ${delivered} bytes`);
    assert.ok(sent < 64 * 1024 * 1024, 'the client kept reading');
  } finally {
    await server.close();
  }
});

test('fault: a server dribbling bytes is stopped by the overall deadline, not held open by the inactivity timeout', async () => {
  const server = await serve({}, (_req, res) => {
    res.writeHead(200, { 'content-length': BODY.length, 'accept-ranges': 'bytes', etag: ETAG });
    res.write(BODY.subarray(0, 1000));
    let at = 1000;
    const timer = setInterval(() => res.write(BODY.subarray(at, ++at)), 20);
    res.once('close', () => clearInterval(timer));
    return true;
  });
  try {
    const started = Date.now();
    await assertTransient(
      downloadStream(server.url, { timeoutMs: 5000, deadlineMs: 1500, expectedSize: BODY.length }),
      false,
      /did not finish within 1\.5 s .*stopped at byte \d+ of 3145851/,
    );
    assert.ok(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
  } finally {
    await server.close();
  }
});

test('the overall deadline is 5 minutes plus the listed size at 512 KiB/s', () => {
  assert.equal(downloadDeadlineMs(0), 5 * 60_000);
  assert.equal(downloadDeadlineMs(512 * 1024 * 60), 6 * 60_000);
  // A 1.3 GB stemcell: about 46 minutes, inside the Function App's two-hour timeout.
  assert.equal(Math.round(downloadDeadlineMs(1_300_000_000) / 60_000), 46);
});
