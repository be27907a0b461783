/**
 * The overlapped upload: while downloadAndExtract writes root.vhd, each run of its data goes to the page
 * blob as soon as it is on disk, so the uploadVhd step after it normally finds every page there and only
 * verifies and completes the blob. Best effort: a Storage failure stops it (uploadVhd sends the rest),
 * never the extraction.
 *
 * What keeps a restart safe: the blob is created before its first page, labelled with what is known then
 * (the tarball digest bosh.io lists, the source, the VHD size) but without `image_sha256`, which is
 * stamped only once the tarball and image are verified, by the attempt that created the blob, under the
 * lease it held for every page. pageblob.ts resumes only a blob whose `image_sha256` matches, so an
 * unverified blob (a killed attempt's) is replaced, never resumed; a failed extraction deletes its blob.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { ContainerClient, PageBlobClient } from '@azure/storage-blob';
import { holdUploadLease, leaseGuard, replaceGuard } from './blob-lease.js';
import type { UploadLease } from './blob-lease.js';
import { errorMessage } from './failures.js';
import { MAX_PAGE_WRITE, endOf } from './page-ranges.js';
import type { Logger } from './services.js';
import type { ExtractionFollower } from './stemcell.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, blobPropertiesIfExists, storageCalls } from './storage-calls.js';
import type { StorageCalls } from './storage-calls.js';
import type { Extent } from './vhd.js';
import { readVhdRange, vhdReadBuffers } from './vhd.js';

/**
 * The most page writes in flight while extracting, whatever BASM_UPLOAD_CONCURRENCY allows: their buffers
 * (4 MiB each) add to the extraction's live memory, where uploadVhd's reuse what the extraction freed (8 in
 * flight took the 512 MiB bench's peak RSS about 20 MiB higher than 4). Four writes of 4 MiB keep a page
 * blob at its 60 MiB/s up to about 250 ms per write, more than the extraction yields on one vCPU.
 */
export const OVERLAP_MAX_WRITES = 4;

export interface OverlappedUploadOptions {
  container: ContainerClient;
  blobName: string;
  /** Known before the first page: series, version, source URL and the tarball digest bosh.io lists. */
  label: Record<string, string>;
  /** Page writes in flight at once. */
  concurrency: number;
  /** Deadline of each Storage call (milliseconds, default 120 000). */
  requestTimeoutMs?: number;
  log: Pick<Logger, 'info' | 'warn'>;
  /** Starts every log line: `<series> <version>`. */
  subject: string;
  /** Bytes sent so far, once as the first write goes and once at the end, of the VHD's data when known. */
  onProgress?: (bytes: number, total: number | undefined) => void;
}

/** The blob this attempt created, and what it writes with once it holds the lease. */
interface OwnBlob {
  blob: PageBlobClient;
  etag: string | undefined;
  lease?: UploadLease;
}

export class OverlappedUpload implements ExtractionFollower {
  readonly #options: OverlappedUploadOptions;
  readonly #where: string;
  /** How log lines start. */
  readonly #say: string;
  /** Creating, stamping and deleting the blob: each call under its deadline only, so it is seen through. */
  readonly #setupCalls: StorageCalls;
  /** Page writes: also stopped at once when the overlap stops. */
  readonly #writeCalls: StorageCalls;
  readonly #stop = new AbortController();
  #path = '';
  #size = 0;
  #opening: Promise<void> | undefined;
  #own: OwnBlob | undefined;
  #file: Promise<FileHandle> | undefined;
  /** Writes waiting for a slot (offset order), and the data run not yet a whole write. */
  readonly #queue: Extent[] = [];
  #next = 0;
  #pending: Extent | undefined;
  #inFlight = 0;
  /** Each write's buffers, reused by the next one: at most `concurrency` sets of 4 MiB. */
  readonly #buffers: Buffer[][] = [];
  #wake: (() => void) | undefined;
  #stopped = false;
  #ended = false;
  /** The first write went. */
  #writing = false;
  /** Bytes of page writes Storage accepted. */
  bytesSent = 0;
  /** The blob was stamped with the verified image's `image_sha256`. */
  stamped = false;

  constructor(options: OverlappedUploadOptions) {
    this.#options = options;
    this.#where = `page blob '${options.blobName}' in container '${options.container.containerName}'`;
    this.#say = `${options.subject}: ${options.blobName}:`;
    const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#setupCalls = storageCalls(this.#where, undefined, timeoutMs);
    this.#writeCalls = storageCalls(this.#where, this.#stop.signal, timeoutMs);
  }

  start({ path, size }: { path: string; size: number }): void {
    this.#path = path;
    this.#size = size;
    this.#opening = this.#open().catch((error: unknown) => this.#halt(error));
  }

  data(run: Extent): void {
    if (this.#stopped || this.#ended) return;
    const pending = this.#pending;
    if (pending !== undefined && endOf(pending) === run.offset) pending.length += run.length;
    else {
      if (pending !== undefined) this.#queue.push(pending);
      this.#pending = { ...run };
    }
    // Whole 4 MiB writes go as soon as they are on disk; the rest waits for the data that may join it.
    for (let rest = this.#pending!; rest.length >= MAX_PAGE_WRITE;) {
      this.#queue.push({ offset: rest.offset, length: MAX_PAGE_WRITE });
      rest.offset += MAX_PAGE_WRITE;
      rest.length -= MAX_PAGE_WRITE;
      if (rest.length === 0) this.#pending = undefined;
    }
    this.#pump();
  }

  async verified({ imageSha256, dataBytes }: { imageSha256: string; dataBytes: number }): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#pending !== undefined) this.#queue.push(this.#pending);
    this.#pending = undefined;
    this.#pump();
    await this.#opening;
    await this.#drained();
    if (this.bytesSent > 0) this.#options.onProgress?.(this.bytesSent, dataBytes);
    const own = this.#own;
    const lease = own?.lease;
    if (own === undefined || lease === undefined) return this.#close();
    try {
      if (lease.lost.aborted) throw lease.lost.reason;
      // Under the lease that every page was written with: a blob another writer took over is not stamped.
      const metadata = { ...this.#labels(), image_sha256: imageSha256 };
      await leaseGuard(this.#where, lease, () =>
        this.#setupCalls.run('setMetadata', (abortSignal) =>
          own.blob.setMetadata(metadata, { conditions: { leaseId: lease.id }, abortSignal }),
        ),
      );
      this.stamped = true;
      this.#options.log.info(
        `${this.#say} ${this.bytesSent} bytes sent while extracting; labelled with the verified image`,
      );
    } catch (error) {
      this.#halt(error);
    }
    await this.#close();
  }

  async failed(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopped = true;
    this.#stop.abort();
    await this.#opening;
    await this.#drained();
    const own = this.#own;
    if (own !== undefined) {
      const conditions = own.lease ? { leaseId: own.lease.id } : { ifMatch: own.etag };
      try {
        await this.#setupCalls.run('delete', (abortSignal) =>
          own.blob.deleteIfExists({ deleteSnapshots: 'include', conditions, abortSignal }),
        );
        this.#options.log.info(`${this.#say} deleted, the extraction that was writing it failed`);
      } catch (error) {
        this.#options.log.warn(
          `${this.#say} could not delete it after the extraction failed (${errorMessage(error)}); it holds no verified image, the next upload replaces it`,
        );
      }
    }
    await this.#close();
  }

  /** Creates the blob, labelled, and takes its lease; leaves alone a blob that holds a verified image. */
  async #open(): Promise<void> {
    const { container, blobName } = this.#options;
    const calls = this.#setupCalls;
    await calls.run('createIfNotExists (container)', (abortSignal) =>
      container.createIfNotExists({ abortSignal }),
    );
    const blob = container.getPageBlobClient(blobName);
    const found = await blobPropertiesIfExists(blob, calls);
    const image = found?.metadata?.['image_sha256'];
    if (image !== undefined) {
      // Complete or resumable: whether it is this image is known only at the end; uploadVhd decides then.
      this.#stopped = true;
      this.#options.log.info(`${this.#say} holds image ${image}; nothing sent while extracting`);
      return;
    }
    if (found !== undefined) {
      // No image_sha256: pages of an attempt that never verified them (or not the mirror's): never resumed.
      await replaceGuard(this.#where, 'changed', () =>
        calls.run('delete', (abortSignal) =>
          blob.deleteIfExists({
            deleteSnapshots: 'include',
            conditions: { ifMatch: found.etag },
            abortSignal,
          }),
        ),
      );
    }
    const created = await replaceGuard(this.#where, 'created', () =>
      calls.run('create', (abortSignal) =>
        blob.create(this.#size, { metadata: this.#labels(), conditions: { ifNoneMatch: '*' }, abortSignal }),
      ),
    );
    const own: OwnBlob = { blob, etag: created.etag };
    this.#own = own;
    if (this.#stopped) return;
    own.lease = await holdUploadLease(blob, created.etag, this.#where, calls, this.#options.requestTimeoutMs);
    own.lease.lost.addEventListener('abort', () => this.#halt(own.lease?.lost.reason));
    this.#pump();
  }

  #labels(): Record<string, string> {
    return { ...this.#options.label, vhd_size: String(this.#size) };
  }

  /** Starts queued writes while slots are free. */
  #pump(): void {
    const lease = this.#own?.lease;
    if (lease === undefined || this.#stopped) return;
    while (this.#inFlight < this.#options.concurrency && this.#next < this.#queue.length) {
      const write = this.#queue[this.#next++]!;
      this.#inFlight++;
      void this.#send(write, lease).finally(() => {
        this.#inFlight--;
        this.#pump();
        this.#wake?.();
      });
    }
    if (this.#next === this.#queue.length) this.#queue.length = this.#next = 0;
  }

  async #send(write: Extent, lease: UploadLease): Promise<void> {
    const blob = this.#own!.blob;
    const buffers = this.#buffers.pop() ?? vhdReadBuffers(MAX_PAGE_WRITE);
    // The phase's clock starts with its first write; the total is known only once the VHD is whole.
    if (!this.#writing) this.#options.onProgress?.(0, undefined);
    this.#writing = true;
    try {
      this.#file ??= open(this.#path, 'r');
      const body = await readVhdRange(await this.#file, buffers, write, this.#path);
      const { offset, length } = write;
      await leaseGuard(this.#where, lease, () =>
        this.#writeCalls.run(`uploadPages (bytes ${offset}-${offset + length - 1})`, (abortSignal) =>
          blob.uploadPages(body, offset, length, { conditions: { leaseId: lease.id }, abortSignal }),
        ),
      );
      this.bytesSent += length;
    } catch (error) {
      this.#halt(error);
    } finally {
      this.#buffers.push(buffers);
    }
  }

  /** Resolves once no write is in flight and, unless stopped, none is queued. */
  async #drained(): Promise<void> {
    while (this.#inFlight > 0 || (!this.#stopped && this.#own?.lease && this.#next < this.#queue.length)) {
      this.#pump();
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Stops the overlap for good, said once; what is not on the blob is uploadVhd's to send. */
  #halt(reason: unknown): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stop.abort();
    this.#options.log.warn(
      `${this.#say} the upload while extracting stopped (${errorMessage(reason)}); the uploadVhd step sends the rest`,
    );
  }

  async #close(): Promise<void> {
    await this.#own?.lease?.release();
    await (await this.#file?.catch(() => undefined))?.close();
  }
}
