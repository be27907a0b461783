import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startHttpsServer } from './https-server.js';

/** Tarball bytes in memory, or a file streamed from disk (stemcells can be 1+ GB). */
export type StemcellTarball = Buffer | { path: string; size: number };

export interface PublishedRelease {
  version: string;
  /** For a file, `size` is what the API reports; the bucket serves the file as it is on disk. */
  tarball: StemcellTarball;
  /** Default: the real digest. '' leaves the field out of the API entry; another value simulates a bad checksum. */
  sha1?: string;
  sha256?: string;
  /** Default '' (bosh.io often has no md5). */
  md5?: string;
  /** Appended to the listed download URL, as a signed bucket URL carries one (e.g. `X-Goog-Signature=...`). */
  urlQuery?: string;
}

export interface FakeBoshioFaults {
  /** Every bucket response stops at this absolute byte of the tarball and the connection is destroyed. */
  truncateDownloadAt?: number;
  /** Every bucket request answers this HTTP status instead of the bytes. */
  failDownloadsWithStatus?: number;
  /** The first response that reaches this absolute byte is cut there; later ones (Range resumes) succeed. */
  dropConnectionOnceAt?: number;
  /**
   * Like dropConnectionOnceAt for each of these absolute bytes: a response is cut at the lowest one inside
   * it, which is then spent, so ranged GETs in flight at once each meet the cuts in their own range.
   */
  dropConnectionAt?: number[];
  /**
   * Which validators the bucket sends: both a strong ETag and Last-Modified (default, as object stores do),
   * only a weak ETag (and Last-Modified), or only Last-Modified. If-Range is honoured as RFC 9110 says: only a
   * strong ETag or the exact Last-Modified date matches.
   */
  validators?: 'strong-etag' | 'weak-etag' | 'last-modified';
  /** The bucket answers every request with the whole file (200), Range or not. */
  ignoreRange?: boolean;
  /** The bucket announces this Content-Length (and sends that many bytes, from the file then zeros). */
  contentLength?: number;
  /** After the file, the bucket sends this many more zero bytes without a Content-Length (chunked). */
  trailingZeros?: number;
  /** The bucket sends this many bytes, then one byte every `intervalMs` (a server dribbling). */
  dribbleAfter?: { bytes: number; intervalMs: number };
  /** The `/d/` download link redirects here instead of to the bucket (e.g. an `http://` URL). */
  redirectDownloadTo?: string;
  /** The series listing answers 302 to this URL instead of the JSON. */
  redirectListingTo?: string;
  /** Each bucket response sends at most this many bytes per second, as object stores cap one connection. */
  perConnectionBytesPerSecond?: number;
}

export interface FakeBoshio {
  /** `https://127.0.0.1:PORT`: the value for BASM_BOSHIO_URL. */
  url: string;
  publish(series: string, release: PublishedRelease): void;
  /** Raw answer for the series listing, replacing the published releases: 500s, non-JSON, malformed entries. */
  setSeriesResponse(series: string, response: { status: number; body: string; contentType?: string }): void;
  /** Mutable: tests set and clear faults at any time. */
  faults: FakeBoshioFaults;
  /**
   * Downloads of the series' stemcells get no answer until the returned function is called (a slow bucket):
   * tests act while a run is busy downloading.
   */
  holdDownloads(series: string): () => void;
  /** Every request, in order; `path` includes the query string. */
  requests: Array<{ method: string; path: string; range?: string; ifRange?: string }>;
  /** Tarball bytes the bucket has written to its connections so far. */
  readonly bytesServed: number;
  /** The most bucket responses that were sending at once. */
  readonly peakConnections: number;
  /** Starts bytesServed and peakConnections again from zero. */
  resetServed(): void;
  stop(): Promise<void>;
}

interface Stemcell {
  series: string;
  version: string;
  fileName: string;
  tarball: StemcellTarball;
  listedSize: number;
  servedSize: number;
  etag: string;
  lastModified: string;
  sha1?: string;
  sha256?: string;
  md5: string;
  urlQuery?: string;
  realDigests?: Promise<{ sha1: string; sha256: string }>;
}

/** What the bucket has sent: bytes, and responses sending now and at most at once. */
interface Served {
  bytes: number;
  active: number;
  peak: number;
}

const listingLimit = 40;
const chunkSize = 1 << 20;

/** An HTTPS fake of bosh.io: the stemcell API, the download redirect and the bucket behind it. */
export async function startFakeBoshio(): Promise<FakeBoshio> {
  const seriesReleases = new Map<string, Map<string, Stemcell>>();
  const bucket = new Map<string, Stemcell>();
  const seriesOverrides = new Map<string, { status: number; body: string; contentType?: string }>();
  const faults: FakeBoshioFaults = {};
  const holds = new Map<string, Promise<void>>();
  const requests: FakeBoshio['requests'] = [];
  let generation = 0;
  let baseUrl = '';
  const served = { bytes: 0, active: 0, peak: 0 };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const range = req.headers.range;
    const ifRange = header(req, 'if-range');
    requests.push({
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      ...(range === undefined ? {} : { range }),
      ...(ifRange === undefined ? {} : { ifRange }),
    });
    const url = new URL(req.url ?? '/', baseUrl);
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendText(res, 405, `${req.method} is not allowed`);

    if (parts.length === 4 && parts[0] === 'api' && parts[1] === 'v1' && parts[2] === 'stemcells') {
      const series = parts[3] ?? '';
      if (faults.redirectListingTo !== undefined) {
        res.writeHead(302, { location: faults.redirectListingTo, 'content-length': 0 });
        res.end();
        return;
      }
      const override = seriesOverrides.get(series);
      if (override !== undefined) {
        return send(res, override.status, override.contentType ?? 'application/json', override.body);
      }
      const releases = [...(seriesReleases.get(series)?.values() ?? [])].sort((a, b) =>
        compareVersions(b.version, a.version),
      );
      const listed = url.searchParams.get('all') === '1' ? releases : releases.slice(0, listingLimit);
      const entries = await Promise.all(listed.map((stemcell) => apiEntry(stemcell, baseUrl)));
      return send(res, 200, 'application/json', JSON.stringify(entries));
    }

    if (parts.length === 5 && parts[0] === 'd' && parts[1] === 'stemcells') {
      const [, , series, version, fileName] = parts;
      await holds.get(series ?? '');
      const stemcell = seriesReleases.get(series ?? '')?.get(version ?? '');
      if (stemcell === undefined || stemcell.fileName !== fileName) {
        return sendText(res, 404, `no stemcell ${series}/${version}/${fileName}`);
      }
      res.writeHead(302, {
        location:
          faults.redirectDownloadTo ??
          `${baseUrl}/bucket/${encodeURIComponent(stemcell.fileName)}${url.search}`,
        'content-length': 0,
      });
      res.end();
      return;
    }

    if (parts.length === 2 && parts[0] === 'bucket') {
      const stemcell = bucket.get(parts[1] ?? '');
      if (stemcell === undefined) return sendText(res, 404, `NoSuchKey: ${parts[1]}`);
      if (faults.failDownloadsWithStatus !== undefined) {
        return sendText(
          res,
          faults.failDownloadsWithStatus,
          `fake bucket fails downloads of ${stemcell.fileName}`,
        );
      }
      return serveTarball(req, res, stemcell, faults, served);
    }

    sendText(res, 404, `fake bosh.io has no route for ${url.pathname}`);
  };

  const server = await startHttpsServer(handle);
  baseUrl = server.url;

  return {
    url: server.url,
    faults,
    requests,
    get bytesServed() {
      return served.bytes;
    },
    get peakConnections() {
      return served.peak;
    },
    resetServed() {
      served.bytes = 0;
      served.peak = served.active;
    },
    stop: () => server.stop(),
    holdDownloads(series) {
      let release = (): void => undefined;
      holds.set(
        series,
        new Promise<void>((resolve) => {
          release = () => {
            holds.delete(series);
            resolve();
          };
        }),
      );
      return () => release();
    },
    setSeriesResponse(series, response) {
      seriesOverrides.set(series, response);
    },
    publish(series, release) {
      const fileName = `bosh-stemcell-${release.version}-${series.replace(/^bosh-/, '')}.tgz`;
      const servedSize = Buffer.isBuffer(release.tarball)
        ? release.tarball.length
        : statSync(release.tarball.path).size;
      const listedSize = Buffer.isBuffer(release.tarball) ? release.tarball.length : release.tarball.size;
      generation += 1;
      const stemcell: Stemcell = {
        series,
        version: release.version,
        fileName,
        tarball: release.tarball,
        listedSize,
        servedSize,
        etag: `"${createHash('sha1').update(`${fileName}:${servedSize}:${generation}`).digest('hex')}"`,
        // Uploaded a while ago: a Last-Modified a second or more before Date is a strong validator.
        lastModified: new Date(Date.now() - 3_600_000).toUTCString(),
        md5: release.md5 ?? '',
        ...(release.urlQuery === undefined ? {} : { urlQuery: release.urlQuery }),
        ...(release.sha1 === undefined ? {} : { sha1: release.sha1 }),
        ...(release.sha256 === undefined ? {} : { sha256: release.sha256 }),
      };
      const versions = seriesReleases.get(series) ?? new Map<string, Stemcell>();
      const previous = versions.get(release.version);
      if (previous !== undefined) bucket.delete(previous.fileName);
      versions.set(release.version, stemcell);
      seriesReleases.set(series, versions);
      bucket.set(fileName, stemcell);
    },
  };
}

/** Numeric, part by part: `1.10` is newer than `1.9`; a missing part counts as 0. */
function compareVersions(a: string, b: string): number {
  const left = a.split('.');
  const right = b.split('.');
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i] ?? '0';
    const y = right[i] ?? '0';
    const difference = Number(x) - Number(y);
    if (Number.isNaN(difference)) {
      const byText = x.localeCompare(y);
      if (byText !== 0) return byText;
    } else if (difference !== 0) {
      return difference;
    }
  }
  return 0;
}

async function apiEntry(stemcell: Stemcell, baseUrl: string): Promise<Record<string, unknown>> {
  const needsDigests = stemcell.sha1 === undefined || stemcell.sha256 === undefined;
  const real = needsDigests ? await realDigests(stemcell) : undefined;
  const sha1 = stemcell.sha1 ?? real?.sha1 ?? '';
  const sha256 = stemcell.sha256 ?? real?.sha256 ?? '';
  return {
    name: stemcell.series,
    version: stemcell.version,
    regular: {
      url: `${baseUrl}/d/stemcells/${stemcell.series}/${stemcell.version}/${stemcell.fileName}${stemcell.urlQuery === undefined ? '' : `?${stemcell.urlQuery}`}`,
      size: stemcell.listedSize,
      md5: stemcell.md5,
      ...(sha1 === '' ? {} : { sha1 }),
      ...(sha256 === '' ? {} : { sha256 }),
    },
  };
}

// Computed once, on first listing, so publishing a 1 GB file stays instant.
function realDigests(stemcell: Stemcell): Promise<{ sha1: string; sha256: string }> {
  stemcell.realDigests ??= (async () => {
    const sha1 = createHash('sha1');
    const sha256 = createHash('sha256');
    for await (const chunk of readTarball(stemcell.tarball, 0, stemcell.servedSize)) {
      sha1.update(chunk);
      sha256.update(chunk);
    }
    return { sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
  })();
  return stemcell.realDigests;
}

async function serveTarball(
  req: IncomingMessage,
  res: ServerResponse,
  stemcell: Stemcell,
  faults: FakeBoshioFaults,
  served: Served,
): Promise<void> {
  const size = stemcell.servedSize;
  const validators = faults.validators ?? 'strong-etag';
  const etag = validators === 'weak-etag' ? `W/${stemcell.etag}` : stemcell.etag;
  const ifRange = header(req, 'if-range');
  // RFC 9110 13.1.5: a strong comparison with the current ETag, or an exact match of the Last-Modified date.
  const rangeApplies =
    !faults.ignoreRange &&
    (ifRange === undefined ||
      (validators === 'strong-etag' && ifRange === stemcell.etag) ||
      (!ifRange.startsWith('"') && !ifRange.startsWith('W/') && ifRange === stemcell.lastModified));
  const range = rangeApplies ? parseRange(req.headers.range, size) : undefined;
  const headers: Record<string, string | number> = {
    'content-type': 'application/x-gzip',
    'last-modified': stemcell.lastModified,
    'accept-ranges': 'bytes',
  };
  if (validators !== 'last-modified') headers.etag = etag;
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'content-range': `bytes */${size}`, 'content-length': 0 });
    res.end();
    return;
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? size; // exclusive
  if (range !== undefined) headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
  if (faults.trailingZeros === undefined) headers['content-length'] = faults.contentLength ?? end - start;
  res.writeHead(range === undefined ? 200 : 206, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }

  let cutAt: number | undefined;
  if (faults.truncateDownloadAt !== undefined && faults.truncateDownloadAt < end) {
    cutAt = Math.max(faults.truncateDownloadAt, start);
  }
  const dropAt = faults.dropConnectionOnceAt;
  if (dropAt !== undefined && dropAt >= start && dropAt < end && (cutAt === undefined || dropAt <= cutAt)) {
    delete faults.dropConnectionOnceAt;
    cutAt = dropAt;
  }
  const drops = faults.dropConnectionAt ?? [];
  const nextDrop = Math.min(...drops.filter((at) => at >= start && at < end));
  if (Number.isFinite(nextDrop) && (cutAt === undefined || nextDrop <= cutAt)) {
    drops.splice(drops.indexOf(nextDrop), 1);
    cutAt = nextDrop;
  }
  const extra = faults.trailingZeros ?? Math.max(0, (faults.contentLength ?? 0) - (end - start));
  const last = faults.contentLength === undefined ? end : Math.min(end, start + faults.contentLength);
  let body = readTarball(stemcell.tarball, start, cutAt ?? last);
  if (cutAt === undefined && extra > 0) body = followedByZeros(body, extra);
  if (faults.dribbleAfter !== undefined) body = dribbled(body, faults.dribbleAfter);
  if (faults.perConnectionBytesPerSecond !== undefined)
    body = throttled(body, faults.perConnectionBytesPerSecond);
  await sendBody(res, body, cutAt !== undefined, served);
}

async function* followedByZeros(chunks: AsyncIterable<Buffer>, count: number): AsyncGenerator<Buffer> {
  yield* chunks;
  for (let left = count; left > 0; left -= chunkSize) yield Buffer.alloc(Math.min(left, chunkSize));
}

/** `bytes` at full speed, then one byte per `intervalMs`: always some data, never the whole file soon. */
async function* dribbled(
  chunks: AsyncIterable<Buffer>,
  { bytes, intervalMs }: { bytes: number; intervalMs: number },
): AsyncGenerator<Buffer> {
  let sent = 0;
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.length;) {
      if (sent < bytes) {
        const part = chunk.subarray(at, at + (bytes - sent));
        yield part;
        sent += part.length;
        at += part.length;
      } else {
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
        yield chunk.subarray(at, at + 1);
        sent += 1;
        at += 1;
      }
    }
  }
}

/** At most `bytesPerSecond` on average since the first byte, in slices small enough to keep the pace even. */
async function* throttled(chunks: AsyncIterable<Buffer>, bytesPerSecond: number): AsyncGenerator<Buffer> {
  const slice = Math.max(16 * 1024, Math.floor(bytesPerSecond / 50));
  const start = performance.now();
  let sent = 0;
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.length; at += slice) {
      const part = chunk.subarray(at, at + slice);
      const due = start + ((sent + part.length) / bytesPerSecond) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      yield part;
      sent += part.length;
    }
  }
}

/** `bytes=N-`, `bytes=N-M` or `bytes=-S`; anything else (several ranges, other units) is ignored, as HTTP allows. */
function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Math.min(Number(last), size);
    return suffix === 0 ? 'unsatisfiable' : { start: size - suffix, end: size };
  }
  const start = Number(first);
  if (start >= size) return 'unsatisfiable';
  const end = last === '' ? size : Math.min(Number(last) + 1, size);
  return end <= start ? undefined : { start, end };
}

async function* readTarball(tarball: StemcellTarball, start: number, end: number): AsyncGenerator<Buffer> {
  if (end <= start) return;
  if (Buffer.isBuffer(tarball)) {
    for (let offset = start; offset < end; offset += chunkSize) {
      yield tarball.subarray(offset, Math.min(end, offset + chunkSize));
    }
    return;
  }
  for await (const chunk of createReadStream(tarball.path, {
    start,
    end: end - 1,
    highWaterMark: chunkSize,
  })) {
    yield chunk as Buffer;
  }
}

/** Streams with backpressure; with `thenDrop`, closes the connection after the bytes sent so far, short of the length. */
async function sendBody(
  res: ServerResponse,
  chunks: AsyncIterable<Buffer>,
  thenDrop: boolean,
  served: Served,
): Promise<void> {
  res.flushHeaders();
  served.active++;
  served.peak = Math.max(served.peak, served.active);
  try {
    for await (const chunk of chunks) {
      if (res.destroyed) return;
      served.bytes += chunk.length;
      if (!res.write(chunk)) await drainedOrClosed(res);
    }
  } finally {
    served.active--;
  }
  if (thenDrop) {
    // destroySoon flushes what was written, then closes: the client gets exactly the bytes before the cut.
    res.socket?.destroySoon();
  } else {
    res.end();
  }
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

function sendText(res: ServerResponse, status: number, text: string): void {
  send(res, status, 'text/plain; charset=utf-8', text);
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
