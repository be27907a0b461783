/**
 * The original mirror's algorithm, re-implemented in the simplest way as the benchmark's peer: download
 * the whole tarball to disk, extract the tarball, extract `image`, then upload the whole root.vhd in 4 MiB
 * chunks, skipping the chunks that are all zeros (what the Python SDK's page-blob upload does), 4 workers.
 * Run as a child under `--import probe.js`, which records its phases:
 *
 *   node --import dist/test/bench/probe.js dist/test/bench/original.js URL WORK_DIR CONTAINER_URL BLOB_NAME
 */

import { createWriteStream } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ContainerClient } from '@azure/storage-blob';
import { extract } from 'tar';
import { createAzureCredential } from '../../src/credentials.js';
import { mark } from './probe.js';

const CHUNK = 4 * 1024 * 1024;
const WORKERS = 4;

async function main(): Promise<void> {
  const [url, workDir, containerUrl, blobName] = process.argv.slice(2);
  if (!url || !workDir || !containerUrl || !blobName)
    throw new Error('usage: URL WORK_DIR CONTAINER_URL BLOB_NAME');

  const tarball = join(workDir, 'stemcell.tgz');
  const response = await fetch(url);
  if (!response.ok || !response.body) throw new Error(`GET ${url}: HTTP ${response.status}`);
  await pipeline(Readable.fromWeb(response.body), createWriteStream(tarball));
  mark('download');

  const stemcellDir = join(workDir, 'stemcell');
  await mkdir(stemcellDir);
  await extract({ file: tarball, cwd: stemcellDir });
  mark('extractTarball');

  const imageDir = join(workDir, 'image');
  await mkdir(imageDir);
  await extract({ file: join(stemcellDir, 'image'), cwd: imageDir });
  mark('extractImage');

  const vhdPath = join(imageDir, 'root.vhd');
  const size = (await stat(vhdPath)).size;
  const container = new ContainerClient(containerUrl, createAzureCredential());
  await container.createIfNotExists();
  const blob = container.getPageBlobClient(blobName);
  await blob.create(size);
  const file = await open(vhdPath, 'r');
  const zeros = Buffer.alloc(CHUNK);
  let next = 0;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(CHUNK);
    for (let offset = next; offset < size; offset = next) {
      next += CHUNK;
      const length = Math.min(CHUNK, size - offset);
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      if (bytesRead !== length) throw new Error(`short read at ${offset}`);
      const chunk = buffer.subarray(0, length);
      if (chunk.equals(zeros.subarray(0, length))) continue;
      await blob.uploadPages(chunk, offset, length);
    }
  };
  try {
    await Promise.all(Array.from({ length: WORKERS }, () => worker()));
  } finally {
    await file.close();
  }
  mark('upload');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
