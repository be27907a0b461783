/**
 * stemcell.MF read from the head of a stemcell tarball, without the rest: it is the first entry, so a dry run
 * learns what a version's cloud_properties imply (its image definition, src/cpi.ts) from a few kilobytes.
 * Not verified (the checksums cover the whole tarball): good for a plan, never for what is written.
 */

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import type { StemcellRelease } from './boshio.js';
import { displayUrl, fetchOverHttps } from './https-fetch.js';
import { StemcellError, type StemcellManifest } from './manifest.js';
import { BEFORE_MANIFEST_BYTES, MAX_MANIFEST_BYTES } from './stemcell-bounds.js';
import { MANIFEST_ENTRY, readManifest } from './stemcell-pipeline.js';
import { TarSink, checkEntry, entryName } from './tar-entries.js';

/** The release's stemcell.MF, checked against bosh.io's listing; the download stops once it is read. */
export async function previewManifest(
  release: StemcellRelease,
  timeoutMs: number,
): Promise<StemcellManifest> {
  const label = `stemcell ${release.series}/${release.version} tarball`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let manifest: StemcellManifest | undefined;
  const tar: TarSink = new TarSink(
    label,
    (entry) => {
      try {
        checkEntry(entry, label, [MANIFEST_ENTRY]);
        if (entryName(entry) !== MANIFEST_ENTRY) return entry.resume();
        readManifest(
          entry,
          release,
          (read) => {
            manifest = read;
            controller.abort();
          },
          (error) => tar.destroy(error as Error),
        );
      } catch (error) {
        tar.destroy(error as Error);
      }
    },
    {
      bytes: BEFORE_MANIFEST_BYTES,
      reason: `${MANIFEST_ENTRY} comes first and is at most ${MAX_MANIFEST_BYTES} bytes`,
    },
  );
  try {
    // Only the head is asked for; a server that ignores Range is cut off once stemcell.MF is read.
    const { response } = await fetchOverHttps(release.url, {
      signal: controller.signal,
      headers: { range: `bytes=0-${BEFORE_MANIFEST_BYTES - 1}` },
    });
    if (!response.ok || response.body === null) {
      await response.body?.cancel().catch(() => undefined);
      throw new StemcellError(`GET ${displayUrl(release.url)} answered ${response.status}`);
    }
    const body = Readable.fromWeb(response.body as ReadableStream<Uint8Array>);
    // node-tar's Parser detects gzip itself.
    await pipeline(body, tar, { signal: controller.signal });
  } catch (error) {
    if (manifest !== undefined) return manifest;
    if (controller.signal.aborted) {
      throw new StemcellError(
        `${label}: no ${MANIFEST_ENTRY} within ${timeoutMs} ms of ${displayUrl(release.url)}`,
      );
    }
    throw error;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  if (manifest !== undefined) return manifest;
  throw new StemcellError(`${label} has no ${MANIFEST_ENTRY} entry`);
}
