/**
 * Page blob: the sparse, parallel, resumable upload of a fixed VHD to Azure Storage.
 *
 * Only the VHD's non-zero extents are written (the service counts a written zero page as data),
 * neighbouring data is coalesced into writes of up to 4 MiB (a page blob takes ~500 requests/s),
 * and the blob's metadata says whose content it holds and whether every write landed, so a later
 * run either finds it complete, resumes it, or replaces it. An upload holds a lease on its blob while it
 * writes: a second writer can neither replace the blob meanwhile nor leave its pages in one it lost.
 */
import { open } from 'node:fs/promises';
import type {
  BlobGetPropertiesResponse,
  ContainerClient,
  PageBlobClient,
  PageBlobGetPageRangesResponseModel,
} from '@azure/storage-blob';
import type { Extent } from './vhd.js';
import { readVhdRange, vhdReadBuffers } from './vhd.js';
import { errorMessage } from './failures.js';
import { holdUploadLease, leaseGuard, replaceGuard } from './blob-lease.js';
import type { UploadLease } from './blob-lease.js';
import { PAGE_SIZE, endOf, planPageWrites, remainingWrites, totalLength } from './page-ranges.js';
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  PageBlobError,
  blobPropertiesIfExists,
  storageCalls,
} from './storage-calls.js';
import type { StorageCalls } from './storage-calls.js';

/**
 * Metadata on a VHD page blob. Keys are lowercase C# identifiers, as Azure metadata requires
 * (the service hands them back lowercase anyway):
 * - `stemcell_series`, `stemcell_version`: which stemcell the VHD comes from;
 * - `source_url`, `tarball_sha256`: the bosh.io tarball it was extracted from;
 * - `image_sha256`: SHA-256 of the stemcell's `image` file, the identity of the content (required);
 * - `vhd_size`: size of the VHD in bytes (set by the upload);
 * - `upload_complete`: `'true'` only once every write is done and verified (set by the upload).
 */
export interface VhdBlobMetadata {
  [key: string]: string;
}

export interface UploadSparseVhdRequest {
  container: ContainerClient;
  blobName: string;
  /** The local fixed VHD; read with positioned reads, never loaded whole. */
  vhdPath: string;
  /** Non-zero byte ranges of the VHD (see `readExtents`), footer included. */
  extents: Extent[];
  /** Size of the VHD in bytes: the page blob's size, a multiple of 512. */
  size: number;
  /** Identity of the content; must include `image_sha256`. */
  metadata: Record<string, string>;
  /** Writes in flight at once. */
  concurrency: number;
  /** Bytes sent by this call so far, of the bytes this call has to send. */
  onProgress?: (bytesUploaded: number, totalBytes: number) => void;
  /** Aborting leaves the blob incomplete and resumable. */
  signal?: AbortSignal;
  /**
   * Deadline of each Storage call (milliseconds, default 120 000): a call without an answer by then
   * (a half-open connection) fails with a transient PageBlobError instead of hanging the upload.
   */
  requestTimeoutMs?: number;
}

export interface UploadSparseVhdResult {
  blobUrl: string;
  /** Bytes sent by this call. */
  bytesUploaded: number;
  /** Bytes of data the complete blob holds (the extents, page-aligned). */
  dataBytes: number;
  /** The blob already held this content, complete: nothing was sent. */
  alreadyComplete: boolean;
  /** An incomplete upload of this content was continued. */
  resumed: boolean;
  /** Why an existing blob of that name was deleted and created again, when it was. */
  replacedBecause?: string;
}

const NAME_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const METADATA_KEY = /^[a-z_][a-z0-9_]*$/;
const METADATA_VALUE = /^[\x20-\x7e]*$/;

/**
 * `<series>/<version>/root.vhd`: one virtual folder per series and version, so listing a series
 * is a prefix query, the file keeps the name the stemcell gives it, and no part needs escaping.
 */
export function vhdBlobName(series: string, version: string): string {
  for (const [what, value] of [
    ['series', series],
    ['version', version],
  ] as const) {
    if (!NAME_SEGMENT.test(value)) {
      throw new Error(
        `Cannot name the VHD blob for stemcell ${what} '${value}': expected letters, digits, '.', '_' or '-', starting with a letter or digit.`,
      );
    }
  }
  return `${series}/${version}/root.vhd`;
}

/**
 * Uploads the VHD's extents to a page blob, doing only what the blob still lacks: nothing when it
 * already holds this content complete, the missing pages when it holds an incomplete upload of it,
 * everything (after deleting it) when it holds anything else.
 */
export async function uploadSparseVhd(request: UploadSparseVhdRequest): Promise<UploadSparseVhdResult> {
  const { container, blobName, size, signal } = request;
  const where = `page blob '${blobName}' in container '${container.containerName}'`;
  checkRequest(request, where);
  const metadata = contentMetadata(request.metadata, size, where);
  const planned = planPageWrites(request.extents);
  const dataBytes = totalLength(planned);
  const calls = storageCalls(where, signal, request.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);

  signal?.throwIfAborted();
  await calls.run('createIfNotExists (container)', (abortSignal) =>
    container.createIfNotExists({ abortSignal }),
  );
  const blob = container.getPageBlobClient(blobName);
  const found = await inspectBlob(blob, size, metadata['image_sha256']!, planned, calls);
  const result = { blobUrl: blob.url, bytesUploaded: 0, dataBytes, alreadyComplete: false, resumed: false };
  if (found.state === 'complete') {
    return { ...result, alreadyComplete: true };
  }

  let writes = planned;
  let replacedBecause: string | undefined;
  let etag: string | undefined;
  if (found.state === 'partial') {
    writes = remainingWrites(planned, found.written);
    etag = found.etag;
  } else {
    if (found.state === 'other') {
      replacedBecause = found.reason;
      await replaceGuard(where, 'changed', () =>
        calls.run('delete', (abortSignal) =>
          // Only the blob that was inspected: another upload's newer content is not ours to delete.
          blob.deleteIfExists({
            deleteSnapshots: 'include',
            conditions: { ifMatch: found.etag },
            abortSignal,
          }),
        ),
      );
    }
    // Created without the complete mark: until that is set, a later run resumes this upload. Never
    // over a blob that another upload created meanwhile: that would wipe the pages it wrote.
    const created = await replaceGuard(where, 'created', () =>
      calls.run('create', (abortSignal) =>
        blob.create(size, { metadata, conditions: { ifNoneMatch: '*' }, abortSignal }),
      ),
    );
    etag = created.etag;
  }

  // Every write and the complete mark carry this lease: a writer that replaced the blob meanwhile makes them
  // fail, so no blob ever holds pages of two uploads and the mark of one.
  const lease = await holdUploadLease(blob, etag, where, calls, request.requestTimeoutMs);
  let bytesUploaded: number;
  try {
    bytesUploaded = await writePages(blob, request, writes, where, calls, lease);
    await verifyDataBytes(blob, dataBytes, where, calls, lease.id);
    await leaseGuard(where, lease, () =>
      calls.run('setMetadata', (abortSignal) =>
        blob.setMetadata(
          { ...metadata, upload_complete: 'true' },
          { conditions: { leaseId: lease.id }, abortSignal },
        ),
      ),
    );
  } finally {
    await lease.release();
  }
  return {
    ...result,
    bytesUploaded,
    resumed: found.state === 'partial',
    ...(replacedBecause === undefined ? {} : { replacedBecause }),
  };
}

/** The blob of that name, when its metadata marks a complete upload of the image with that SHA-256. */
export async function findCompletedVhdBlob(
  container: ContainerClient,
  blobName: string,
  imageSha256: string,
  options?: { timeoutMs?: number },
): Promise<{ blobUrl: string; size: number; metadata: VhdBlobMetadata } | undefined> {
  const where = `page blob '${blobName}' in container '${container.containerName}'`;
  const calls = storageCalls(where, undefined, options?.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
  const blob = container.getPageBlobClient(blobName);
  const properties = await blobPropertiesIfExists(blob, calls);
  if (properties === undefined || properties.contentLength === undefined) return undefined;
  if (!isCompleteUpload(properties, imageSha256, properties.contentLength)) return undefined;
  return { blobUrl: blob.url, size: properties.contentLength, metadata: properties.metadata ?? {} };
}

type FoundBlob =
  | { state: 'absent' }
  | { state: 'complete' }
  | { state: 'partial'; written: Extent[]; etag: string | undefined }
  | { state: 'other'; reason: string; etag: string | undefined };

async function inspectBlob(
  blob: PageBlobClient,
  size: number,
  imageSha256: string,
  planned: readonly Extent[],
  calls: StorageCalls,
): Promise<FoundBlob> {
  const properties = await blobPropertiesIfExists(blob, calls);
  if (properties === undefined) return { state: 'absent' };
  const other = (reason: string): FoundBlob => ({ state: 'other', reason, etag: properties.etag });
  if (properties.blobType !== 'PageBlob') {
    return other(`it is a ${properties.blobType ?? 'blob of unknown type'}, not a page blob`);
  }
  if (properties.contentLength !== size) {
    return other(`it is ${properties.contentLength} bytes, the VHD ${size}`);
  }
  const blobImage = properties.metadata?.['image_sha256'];
  if (blobImage !== imageSha256) {
    return other(`it holds image_sha256 '${blobImage ?? 'none'}', not '${imageSha256}'`);
  }
  if (isCompleteUpload(properties, imageSha256, size)) return { state: 'complete' };
  const written = await listWrittenRanges(blob, calls);
  // Pages outside the extents are not this content: resuming would leave them (and fail the check).
  if (remainingWrites(written, planned).length > 0) {
    return other("it holds pages outside the VHD's data extents");
  }
  return { state: 'partial', written, etag: properties.etag };
}

function isCompleteUpload(properties: BlobGetPropertiesResponse, imageSha256: string, size: number): boolean {
  const metadata = properties.metadata ?? {};
  return (
    properties.blobType === 'PageBlob' &&
    properties.contentLength === size &&
    metadata['image_sha256'] === imageSha256 &&
    metadata['vhd_size'] === String(size) &&
    metadata['upload_complete'] === 'true'
  );
}

/**
 * Every written range of the blob, following continuation tokens (large blobs answer in pages);
 * each page is one call with its own deadline.
 */
async function listWrittenRanges(
  blob: PageBlobClient,
  calls: StorageCalls,
  leaseId?: string,
): Promise<Extent[]> {
  const ranges: Extent[] = [];
  let continuationToken: string | undefined;
  do {
    const token = continuationToken;
    const page = await calls.run('listPageRanges', async (abortSignal) => {
      const pages = blob
        .listPageRanges(0, undefined, { abortSignal, ...(leaseId ? { conditions: { leaseId } } : {}) })
        .byPage(token === undefined ? {} : { continuationToken: token });
      const next: IteratorResult<PageBlobGetPageRangesResponseModel, unknown> = await pages.next();
      await pages.return?.(undefined);
      return next.done ? undefined : next.value;
    });
    for (const range of page?.pageRange ?? []) {
      ranges.push({ offset: range.start, length: range.end - range.start + 1 });
    }
    continuationToken = page?.continuationToken || undefined;
  } while (continuationToken !== undefined);
  return ranges;
}

/** Sends the writes with at most `concurrency` in flight, each read from the file into pooled pieces. */
async function writePages(
  blob: PageBlobClient,
  request: UploadSparseVhdRequest,
  writes: readonly Extent[],
  where: string,
  calls: StorageCalls,
  lease: UploadLease,
): Promise<number> {
  const { vhdPath, size, concurrency, onProgress, signal } = request;
  const totalBytes = totalLength(writes);
  if (writes.length === 0) return 0;
  onProgress?.(0, totalBytes);

  const file = await open(vhdPath, 'r');
  const stopWorkers = new AbortController();
  const abortSignal = AbortSignal.any(
    signal === undefined ? [stopWorkers.signal, lease.lost] : [signal, stopWorkers.signal, lease.lost],
  );
  let next = 0;
  let uploaded = 0;
  let failure: { error: unknown; write: Extent | undefined } | undefined;

  const worker = async (pieces: Buffer[]): Promise<void> => {
    let write: Extent | undefined;
    try {
      while (!abortSignal.aborted && (write = writes[next++]) !== undefined) {
        const body = await readVhdRange(file, pieces, write, vhdPath);
        const { offset, length } = write;
        await leaseGuard(where, lease, () =>
          calls.run(
            `uploadPages (bytes ${offset}-${offset + length - 1})`,
            (callSignal) =>
              blob.uploadPages(body, offset, length, {
                conditions: { leaseId: lease.id },
                abortSignal: callSignal,
              }),
            abortSignal,
          ),
        );
        uploaded += write.length;
        onProgress?.(uploaded, totalBytes);
      }
    } catch (error) {
      // The first failure is the one to report; the others are the workers it stopped.
      failure ??= { error, write };
      stopWorkers.abort();
    }
  };

  try {
    const fileSize = (await file.stat()).size;
    if (fileSize !== size) {
      throw new Error(
        `Cannot upload ${vhdPath} to ${where}: the file is ${fileSize} bytes, the upload expects ${size}. Extract root.vhd again.`,
      );
    }
    const bufferSize = writes.reduce((largest, write) => Math.max(largest, write.length), 0);
    const workerCount = Math.min(concurrency, writes.length);
    await Promise.all(Array.from({ length: workerCount }, () => worker(vhdReadBuffers(bufferSize))));
  } finally {
    await file.close();
  }

  if (failure !== undefined) {
    // An abort by the caller surfaces as the SDK's AbortError, so callers can tell it apart.
    if (signal?.aborted) throw failure.error;
    throw uploadFailure(failure, lease, vhdPath, where);
  }
  // Aborted between writes: nothing failed, but the upload is not done.
  signal?.throwIfAborted();
  return uploaded;
}

/** The error a failed write reports: which bytes, why, and that a rerun resumes the upload. */
function uploadFailure(
  failure: { error: unknown; write: Extent | undefined },
  lease: UploadLease,
  vhdPath: string,
  where: string,
): Error {
  // A worker stopped by the lost lease reports an abort; the loss is the cause.
  const cause = lease.lost.aborted ? (lease.lost.reason as unknown) : failure.error;
  const bytes = failure.write ? ` bytes ${failure.write.offset}-${endOf(failure.write) - 1}` : '';
  const message = `Uploading${bytes} of ${vhdPath} to ${where} failed: ${errorMessage(cause).replace(/\.$/, '')}. The blob is left incomplete; run the upload again to resume it.`;
  const transient = (cause as { transient?: unknown } | undefined)?.transient;
  if (typeof transient === 'boolean') return new PageBlobError(message, { transient, cause });
  return new Error(message, { cause });
}

/** A cheap consistency check: the blob holds as many written bytes as the VHD has data. */
async function verifyDataBytes(
  blob: PageBlobClient,
  dataBytes: number,
  where: string,
  calls: StorageCalls,
  leaseId: string,
): Promise<void> {
  const writtenBytes = totalLength(await listWrittenRanges(blob, calls, leaseId));
  if (writtenBytes !== dataBytes) {
    throw new Error(
      `After the upload, ${where} reports ${writtenBytes} bytes of written pages, but the VHD has ${dataBytes} bytes of data. It is left incomplete; run the upload again to repair or replace it.`,
    );
  }
}

function checkRequest(request: UploadSparseVhdRequest, where: string): void {
  const { size, vhdPath, concurrency, extents } = request;
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
    throw new Error(
      `Cannot upload ${vhdPath} to ${where}: its size ${size} is not a positive multiple of ${PAGE_SIZE} bytes, which a page blob (and a fixed VHD) must be.`,
    );
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(
      `Cannot upload to ${where}: concurrency must be a whole number of at least 1, not ${concurrency}.`,
    );
  }
  for (const extent of extents) {
    if (!Number.isSafeInteger(extent.offset) || !Number.isSafeInteger(extent.length) || extent.offset < 0) {
      throw new RangeError(
        `Cannot upload ${vhdPath} to ${where}: extent ${JSON.stringify(extent)} is not a byte range.`,
      );
    }
    if (endOf(extent) > size) {
      throw new RangeError(
        `Cannot upload ${vhdPath} to ${where}: extent ${extent.offset}+${extent.length} lies beyond the VHD's ${size} bytes; extract root.vhd and its extents again.`,
      );
    }
  }
}

/** The caller's metadata, checked, with `vhd_size` set and without the complete mark. */
function contentMetadata(metadata: Record<string, string>, size: number, where: string): VhdBlobMetadata {
  const { upload_complete: _ignored, ...content } = metadata;
  for (const [key, value] of Object.entries(content)) {
    if (!METADATA_KEY.test(key)) {
      throw new Error(
        `Cannot upload to ${where}: metadata key '${key}' must be lowercase letters, digits and '_'.`,
      );
    }
    if (!METADATA_VALUE.test(value)) {
      throw new Error(
        `Cannot upload to ${where}: metadata '${key}' must be printable ASCII, got '${value}'.`,
      );
    }
  }
  if (!content['image_sha256']) {
    throw new Error(
      `Cannot upload to ${where}: metadata must include image_sha256, the identity of the content.`,
    );
  }
  return { ...content, vhd_size: String(size) };
}
