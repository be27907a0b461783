/**
 * Loaded into a measured child process with `node --import`: counts what it sends to the Blob service
 * (through Node's `http.client.*` diagnostics channels, which the Azure SDK's Node HTTP client goes
 * through), takes CPU and peak-RSS readings at named marks, at the first and last page write, when the
 * blob is stamped with the verified image (the end of the overlapped extraction) and when it is marked
 * complete, samples what the memory holds (where the peak RSS goes), and writes them as JSON to
 * BENCH_PROBE_OUT when the process exits.
 */

import { subscribe } from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { writeFileSync } from 'node:fs';

export interface ProbeReading {
  /** Milliseconds since the Unix epoch. */
  at: number;
  /** User + system CPU seconds of the process so far. */
  cpuSeconds: number;
  /** Peak resident set size of the process so far, bytes. */
  maxRssBytes: number;
}

/** The process's memory at its highest sampled RSS, bytes (process.memoryUsage()). */
export interface MemoryPeak {
  at: number;
  rss: number;
  /** V8's heap, committed and in use. */
  heapTotal: number;
  heapUsed: number;
  /** Memory outside V8's heap that JavaScript objects hold; arrayBuffers (Buffers) is part of it. */
  external: number;
  arrayBuffers: number;
}

export interface ProbeReport {
  start: ProbeReading;
  marks: Record<string, ProbeReading>;
  firstPageWrite?: ProbeReading;
  lastPageWrite?: ProbeReading;
  /** The blob stamped with image_sha256 before it is complete: downloadAndExtract's end (with the overlap). */
  extracted?: ProbeReading & { putPages: number; putPageBytes: number };
  /** The blob marked complete (the answer to that metadata write). */
  completed?: ProbeReading;
  end: ProbeReading;
  /** Requests to the Blob service (every request whose path has a container). */
  blobRequests: number;
  putPages: number;
  putPageBytes: number;
  /** Sampled every 100 ms (reading the RSS every 20 ms cost 0.7 s of a 5 GiB run): between samples the RSS may peak higher (maxRssBytes is the kernel's peak). */
  memoryPeak?: MemoryPeak;
}

export function reading(): ProbeReading {
  const usage = process.resourceUsage();
  return {
    at: performance.timeOrigin + performance.now(),
    cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
    maxRssBytes: usage.maxRSS * 1024,
  };
}

const report: Omit<ProbeReport, 'end'> = {
  start: { at: performance.timeOrigin, cpuSeconds: 0, maxRssBytes: 0 },
  marks: {},
  blobRequests: 0,
  putPages: 0,
  putPageBytes: 0,
};

/** Records a reading under `name` (the original's phases call this). */
export function mark(name: string): void {
  report.marks[name] = reading();
}

const pageWrites = new WeakSet<ClientRequest>();
const completeMarks = new WeakSet<ClientRequest>();

/** A metadata write: `stamp` labels the blob with the verified image, `complete` marks it complete. */
function metadataWrite(request: ClientRequest): 'stamp' | 'complete' | undefined {
  if (request.method !== 'PUT' || !request.path.includes('comp=metadata')) return undefined;
  if (request.getHeader('x-ms-meta-upload_complete') === 'true') return 'complete';
  return request.getHeader('x-ms-meta-image_sha256') !== undefined ? 'stamp' : undefined;
}

function isPageWrite(request: ClientRequest): boolean {
  return (
    request.method === 'PUT' &&
    request.path.includes('comp=page') &&
    String(request.getHeader('x-ms-page-write') ?? '').toLowerCase() === 'update'
  );
}

subscribe('http.client.request.start', (message) => {
  const { request } = message as { request: ClientRequest };
  // The SDK talks to Azurite through Node's https; the download goes through fetch (undici), not here.
  report.blobRequests++;
  const metadata = metadataWrite(request);
  if (metadata === 'stamp') {
    report.extracted ??= { ...reading(), putPages: report.putPages, putPageBytes: report.putPageBytes };
  }
  if (metadata === 'complete') completeMarks.add(request);
  if (!isPageWrite(request)) return;
  pageWrites.add(request);
  report.putPages++;
  report.putPageBytes += Number(request.getHeader('content-length') ?? 0);
  report.firstPageWrite ??= reading();
});

subscribe('http.client.response.finish', (message) => {
  const { request } = message as { request: ClientRequest };
  if (pageWrites.has(request)) report.lastPageWrite = reading();
  if (completeMarks.has(request)) report.completed = reading();
});

/** One cheap RSS reading per tick; the breakdown only when it is a new high. */
const memorySampler = setInterval(() => {
  if (process.memoryUsage.rss() <= (report.memoryPeak?.rss ?? 0)) return;
  const { rss, heapTotal, heapUsed, external, arrayBuffers } = process.memoryUsage();
  report.memoryPeak = {
    at: performance.timeOrigin + performance.now(),
    rss,
    heapTotal,
    heapUsed,
    external,
    arrayBuffers,
  };
}, 100);
memorySampler.unref();

process.once('exit', () => {
  const out = process.env.BENCH_PROBE_OUT;
  if (out) writeFileSync(out, JSON.stringify({ ...report, end: reading() }));
});
