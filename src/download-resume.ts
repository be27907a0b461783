/**
 * The rules of a resumable download shared by the single stream and the ranged segments: its errors,
 * the validator a first response offers for If-Range, the checks each answer must pass, and the
 * inactivity timer of one GET.
 */

import { isTransientStatus } from './failures.js';
import { displayUrl } from './https-fetch.js';

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
export class ConnectionDropped extends Error {}

/** A ranged GET answered with the same file whole: the server does not serve ranges after all. */
export class RangesIgnored extends Error {}

/** What a first response promised about resuming. */
export interface ResumeValidator {
  /** Value for If-Range: a strong ETag, or a Last-Modified date that is a strong validator. */
  ifRange: string;
  /** The response header it came from, which a whole-file (200) answer must repeat to be the same file. */
  header: 'etag' | 'last-modified';
}

/**
 * RFC 9110 13.1.5: If-Range carries a strong ETag, or a date only when there is no entity tag at all and
 * the date is strong (the response's Date at least a second later). A weak ETag guards nothing.
 */
export function resumeValidator(response: Response): ResumeValidator | undefined {
  // A 206 is itself proof of ranges, whether or not it repeats Accept-Ranges.
  const acceptRanges =
    response.status === 206 ? 'bytes' : response.headers.get('accept-ranges')?.toLowerCase();
  if (acceptRanges === undefined || acceptRanges === 'none') return undefined;
  const etag = response.headers.get('etag');
  if (etag !== null) return etag.startsWith('W/') ? undefined : { ifRange: etag, header: 'etag' };
  const lastModified = response.headers.get('last-modified');
  const modifiedAt = Date.parse(lastModified ?? '');
  const sentAt = Date.parse(response.headers.get('date') ?? '');
  if (lastModified === null || !(sentAt - modifiedAt >= 1000)) return undefined;
  return { ifRange: lastModified, header: 'last-modified' };
}

export function contentLength(response: Response): number | undefined {
  const text = response.headers.get('content-length');
  const value = text === null ? NaN : Number(text);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** What a 206 answer holds: bytes `start` up to `end` (exclusive) of a file of `total` (undefined for `*`). */
export interface AnsweredRange {
  start: number;
  end: number;
  total: number | undefined;
}

/** A 206 answer's `Content-Range: bytes first-last/total`; undefined when malformed or empty. */
function contentRange(response: Response): AnsweredRange | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec((response.headers.get('content-range') ?? '').trim());
  if (match === null) return undefined;
  const range = {
    start: Number(match[1]),
    end: Number(match[2]) + 1,
    total: match[3] === '*' ? undefined : Number(match[3]),
  };
  if (range.end <= range.start || (range.total !== undefined && range.end > range.total)) return undefined;
  return range;
}

/**
 * Checks a 206 answer: it must start exactly at `offset`, hold at least one byte and agree on the total,
 * when known. Answers the range it holds, which may end short of what was asked (a server that caps ranges).
 */
export function checkContentRange(
  response: Response,
  offset: number,
  total: number | undefined,
  url: string,
): AnsweredRange {
  const header = response.headers.get('content-range') ?? '';
  const range = contentRange(response);
  if (
    range === undefined ||
    range.start !== offset ||
    (total !== undefined && range.total !== undefined && range.total !== total)
  ) {
    // The first GET asks for a range too: "resuming" would mislead there.
    const asked = offset === 0 ? `GET ${displayUrl(url)}` : `resuming ${displayUrl(url)} at byte ${offset}`;
    throw new DownloadError(
      `${asked}: server answered Content-Range ${JSON.stringify(header)}, expected "bytes ${offset}-.../${total ?? '*'}"; ${offset === 0 ? 'try again later' : 'download again from the start'}`,
      { status: response.status, transient: true },
    );
  }
  return range;
}

/**
 * A Content-Length (of a 206, the Content-Range's total) that contradicts the size the publisher lists:
 * the file is not the one listed.
 */
export function checkListedSize(response: Response, expectedSize: number | undefined, url: string): void {
  const ranged = response.status === 206;
  const length = ranged ? contentRange(response)?.total : contentLength(response);
  if (expectedSize === undefined || length === undefined || length === expectedSize) return;
  throw new DownloadError(
    `GET ${displayUrl(url)} announces ${ranged ? 'a Content-Range of' : 'Content-Length'} ${length}${ranged ? ' bytes' : ''}, but bosh.io lists ${expectedSize} bytes; refused (not the listed file)`,
    { status: response.status, transient: false },
  );
}

/** A whole-file answer to a Range request is the same file when it repeats the validator. */
export function sameFile(response: Response, validator: ResumeValidator | undefined): boolean {
  return validator !== undefined && response.headers.get(validator.header) === validator.ifRange;
}

/** An answer that is not the bytes asked for: transient when the file changed or the server is busy. */
export function unexpectedStatus(message: string, response: Response): DownloadError {
  return new DownloadError(message, {
    status: response.status,
    // Another file (2xx) or an unsatisfiable range (416): it changed, a new download may succeed.
    transient: response.ok || response.status === 416 || isTransientStatus(response.status),
  });
}

/** Answers of a redirect target (a signed bucket URL) that the listed link may well renew. */
export const REDIRECT_TARGET_GONE = new Set([401, 403, 404, 410]);

/** Discards a body that will not be read, so the connection is freed. */
export async function discardBody(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

/**
 * One GET's own abort and inactivity timeout: it aborts the request when `parent` aborts or no bytes
 * arrive for `timeoutMs`, and remembers that it stalled.
 */
export class RequestWatch {
  readonly request = new AbortController();
  stalled = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly stop = () => this.request.abort(this.parent.reason);

  constructor(
    private readonly parent: AbortSignal,
    private readonly timeoutMs: number,
    private readonly url: string,
  ) {
    parent.addEventListener('abort', this.stop, { once: true });
  }

  get signal(): AbortSignal {
    return this.request.signal;
  }

  /** Starts (or restarts) the inactivity timeout: called before each wait for the server. */
  arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.request.abort(new DownloadError(`no data from ${displayUrl(this.url)} for ${this.timeoutMs} ms`));
    }, this.timeoutMs);
  }

  /** No timeout while the consumer, not the server, is slow. */
  pause(): void {
    clearTimeout(this.timer);
  }

  close(): void {
    clearTimeout(this.timer);
    this.parent.removeEventListener('abort', this.stop);
    this.request.abort();
  }
}

/** What the single stream and the segment fetchers share of one download. */
export interface DownloadContext {
  url: string;
  timeoutMs: number;
  maxResumes: number;
  /** One allowance for the whole download, whichever connection drops. */
  resumes: { count: number };
  /**
   * Where the first GET's redirects ended: resumes and ranged GETs go there straight, one round trip fewer
   * each; undefined again once it refuses them (an expired signed URL).
   */
  rangeUrl: string | undefined;
  /** Ends with the download: its abort stops every request. */
  lifetime: AbortSignal;
  onProgress?: ((bytes: number, total: number | undefined) => void) | undefined;
  /** Hands bytes to the consumer; false when it wants no more for now. */
  push(chunk: Buffer): boolean;
  /** Waits until the consumer reads again (or the download ends). */
  waitForConsumer(): Promise<void>;
}

/** A fetch body as a reader of Buffers. */
export function bodyReader(response: Response, url: string): ReadableStreamDefaultReader<Uint8Array> {
  if (!response.body) {
    throw new DownloadError(`GET ${displayUrl(url)} returned no body`, { transient: true });
  }
  return (response.body as ReadableStream<Uint8Array>).getReader();
}

export function toBuffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
