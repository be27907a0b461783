/**
 * HTTP download as one continuous byte stream: follows redirects over https only, never reads more than
 * the listed size, times out when the server stops sending or the whole download takes too long, and
 * resumes a dropped connection with a Range request when the server allows it.
 */

import { Readable } from 'node:stream';
import { HttpsRequiredError, displayUrl, fetchOverHttps } from './https-fetch.js';
import {
  ConnectionDropped,
  DownloadError,
  REDIRECT_TARGET_GONE,
  RequestWatch,
  bodyReader,
  checkListedSize,
  checkContentRange,
  contentLength,
  discardBody,
  resumeValidator,
  sameFile,
  toBuffer,
  unexpectedStatus,
} from './download-resume.js';
import type { DownloadContext, ResumeValidator } from './download-resume.js';
import { downloadRanged } from './download-segments.js';

export { DownloadError } from './download-resume.js';

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
   * Ranged GETs in flight at once after the first segment (default 6; 1 keeps one connection). Used only
   * when the listed size is at least two segments and the first answer (a GET of the first segment) is a
   * 206 with a strong validator.
   */
  connections?: number;
  /** Bytes per ranged GET (default 4 MiB): the memory held is at most `connections` segments. */
  segmentBytes?: number;
}

const DEFAULT_MAX_RESUMES = 5;
// Object stores cap one connection (tens of MB/s): each ranged GET loses some time to its request, so
// six at once reach well over three times the cap where four reached 2.5 to 3x (measured: --per-connection-mbps).
export const DEFAULT_CONNECTIONS = 6;
const DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024;
const HIGH_WATER_MARK = 4 * 1024 * 1024;
// A download slower than this on average is not going to finish usefully: 1.3 GB takes at most ~45 min.
const MIN_AVERAGE_BYTES_PER_SECOND = 512 * 1024;
// Room for connecting, redirects and resumes, whatever the size.
const DEADLINE_ALLOWANCE_MS = 5 * 60_000;

/** The overall deadline of a download of `size` bytes: 5 minutes plus the size at 512 KiB/s. */
export function downloadDeadlineMs(size: number): number {
  return DEADLINE_ALLOWANCE_MS + Math.ceil((size / MIN_AVERAGE_BYTES_PER_SECOND) * 1000);
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
      new SingleStream(context, options, lifetime).run().then(
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
  const context: DownloadContext = {
    url,
    timeoutMs: options.timeoutMs,
    maxResumes: options.maxResumes ?? DEFAULT_MAX_RESUMES,
    resumes: { count: 0 },
    rangeUrl: undefined,
    lifetime: lifetime.signal,
    onProgress: options.onProgress,
    push: (chunk) => stream.push(chunk),
    async waitForConsumer() {
      await new Promise<void>((resolve) => (wake = resolve));
      if (lifetime.signal.aborted) throw lifetime.signal.reason;
    },
  };
  if (options.signal?.aborted) onOuterAbort();
  else options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  return stream;
}

/**
 * The download over one connection at a time, resumed where it stopped. When the listed size allows going
 * parallel, the first GET asks for the first segment only and the ranged GETs fetch the rest: a GET of the
 * whole file, cut after one segment, has megabytes more in flight by then, received and thrown away.
 */
class SingleStream {
  private offset = 0;
  private validator: ResumeValidator | undefined;
  private total: number | undefined;
  // Where the first connection stops and the ranged GETs take over (undefined: one stream to the end).
  private parallelFrom: number | undefined;
  // Where the bytes of the answer being read end (exclusive): a 206 may hold less than was asked.
  private answerEnd: number | undefined;
  private readonly url: string;
  private readonly expectedSize: number | undefined;
  private readonly connections: number;
  private readonly segmentBytes: number;

  constructor(
    private readonly context: DownloadContext,
    private readonly options: DownloadOptions,
    private readonly lifetime: AbortController,
  ) {
    this.url = context.url;
    this.expectedSize = options.expectedSize;
    this.total = options.expectedSize;
    this.connections = options.connections ?? DEFAULT_CONNECTIONS;
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    const { expectedSize, connections, segmentBytes } = this;
    if (expectedSize !== undefined && connections > 1 && expectedSize >= 2 * segmentBytes)
      this.parallelFrom = segmentBytes;
  }

  async run(): Promise<void> {
    const { expectedSize } = this;
    const deadlineMs =
      this.options.deadlineMs ?? (expectedSize === undefined ? undefined : downloadDeadlineMs(expectedSize));
    const deadline =
      deadlineMs === undefined
        ? undefined
        : setTimeout(() => {
            const rate = expectedSize === undefined ? '' : ' (less than 512 KiB/s on average)';
            this.lifetime.abort(
              new DownloadError(
                `download of ${displayUrl(this.url)} did not finish within ${duration(deadlineMs)}${rate}: stopped at byte ${this.offset}${this.total === undefined ? '' : ` of ${this.total}`}; the next run tries again`,
                { transient: false },
              ),
            );
          }, deadlineMs);
    try {
      const signal = this.lifetime.signal;
      for (;;) {
        if (signal.aborted) throw signal.reason;
        const watch = new RequestWatch(signal, this.options.timeoutMs, this.url);
        try {
          if (await this.attempt(watch)) return;
        } catch (error) {
          if (signal.aborted) throw signal.reason;
          if (error instanceof HttpsRequiredError) throw new DownloadError(error.message, { cause: error });
          this.countResume(error, watch.stalled);
        } finally {
          watch.close();
        }
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  /**
   * One GET from the current offset; true when the download is complete, false to go on. Once the first
   * GET was redirected, the next go straight to where it ended, as the ranged GETs do.
   */
  private async attempt(watch: RequestWatch): Promise<boolean> {
    watch.arm();
    const target = this.context.rangeUrl ?? this.url;
    const { response, url: answeredBy } = await fetchOverHttps(target, {
      signal: watch.signal,
      headers: this.requestHeaders(),
    });
    if (target !== this.url && REDIRECT_TARGET_GONE.has(response.status)) {
      // A signed bucket URL that expired or was refused: back to the listed link and its redirect.
      await discardBody(response);
      this.context.rangeUrl = undefined;
      return false;
    }
    const skip = await this.accept(response, answeredBy);
    if (skip === undefined) return false;
    const from = this.offset;
    await this.read(response, watch, skip);
    return this.afterRead(watch, from);
  }

  /**
   * After one answer was read: the ranged GETs fetch the rest once the first segment is here; a short
   * answer that came whole (a server that caps ranges) is followed by a GET of the rest, no resume spent,
   * each holding at least a byte; anything else short of the end is a dropped connection.
   */
  private async afterRead(watch: RequestWatch, from: number): Promise<boolean> {
    const { total, validator } = this;
    if (
      this.parallelFrom !== undefined &&
      this.offset >= this.parallelFrom &&
      total !== undefined &&
      validator
    ) {
      const from = this.offset;
      this.parallelFrom = undefined;
      // The first connection's segment is all here: nothing more is due on it.
      watch.request.abort();
      const plan = { from, total, validator, segmentBytes: this.segmentBytes, connections: this.connections };
      this.offset = await downloadRanged(this.context, plan);
      // Short of the end: the server sent a whole file to a ranged GET; on over one connection, as without ranges.
      return this.offset >= total;
    }
    if (total !== undefined && this.offset < total) {
      if (this.answerEnd !== undefined && this.offset >= this.answerEnd && this.offset > from) return false;
      throw new ConnectionDropped(`connection closed at byte ${this.offset} of ${total}`);
    }
    return true;
  }

  /**
   * The Range of the next GET: up to the parallel start while the first connection has its segment to
   * fetch, to the end when resuming one stream; If-Range whenever the validator is known.
   */
  private requestHeaders(): Record<string, string> {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    const { offset, parallelFrom, validator } = this;
    if (parallelFrom !== undefined) headers.range = `bytes=${offset}-${parallelFrom - 1}`;
    else if (offset > 0 && validator) headers.range = `bytes=${offset}-`;
    if (headers.range !== undefined && validator) headers['if-range'] = validator.ifRange;
    return headers;
  }

  /**
   * Checks the answer against what was asked. Answers how many bytes of it the consumer already has (a
   * whole file sent to a Range request), or undefined when it was set aside and the file is to be asked
   * for again whole (a range without a strong validator that would keep the ranged GETs to one file).
   */
  private async accept(response: Response, answeredBy: string): Promise<number | undefined> {
    const { url, offset, expectedSize } = this;
    if (offset === 0) return this.acceptFirst(response, answeredBy);
    if (response.status === 206) {
      this.answered(checkContentRange(response, offset, this.total, url).end);
      return 0;
    }
    if (response.status === 200 && sameFile(response, this.validator)) {
      // The server ignored Range but sent the very same file: read on past what was delivered, to the end
      // (cut at the parallel start, the rest of it would be in flight for nothing).
      checkListedSize(response, expectedSize, url);
      this.answered(this.total);
      return offset;
    }
    await discardBody(response);
    throw unexpectedStatus(
      `resuming ${displayUrl(url)} at byte ${offset} answered HTTP ${response.status}, expected 206 (the file may have changed on the server); download again from the start`,
      response,
    );
  }

  /**
   * Where the answer's bytes end: an answer that runs to the end of the file is read to its end as one
   * stream, never cut (what is in flight would be thrown away).
   */
  private answered(end: number | undefined): void {
    this.answerEnd = end;
    if (end === undefined || end === this.total) this.parallelFrom = undefined;
  }

  /** The first answer sets the size, the validator and whether the ranged GETs fetch the rest. */
  private async acceptFirst(response: Response, answeredBy: string): Promise<number | undefined> {
    const { url, expectedSize } = this;
    if (response.status === 206 && this.parallelFrom !== undefined) {
      checkListedSize(response, expectedSize, url);
      const { end } = checkContentRange(response, 0, expectedSize, url);
      const validator = resumeValidator(response);
      if (validator === undefined && end !== expectedSize) {
        // Ranges, but nothing to tell one file from another: the whole file, over one stream, as before.
        await discardBody(response);
        this.parallelFrom = undefined;
        return undefined;
      }
      this.validator = validator;
      this.answered(end);
    } else if (response.ok) {
      checkListedSize(response, expectedSize, url);
      this.validator = resumeValidator(response);
      this.answered(undefined);
    } else {
      await discardBody(response);
      // A 416 to the first segment: the file is not the size listed (it changed), so worth another try.
      throw unexpectedStatus(
        `GET ${displayUrl(url)}${this.parallelFrom === undefined ? '' : ` bytes 0-${this.parallelFrom - 1}`} answered HTTP ${response.status} ${response.statusText}, expected ${this.parallelFrom === undefined ? 200 : 206}; check the URL or try again later`,
        response,
      );
    }
    this.total = expectedSize ?? contentLength(response);
    this.context.rangeUrl = answeredBy;
    return 0;
  }

  /** Passes the body on to the consumer, past `skip` bytes, never beyond the size or the parallel start. */
  private async read(response: Response, watch: RequestWatch, skip: number): Promise<void> {
    const reader = bodyReader(response, this.url);
    try {
      for (;;) {
        if (this.parallelFrom !== undefined && this.offset >= this.parallelFrom) break;
        watch.arm();
        const { done, value } = await reader.read();
        if (done) break;
        let chunk = toBuffer(value);
        if (skip > 0) {
          const skipped = Math.min(skip, chunk.length);
          skip -= skipped;
          chunk = chunk.subarray(skipped);
          if (chunk.length === 0) continue;
        }
        if (this.total !== undefined && this.offset + chunk.length > this.total) {
          throw new DownloadError(
            `GET ${displayUrl(this.url)} sent more than the ${this.total} bytes ${this.expectedSize === undefined ? 'it announced' : 'bosh.io lists'}; refused (not the listed file)`,
            { transient: false },
          );
        }
        if (this.answerEnd !== undefined && this.offset + chunk.length > this.answerEnd) {
          throw new DownloadError(
            `GET ${displayUrl(this.url)} sent more than the bytes up to ${this.answerEnd - 1} its Content-Range announced; refused (not the listed file)`,
            { transient: false },
          );
        }
        if (this.parallelFrom !== undefined) chunk = chunk.subarray(0, this.parallelFrom - this.offset);
        this.offset += chunk.length;
        this.context.onProgress?.(this.offset, this.total);
        if (!this.context.push(chunk)) {
          // The consumer is slow, not the server: no inactivity timeout while waiting.
          watch.pause();
          await this.context.waitForConsumer();
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** HTTP answers and protocol mismatches are final; dropped or stalled connections take one resume. */
  private countResume(error: unknown, stalled: boolean): void {
    const { context, offset, total } = this;
    const dropped = stalled || error instanceof ConnectionDropped || !(error instanceof DownloadError);
    if (!dropped) throw error;
    const canResume = offset === 0 || this.validator !== undefined;
    if (!canResume || context.resumes.count >= context.maxResumes) {
      const reason = stalled ? `no data for ${context.timeoutMs} ms` : (error as Error).message;
      const advice = canResume
        ? 'try again later'
        : 'the server sent no strong ETag or Last-Modified with Accept-Ranges, so it cannot be resumed; try again';
      throw new DownloadError(
        `download of ${displayUrl(this.url)} failed at byte ${offset}${total === undefined ? '' : ` of ${total}`} after ${context.resumes.count} resume(s): ${reason}; ${advice}`,
        // Stalled, dropped or unreachable: a later attempt starts over and may well succeed.
        { cause: error, transient: true },
      );
    }
    context.resumes.count += 1;
  }
}
