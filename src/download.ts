/**
 * HTTP download as one continuous byte stream: follows redirects over https only, never reads more than
 * the listed size, times out when the server stops sending or the whole download takes too long, and
 * resumes a dropped connection with a Range request when the server allows it.
 */

import { Readable } from 'node:stream';
import { isTransientStatus } from './failures.js';
import { HttpsRequiredError, displayUrl, fetchOverHttps } from './https-fetch.js';

export interface DownloadOptions {
  /** Abort a request that delivers no bytes for this long (milliseconds). */
  timeoutMs: number;
  signal?: AbortSignal;
  /** How many times a dropped or stalled connection is resumed (default 5). */
  maxResumes?: number;
  /**
   * The size the publisher lists, in bytes: no more is ever read, and a Content-Length or Content-Range
   * total that disagrees is refused.
   */
  expectedSize?: number;
  /** The longest the whole download may take, resumes included; default downloadDeadlineMs(expectedSize). */
  deadlineMs?: number;
  onProgress?: (bytes: number, total: number | undefined) => void;
  /**
   * Ranged GETs in flight at once after the first segment (default 4; 1 keeps one connection). Used only
   * when the first response offers ranges with a strong validator and the file is at least two segments.
   */
  connections?: number;
  /** Bytes per ranged GET (default 4 MiB): the memory held is at most `connections` segments. */
  segmentBytes?: number;
}

/**
 * A download failed: HTTP status, stalled or dropped connection, or a server that cannot resume.
 * `transient` means "try again later" (network trouble, stalls, 408/429/5xx, a file that changed
 * while resuming); otherwise the request itself is wrong (another 4xx) or the server misbehaves.
 */
export class DownloadError extends Error {
  override name = 'DownloadError';
  readonly status: number | undefined;
  readonly transient: boolean;
  constructor(message: string, options?: { status?: number; cause?: unknown; transient?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.status = options?.status;
    this.transient =
      options?.transient ?? (options?.status === undefined ? false : isTransientStatus(options.status));
  }
}

/** The body ended before the expected size: treated like any other dropped connection. */
class ConnectionDropped extends Error {}

/** A ranged GET answered with the same file whole: the server does not serve ranges after all. */
class RangesIgnored extends Error {}

const DEFAULT_MAX_RESUMES = 5;
// Object stores cap one connection (tens of MB/s): four ranged GETs at once reach about four times that.
const DEFAULT_CONNECTIONS = 4;
const DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024;
/** Answers of a redirect target (a signed bucket URL) that the listed link may well renew. */
const REDIRECT_TARGET_GONE = new Set([401, 403, 404, 410]);
const HIGH_WATER_MARK = 4 * 1024 * 1024;
// A download slower than this on average is not going to finish usefully: 1.3 GB takes at most ~45 min.
const MIN_AVERAGE_BYTES_PER_SECOND = 512 * 1024;
// Room for connecting, redirects and resumes, whatever the size.
const DEADLINE_ALLOWANCE_MS = 5 * 60_000;

/** The overall deadline of a download of `size` bytes: 5 minutes plus the size at 512 KiB/s. */
export function downloadDeadlineMs(size: number): number {
  return DEADLINE_ALLOWANCE_MS + Math.ceil((size / MIN_AVERAGE_BYTES_PER_SECOND) * 1000);
}

/** What a first response promised about resuming. */
interface ResumeValidator {
  /** Value for If-Range: a strong ETag, or a Last-Modified date that is a strong validator. */
  ifRange: string;
  /** The response header it came from, which a whole-file (200) answer must repeat to be the same file. */
  header: 'etag' | 'last-modified';
}

/**
 * RFC 9110 13.1.5: If-Range carries a strong ETag, or a date only when there is no entity tag at all and
 * the date is strong (the response's Date at least a second later). A weak ETag guards nothing.
 */
function resumeValidator(response: Response): ResumeValidator | undefined {
  const acceptRanges = response.headers.get('accept-ranges')?.toLowerCase();
  if (acceptRanges === undefined || acceptRanges === 'none') return undefined;
  const etag = response.headers.get('etag');
  if (etag !== null) return etag.startsWith('W/') ? undefined : { ifRange: etag, header: 'etag' };
  const lastModified = response.headers.get('last-modified');
  const modifiedAt = Date.parse(lastModified ?? '');
  const sentAt = Date.parse(response.headers.get('date') ?? '');
  if (lastModified === null || !(sentAt - modifiedAt >= 1000)) return undefined;
  return { ifRange: lastModified, header: 'last-modified' };
}

function contentLength(response: Response): number | undefined {
  const text = response.headers.get('content-length');
  const value = text === null ? NaN : Number(text);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** Checks a 206 answer: it must continue exactly at `offset` (and agree on the total, when known). */
function checkContentRange(response: Response, offset: number, total: number | undefined, url: string): void {
  const range = response.headers.get('content-range') ?? '';
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(range.trim());
  const start = match ? Number(match[1]) : NaN;
  const rangeTotal = match && match[3] !== '*' ? Number(match[3]) : undefined;
  if (start !== offset || (total !== undefined && rangeTotal !== undefined && rangeTotal !== total)) {
    throw new DownloadError(
      `resuming ${displayUrl(url)} at byte ${offset}: server answered Content-Range ${JSON.stringify(range)}, expected "bytes ${offset}-.../${total ?? '*'}"; download again from the start`,
      { status: response.status, transient: true },
    );
  }
}

/** A Content-Length that contradicts the size the publisher lists: the file is not the one listed. */
function checkListedSize(response: Response, expectedSize: number | undefined, url: string): void {
  const length = contentLength(response);
  if (expectedSize === undefined || length === undefined || length === expectedSize) return;
  throw new DownloadError(
    `GET ${displayUrl(url)} announces Content-Length ${length}, but bosh.io lists ${expectedSize} bytes; refused (not the listed file)`,
    { status: response.status, transient: false },
  );
}

function duration(ms: number): string {
  return ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 100) / 10} s`;
}

/**
 * GETs `url` as a Readable of bytes. A dropped or stalled connection is resumed with `Range` + `If-Range`
 * when the first response carried a strong validator and range support, so the consumer sees one
 * continuous stream; a server that ignores the Range and sends the same file whole is read past the bytes
 * already delivered. Otherwise it errors with a DownloadError.
 */
export function downloadStream(url: string, options: DownloadOptions): Readable {
  const lifetime = new AbortController();
  const maxResumes = options.maxResumes ?? DEFAULT_MAX_RESUMES;
  // One allowance for the whole download, whichever connection drops.
  const resumes = { count: 0 };
  const connections = options.connections ?? DEFAULT_CONNECTIONS;
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  // Where the first GET's redirects ended: ranged GETs go there straight, one round trip fewer each.
  let rangeUrl: string | undefined;
  const expectedSize = options.expectedSize;
  const deadlineMs =
    options.deadlineMs ?? (expectedSize === undefined ? undefined : downloadDeadlineMs(expectedSize));
  let started = false;
  let wake: (() => void) | undefined;
  const onOuterAbort = () => stream.destroy(options.signal?.reason as Error);
  // Whatever ends the download also ends a wait for the consumer.
  lifetime.signal.addEventListener('abort', () => wake?.(), { once: true });

  const stream = new Readable({
    highWaterMark: HIGH_WATER_MARK,
    read() {
      if (started) {
        wake?.();
        wake = undefined;
        return;
      }
      started = true;
      run().then(
        () => stream.push(null),
        (error: unknown) => stream.destroy(error as Error),
      );
    },
    destroy(error, callback) {
      options.signal?.removeEventListener('abort', onOuterAbort);
      lifetime.abort(error ?? new DownloadError(`download of ${displayUrl(url)} was cancelled`));
      wake?.();
      callback(error);
    },
  });
  if (options.signal?.aborted) onOuterAbort();
  else options.signal?.addEventListener('abort', onOuterAbort, { once: true });

  async function run(): Promise<void> {
    let offset = 0;
    let validator: ResumeValidator | undefined;
    let total = expectedSize;
    // Where the first connection stops and the ranged GETs take over (undefined: one stream to the end).
    let parallelFrom: number | undefined;
    const deadline =
      deadlineMs === undefined
        ? undefined
        : setTimeout(() => {
            const rate = expectedSize === undefined ? '' : ' (less than 512 KiB/s on average)';
            lifetime.abort(
              new DownloadError(
                `download of ${displayUrl(url)} did not finish within ${duration(deadlineMs)}${rate}: stopped at byte ${offset}${total === undefined ? '' : ` of ${total}`}; the next run tries again`,
                { transient: false },
              ),
            );
          }, deadlineMs);
    try {
      for (;;) {
        if (lifetime.signal.aborted) throw lifetime.signal.reason;
        const request = new AbortController();
        const stopRequest = () => request.abort(lifetime.signal.reason);
        lifetime.signal.addEventListener('abort', stopRequest, { once: true });
        let timer: NodeJS.Timeout | undefined;
        let stalled = false;
        const armTimer = () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            stalled = true;
            request.abort(new DownloadError(`no data from ${displayUrl(url)} for ${options.timeoutMs} ms`));
          }, options.timeoutMs);
        };
        try {
          armTimer();
          const headers: Record<string, string> = { 'accept-encoding': 'identity' };
          if (offset > 0 && validator) {
            headers.range = `bytes=${offset}-`;
            headers['if-range'] = validator.ifRange;
          }
          const { response, url: answeredBy } = await fetchOverHttps(url, {
            signal: request.signal,
            headers,
          });
          // Bytes of a whole-file answer to a Range request that the consumer has already.
          let skip = 0;
          if (offset === 0) {
            if (!response.ok) {
              await response.body?.cancel().catch(() => undefined);
              throw new DownloadError(
                `GET ${displayUrl(url)} answered HTTP ${response.status} ${response.statusText}, expected 200; check the URL or try again later`,
                { status: response.status },
              );
            }
            checkListedSize(response, expectedSize, url);
            total = expectedSize ?? contentLength(response);
            validator = resumeValidator(response);
            rangeUrl = answeredBy;
            if (
              validator !== undefined &&
              total !== undefined &&
              connections > 1 &&
              total >= 2 * segmentBytes
            )
              parallelFrom = segmentBytes;
          } else if (response.status === 206) {
            checkContentRange(response, offset, total, url);
          } else if (response.status === 200 && sameFile(response, validator)) {
            // The server ignored Range but sent the very same file: read on past what was delivered.
            checkListedSize(response, expectedSize, url);
            skip = offset;
          } else {
            await response.body?.cancel().catch(() => undefined);
            throw new DownloadError(
              `resuming ${displayUrl(url)} at byte ${offset} answered HTTP ${response.status}, expected 206 (the file may have changed on the server); download again from the start`,
              // Another file (2xx) or an unsatisfiable range (416): it changed, a new download may succeed.
              {
                status: response.status,
                transient: response.ok || response.status === 416 || isTransientStatus(response.status),
              },
            );
          }
          if (!response.body) {
            throw new DownloadError(`GET ${displayUrl(url)} returned no body`, { transient: true });
          }
          const reader = (response.body as ReadableStream<Uint8Array>).getReader();
          try {
            for (;;) {
              if (parallelFrom !== undefined && offset >= parallelFrom) break;
              armTimer();
              const { done, value } = await reader.read();
              if (done) break;
              let chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
              if (skip > 0) {
                const skipped = Math.min(skip, chunk.length);
                skip -= skipped;
                chunk = chunk.subarray(skipped);
                if (chunk.length === 0) continue;
              }
              if (total !== undefined && offset + chunk.length > total) {
                throw new DownloadError(
                  `GET ${displayUrl(url)} sent more than the ${total} bytes ${expectedSize === undefined ? 'it announced' : 'bosh.io lists'}; refused (not the listed file)`,
                  { transient: false },
                );
              }
              if (parallelFrom !== undefined) chunk = chunk.subarray(0, parallelFrom - offset);
              offset += chunk.length;
              options.onProgress?.(offset, total);
              if (!stream.push(chunk)) {
                // The consumer is slow, not the server: no inactivity timeout while waiting.
                clearTimeout(timer);
                await waitForConsumer();
              }
            }
          } finally {
            reader.releaseLock();
          }
          if (parallelFrom !== undefined && offset >= parallelFrom && total !== undefined && validator) {
            const from = offset;
            parallelFrom = undefined;
            // The first connection's part is done: close it now, or it keeps filling buffers meanwhile.
            request.abort();
            offset = await ranged(from, total, validator);
            if (offset >= total) return;
            // The server sent a whole file to a ranged GET: on over one connection, as without ranges.
            continue;
          }
          if (total !== undefined && offset < total) {
            throw new ConnectionDropped(`connection closed at byte ${offset} of ${total}`);
          }
          return;
        } catch (error) {
          if (lifetime.signal.aborted) throw lifetime.signal.reason;
          if (error instanceof HttpsRequiredError) throw new DownloadError(error.message, { cause: error });
          // HTTP answers and protocol mismatches are final; dropped or stalled connections are not.
          const dropped = stalled || error instanceof ConnectionDropped || !(error instanceof DownloadError);
          if (!dropped) throw error;
          const canResume = offset === 0 || validator !== undefined;
          if (!canResume || resumes.count >= maxResumes) {
            const reason = stalled ? `no data for ${options.timeoutMs} ms` : (error as Error).message;
            const advice = canResume
              ? 'try again later'
              : 'the server sent no strong ETag or Last-Modified with Accept-Ranges, so it cannot be resumed; try again';
            throw new DownloadError(
              `download of ${displayUrl(url)} failed at byte ${offset}${total === undefined ? '' : ` of ${total}`} after ${resumes.count} resume(s): ${reason}; ${advice}`,
              // Stalled, dropped or unreachable: a later attempt starts over and may well succeed.
              { cause: error, transient: true },
            );
          }
          resumes.count += 1;
        } finally {
          clearTimeout(timer);
          lifetime.signal.removeEventListener('abort', stopRequest);
          request.abort();
        }
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  async function waitForConsumer(): Promise<void> {
    await new Promise<void>((resolve) => (wake = resolve));
    if (lifetime.signal.aborted) throw lifetime.signal.reason;
  }

  /**
   * Bytes `from`..`total` as ranged GETs of `segmentBytes`, `connections` in flight, passed on in order:
   * segments ahead of the consumer wait in memory (at most `connections` of them). A dropped or stalled
   * segment resumes where it stopped, from the shared allowance of resumes. Answers the offset reached:
   * `total`, or less when a ranged GET came back whole (the server ignores ranges: go on with one stream).
   */
  async function ranged(from: number, total: number, validator: ResumeValidator): Promise<number> {
    const segments: Segment[] = [];
    for (let start = from; start < total; start += segmentBytes) {
      segments.push({
        start,
        end: Math.min(total, start + segmentBytes),
        next: start,
        chunks: [],
        done: false,
      });
    }
    const fetchers = new AbortController();
    const stopFetchers = () => fetchers.abort(lifetime.signal.reason);
    lifetime.signal.addEventListener('abort', stopFetchers, { once: true });
    let started = 0;
    const startNext = (): void => {
      const segment = segments[started++];
      if (!segment) return;
      void fetchSegment(segment, total, validator, fetchers.signal)
        .then(
          () => (segment.done = true),
          (error: unknown) => (segment.error = error instanceof Error ? error : new Error(String(error))),
        )
        .finally(() => segment.notify?.());
    };
    let offset = from;
    try {
      for (let i = 0; i < connections; i++) startNext();
      for (const segment of segments) {
        for (;;) {
          const chunk = segment.chunks.shift();
          if (chunk !== undefined) {
            offset += chunk.length;
            options.onProgress?.(offset, total);
            if (!stream.push(chunk)) await waitForConsumer();
            continue;
          }
          if (segment.error instanceof RangesIgnored) return offset;
          if (segment.error !== undefined) throw segment.error;
          if (segment.done) break;
          await new Promise<void>((resolve) => (segment.notify = resolve));
          segment.notify = undefined;
        }
        startNext();
      }
      return offset;
    } finally {
      lifetime.signal.removeEventListener('abort', stopFetchers);
      fetchers.abort(new DownloadError('ranged download ended'));
    }
  }

  /** One segment's bytes into its queue, resumed where it stopped after a drop or stall. */
  async function fetchSegment(
    segment: Segment,
    total: number,
    validator: ResumeValidator,
    signal: AbortSignal,
  ): Promise<void> {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const request = new AbortController();
      const stopRequest = () => request.abort(signal.reason);
      signal.addEventListener('abort', stopRequest, { once: true });
      let timer: NodeJS.Timeout | undefined;
      let stalled = false;
      const armTimer = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stalled = true;
          request.abort(new DownloadError(`no data from ${displayUrl(url)} for ${options.timeoutMs} ms`));
        }, options.timeoutMs);
      };
      try {
        armTimer();
        const target = rangeUrl ?? url;
        const { response } = await fetchOverHttps(target, {
          signal: request.signal,
          headers: {
            'accept-encoding': 'identity',
            range: `bytes=${segment.next}-${segment.end - 1}`,
            'if-range': validator.ifRange,
          },
        });
        if (target !== url && REDIRECT_TARGET_GONE.has(response.status)) {
          // A signed bucket URL that expired or was refused: back to the listed link and its redirect.
          await response.body?.cancel().catch(() => undefined);
          rangeUrl = undefined;
          continue;
        }
        if (response.status === 200 && sameFile(response, validator)) {
          await response.body?.cancel().catch(() => undefined);
          throw new RangesIgnored();
        }
        if (response.status !== 206) {
          await response.body?.cancel().catch(() => undefined);
          throw new DownloadError(
            `GET ${displayUrl(url)} bytes ${segment.next}-${segment.end - 1} answered HTTP ${response.status}, expected 206 (the file may have changed on the server); download again from the start`,
            {
              status: response.status,
              transient: response.ok || response.status === 416 || isTransientStatus(response.status),
            },
          );
        }
        checkContentRange(response, segment.next, total, url);
        if (!response.body) {
          throw new DownloadError(`GET ${displayUrl(url)} returned no body`, { transient: true });
        }
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        try {
          for (;;) {
            armTimer();
            const { done, value } = await reader.read();
            if (done) break;
            const chunk = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
            if (segment.next + chunk.length > segment.end) {
              throw new DownloadError(
                `GET ${displayUrl(url)} sent more than the ${segment.end - segment.start} bytes of range ${segment.start}-${segment.end - 1}; refused (not the listed file)`,
                { transient: false },
              );
            }
            segment.next += chunk.length;
            segment.chunks.push(chunk);
            segment.notify?.();
          }
        } finally {
          reader.releaseLock();
        }
        if (segment.next < segment.end) {
          throw new ConnectionDropped(`connection closed at byte ${segment.next} of ${segment.end}`);
        }
        return;
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (error instanceof HttpsRequiredError) throw new DownloadError(error.message, { cause: error });
        const dropped =
          stalled ||
          error instanceof ConnectionDropped ||
          !(error instanceof DownloadError || error instanceof RangesIgnored);
        if (!dropped) throw error;
        if (resumes.count >= maxResumes) {
          const reason = stalled ? `no data for ${options.timeoutMs} ms` : (error as Error).message;
          throw new DownloadError(
            `download of ${displayUrl(url)} failed at byte ${segment.next} of ${total} after ${resumes.count} resume(s): ${reason}; try again later`,
            { cause: error, transient: true },
          );
        }
        resumes.count += 1;
      } finally {
        clearTimeout(timer);
        signal.removeEventListener('abort', stopRequest);
        request.abort();
      }
    }
  }

  return stream;
}

/** A ranged GET's share of the file: its bytes queue here until the consumer reaches its start. */
interface Segment {
  start: number;
  /** Exclusive. */
  end: number;
  /** The next byte to fetch. */
  next: number;
  chunks: Buffer[];
  done: boolean;
  error?: Error;
  /** Wakes the consumer waiting on this segment. */
  notify?: (() => void) | undefined;
}

/** A whole-file answer to a Range request is the same file when it repeats the validator. */
function sameFile(response: Response, validator: ResumeValidator | undefined): boolean {
  return validator !== undefined && response.headers.get(validator.header) === validator.ifRange;
}
