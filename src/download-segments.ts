/**
 * The parallel part of a download: the rest of the file as ranged GETs of one segment each, several in
 * flight, handed to the consumer in order as one stream.
 */

import { HttpsRequiredError, displayUrl, fetchOverHttps } from './https-fetch.js';
import {
  ConnectionDropped,
  DownloadError,
  REDIRECT_TARGET_GONE,
  RangesIgnored,
  RequestWatch,
  bodyReader,
  checkContentRange,
  discardBody,
  sameFile,
  toBuffer,
  unexpectedStatus,
} from './download-resume.js';
import type { DownloadContext, ResumeValidator } from './download-resume.js';

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

/** Where the ranged part of a download runs and how wide. */
export interface RangedPlan {
  from: number;
  total: number;
  validator: ResumeValidator;
  segmentBytes: number;
  connections: number;
}

/**
 * Bytes `from`..`total` as ranged GETs of `segmentBytes`, `connections` in flight, passed on in order:
 * segments ahead of the consumer wait in memory (at most `connections` of them). A dropped or stalled
 * segment resumes where it stopped, from the shared allowance of resumes. Answers the offset reached:
 * `total`, or less when a ranged GET came back whole (the server ignores ranges: go on with one stream).
 */
export async function downloadRanged(context: DownloadContext, plan: RangedPlan): Promise<number> {
  const { from, total, segmentBytes } = plan;
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
  const stopFetchers = () => fetchers.abort(context.lifetime.reason);
  context.lifetime.addEventListener('abort', stopFetchers, { once: true });
  let started = 0;
  const startNext = (): void => {
    const segment = segments[started++];
    if (!segment) return;
    void fetchSegment(context, segment, plan, fetchers.signal)
      .then(
        () => (segment.done = true),
        (error: unknown) => (segment.error = error instanceof Error ? error : new Error(String(error))),
      )
      .finally(() => segment.notify?.());
  };
  let offset = from;
  try {
    for (let i = 0; i < plan.connections; i++) startNext();
    for (const segment of segments) {
      for (;;) {
        const chunk = segment.chunks.shift();
        if (chunk !== undefined) {
          offset += chunk.length;
          context.onProgress?.(offset, total);
          if (!context.push(chunk)) await context.waitForConsumer();
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
    context.lifetime.removeEventListener('abort', stopFetchers);
    fetchers.abort(new DownloadError('ranged download ended'));
  }
}

/**
 * One segment's bytes into its queue, resumed where it stopped after a drop or stall. A short answer that
 * came whole (a server that caps ranges) is followed by a GET of the rest, no resume spent: each holds a byte.
 */
async function fetchSegment(
  context: DownloadContext,
  segment: Segment,
  plan: RangedPlan,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    if (signal.aborted) throw signal.reason;
    const watch = new RequestWatch(signal, context.timeoutMs, context.url);
    try {
      watch.arm();
      const response = await requestSegment(context, segment, plan.validator, watch.signal);
      if (response === undefined) continue;
      const answered = checkContentRange(response, segment.next, plan.total, context.url);
      await readSegment(context, segment, response, watch, answered.end);
      if (segment.next >= segment.end) return;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (error instanceof HttpsRequiredError) throw new DownloadError(error.message, { cause: error });
      countResume(context, segment, plan.total, error, watch.stalled);
    } finally {
      watch.close();
    }
  }
}

/**
 * The 206 answer to the segment's next bytes; undefined when the redirect target is gone and the listed
 * link must be asked again.
 */
async function requestSegment(
  context: DownloadContext,
  segment: Segment,
  validator: ResumeValidator,
  signal: AbortSignal,
): Promise<Response | undefined> {
  const { url } = context;
  const target = context.rangeUrl ?? url;
  const { response } = await fetchOverHttps(target, {
    signal,
    headers: {
      'accept-encoding': 'identity',
      range: `bytes=${segment.next}-${segment.end - 1}`,
      'if-range': validator.ifRange,
    },
  });
  if (target !== url && REDIRECT_TARGET_GONE.has(response.status)) {
    // A signed bucket URL that expired or was refused: back to the listed link and its redirect.
    await discardBody(response);
    context.rangeUrl = undefined;
    return undefined;
  }
  if (response.status === 200 && sameFile(response, validator)) {
    await discardBody(response);
    throw new RangesIgnored();
  }
  if (response.status !== 206) {
    await discardBody(response);
    throw unexpectedStatus(
      `GET ${displayUrl(url)} bytes ${segment.next}-${segment.end - 1} answered HTTP ${response.status}, expected 206 (the file may have changed on the server); download again from the start`,
      response,
    );
  }
  return response;
}

/**
 * Queues the answer's bytes on the segment, never past its end, nor past `answeredEnd` (where the answer's
 * Content-Range ends); a body short of either is a dropped connection.
 */
async function readSegment(
  context: DownloadContext,
  segment: Segment,
  response: Response,
  watch: RequestWatch,
  answeredEnd: number,
): Promise<void> {
  const from = segment.next;
  const reader = bodyReader(response, context.url);
  try {
    for (;;) {
      // An answer that runs past the segment (open-ended) is cut at its end: what follows is later segments'.
      if (answeredEnd > segment.end && segment.next >= segment.end) break;
      watch.arm();
      const { done, value } = await reader.read();
      if (done) break;
      if (segment.next + value.length > answeredEnd) {
        throw new DownloadError(
          `GET ${displayUrl(context.url)} sent more than the ${answeredEnd - from} bytes of range ${from}-${answeredEnd - 1} it announced; refused (not the listed file)`,
          { transient: false },
        );
      }
      const chunk = toBuffer(value).subarray(0, segment.end - segment.next);
      segment.next += chunk.length;
      segment.chunks.push(chunk);
      segment.notify?.();
    }
  } finally {
    reader.releaseLock();
  }
  if (segment.next < Math.min(answeredEnd, segment.end)) {
    throw new ConnectionDropped(`connection closed at byte ${segment.next} of ${segment.end}`);
  }
}

/** A dropped or stalled segment takes one resume from the shared allowance; anything else is final. */
function countResume(
  context: DownloadContext,
  segment: Segment,
  total: number,
  error: unknown,
  stalled: boolean,
): void {
  const dropped =
    stalled ||
    error instanceof ConnectionDropped ||
    !(error instanceof DownloadError || error instanceof RangesIgnored);
  if (!dropped) throw error;
  if (context.resumes.count >= context.maxResumes) {
    const reason = stalled ? `no data for ${context.timeoutMs} ms` : (error as Error).message;
    throw new DownloadError(
      `download of ${displayUrl(context.url)} failed at byte ${segment.next} of ${total} after ${context.resumes.count} resume(s): ${reason}; try again later`,
      { cause: error, transient: true },
    );
  }
  context.resumes.count += 1;
}
