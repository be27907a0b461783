/**
 * Upload helpers for the benchmark: a request counter in the SDK pipeline, the naive baseline
 * (every 4 MiB chunk written, zeros included) and the sum of the page ranges the service reports.
 */

import { open } from 'node:fs/promises';
import type {
  ContainerClient,
  PageBlobClient,
  RequestPolicy,
  RequestPolicyFactory,
  WebResource,
} from '@azure/storage-blob';

export const CHUNK = 4 * 1024 * 1024;

export interface RequestCounts {
  /** Every request sent to the Blob service. */
  requests: number;
  /** Put Page (`comp=page`, `x-ms-page-write: update`) requests. */
  putPages: number;
  /** Bytes of page data those Put Page requests carried. */
  putPageBytes: number;
}

/** Counts what the SDK sends, below the client (one count per attempt: retries count again). */
export class RequestCounter implements RequestPolicyFactory {
  counts: RequestCounts = { requests: 0, putPages: 0, putPageBytes: 0 };

  reset(): RequestCounts {
    const counts = this.counts;
    this.counts = { requests: 0, putPages: 0, putPageBytes: 0 };
    return counts;
  }

  create(nextPolicy: RequestPolicy): RequestPolicy {
    return {
      sendRequest: (request: WebResource) => {
        this.counts.requests++;
        const url = new URL(request.url);
        if (
          request.method === 'PUT' &&
          url.searchParams.get('comp') === 'page' &&
          request.headers.get('x-ms-page-write') === 'update'
        ) {
          this.counts.putPages++;
          this.counts.putPageBytes += rangeLength(
            request.headers.get('x-ms-range') ?? request.headers.get('range'),
          );
        }
        return nextPolicy.sendRequest(request);
      },
    };
  }
}

function rangeLength(header: string | undefined): number {
  const match = /^bytes=(\d+)-(\d+)$/.exec(header ?? '');
  if (!match) throw new Error(`Put Page without a byte range header: ${JSON.stringify(header)}`);
  return Number(match[2]) - Number(match[1]) + 1;
}

/**
 * What the JS SDK gives without a sparse helper: create the page blob, then write every 4 MiB
 * chunk of the file, zeros included, `concurrency` at a time.
 */
export async function uploadEveryChunk(
  container: ContainerClient,
  blobName: string,
  path: string,
  size: number,
  concurrency: number,
): Promise<{ blob: PageBlobClient; bytesUploaded: number }> {
  await container.createIfNotExists();
  const blob = container.getPageBlobClient(blobName);
  await blob.create(size);
  const file = await open(path, 'r');
  let next = 0;
  let bytesUploaded = 0;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(CHUNK);
    for (let offset = next; offset < size; offset = next) {
      next += CHUNK;
      const length = Math.min(CHUNK, size - offset);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await file.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) throw new Error(`${path} ends at ${offset + filled}, expected ${size} bytes`);
        filled += bytesRead;
      }
      await blob.uploadPages(buffer.subarray(0, length), offset, length);
      bytesUploaded += length;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, () => worker()));
  } finally {
    await file.close();
  }
  return { blob, bytesUploaded };
}

/** The bytes the service counts as written: the sum of listPageRanges. */
export async function pageRangeBytes(blob: PageBlobClient): Promise<{ bytes: number; ranges: number }> {
  let bytes = 0;
  let ranges = 0;
  for await (const range of blob.listPageRanges()) {
    bytes += range.end - range.start + 1;
    ranges++;
  }
  return { bytes, ranges };
}
