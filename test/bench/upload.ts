/**
 * Upload helpers for the benchmark: a request counter in the SDK pipeline, the upload floor (bare Put
 * Page of the non-zero ranges) and the sum of the page ranges the service reports.
 */

import { open } from 'node:fs/promises';
import type { Extent } from '../../src/vhd.js';
import type {
  ContainerClient,
  PageBlobClient,
  RequestPolicy,
  RequestPolicyFactory,
  WebResource,
} from '@azure/storage-blob';

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
 * The upload floor: create the page blob, then Put Page each planned write (the same non-zero ranges the
 * product writes), read from the file into a pooled buffer, `concurrency` at a time. No resume, no
 * listing, no metadata, no checks.
 */
export async function uploadFloor(
  container: ContainerClient,
  blobName: string,
  path: string,
  size: number,
  writes: readonly Extent[],
  concurrency: number,
): Promise<{ blob: PageBlobClient; bytesUploaded: number }> {
  const blob = container.getPageBlobClient(blobName);
  await blob.create(size);
  const file = await open(path, 'r');
  let next = 0;
  let bytesUploaded = 0;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(Math.max(...writes.map((w) => w.length)));
    for (let index = next++; index < writes.length; index = next++) {
      const { offset, length } = writes[index]!;
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      if (bytesRead !== length) throw new Error(`${path} is short at ${offset}`);
      await blob.uploadPages(buffer.subarray(0, length), offset, length);
      bytesUploaded += length;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, writes.length) }, () => worker()));
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
