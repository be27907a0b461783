/**
 * HTTP download as one continuous byte stream: follows redirects, times out when the server stops
 * sending, and resumes a dropped connection with a Range request when the server allows it.
 */

import { Readable } from 'node:stream';
import { isTransientStatus } from './failures.js';

export interface DownloadOptions {
  /** Abort a request that delivers no bytes for this long (milliseconds). */
  timeoutMs: number;
  signal?: AbortSignal;
  /** How many times a dropped or stalled connection is resumed (default 5). */
  maxResumes?: number;
  onProgress?: (bytes: number, total: number | undefined) => void;
}

/**
 * A download failed: HTTP status, stalled or dropped connection, or a server that cannot resume.
 * `transient` means "try again later" (network trouble, stalls, 408/429/5xx, a file that changed
 * while resuming); otherwise the request itself is wrong (another 4xx).
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

/** The body ended before Content-Length: treated like any other dropped connection. */
class ConnectionDropped extends Error {}

const DEFAULT_MAX_RESUMES = 5;
const HIGH_WATER_MARK = 4 * 1024 * 1024;

/** The URL without query string or fragment: signed URLs must not end up in logs. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return url.replace(/[?#].*$/, '');
  }
}

/** What a first response promised about resuming. */
interface ResumeValidator {
  /** Value for If-Range: a strong ETag. */
  ifRange: string;
}

function resumeValidator(response: Response): ResumeValidator | undefined {
  const etag = response.headers.get('etag');
  const acceptRanges = response.headers.get('accept-ranges')?.toLowerCase();
  // A weak ETag cannot guard a byte range; without one a resumed body could belong to a newer file.
  if (!etag || etag.startsWith('W/') || acceptRanges === 'none' || acceptRanges === undefined)
    return undefined;
  return { ifRange: etag };
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

/**
 * GETs `url` as a Readable of bytes. A dropped or stalled connection is resumed with
 * `Range` + `If-Range` when the first response carried a strong ETag and range support, so
 * the consumer sees one continuous stream; otherwise it errors with a DownloadError.
 */
export function downloadStream(url: string, options: DownloadOptions): Readable {
  const lifetime = new AbortController();
  const maxResumes = options.maxResumes ?? DEFAULT_MAX_RESUMES;
  let started = false;
  let wake: (() => void) | undefined;
  const onOuterAbort = () => stream.destroy(options.signal?.reason as Error);

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
    let resumes = 0;
    let validator: ResumeValidator | undefined;
    let total: number | undefined;
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
        const response = await fetch(url, { redirect: 'follow', signal: request.signal, headers });
        if (offset === 0) {
          if (!response.ok) {
            await response.body?.cancel().catch(() => undefined);
            throw new DownloadError(
              `GET ${displayUrl(url)} answered HTTP ${response.status} ${response.statusText}, expected 200; check the URL or try again later`,
              { status: response.status },
            );
          }
          total = contentLength(response);
          validator = resumeValidator(response);
        } else if (response.status !== 206) {
          await response.body?.cancel().catch(() => undefined);
          throw new DownloadError(
            `resuming ${displayUrl(url)} at byte ${offset} answered HTTP ${response.status}, expected 206 (the file may have changed on the server); download again from the start`,
            // A whole file (2xx) or an unsatisfiable range (416): it changed, a new download may succeed.
            {
              status: response.status,
              transient: response.ok || response.status === 416 || isTransientStatus(response.status),
            },
          );
        } else {
          checkContentRange(response, offset, total, url);
        }
        if (!response.body) {
          throw new DownloadError(`GET ${displayUrl(url)} returned no body`, { transient: true });
        }
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        try {
          for (;;) {
            armTimer();
            const { done, value } = await reader.read();
            if (done) break;
            offset += value.byteLength;
            options.onProgress?.(offset, total);
            if (!stream.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength))) {
              // The consumer is slow, not the server: no inactivity timeout while waiting.
              clearTimeout(timer);
              await new Promise<void>((resolve) => (wake = resolve));
              if (lifetime.signal.aborted) throw lifetime.signal.reason;
            }
          }
        } finally {
          reader.releaseLock();
        }
        if (total !== undefined && offset < total) {
          throw new ConnectionDropped(`connection closed at byte ${offset} of ${total}`);
        }
        return;
      } catch (error) {
        if (lifetime.signal.aborted) throw lifetime.signal.reason;
        // HTTP answers and protocol mismatches are final; dropped or stalled connections are not.
        const dropped = stalled || error instanceof ConnectionDropped || !(error instanceof DownloadError);
        if (!dropped) throw error;
        const canResume = offset === 0 || validator !== undefined;
        if (!canResume || resumes >= maxResumes) {
          const reason = stalled ? `no data for ${options.timeoutMs} ms` : (error as Error).message;
          const advice = canResume
            ? 'try again later'
            : 'the server sent no strong ETag and Accept-Ranges, so it cannot be resumed; try again';
          throw new DownloadError(
            `download of ${displayUrl(url)} failed at byte ${offset}${total === undefined ? '' : ` of ${total}`} after ${resumes} resume(s): ${reason}; ${advice}`,
            // Stalled, dropped or unreachable: a later attempt starts over and may well succeed.
            { cause: error, transient: true },
          );
        }
        resumes += 1;
      } finally {
        clearTimeout(timer);
        lifetime.signal.removeEventListener('abort', stopRequest);
        request.abort();
      }
    }
  }

  return stream;
}
