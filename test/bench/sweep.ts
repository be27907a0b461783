/**
 * `npm run bench -- --sweep`: the cost per GiB of the CPU-bound pieces (SHA-1, SHA-256, the zero scan
 * of SparseFileWriter) and a sweep of page-write size and parallelism on Azurite, with the writes each
 * choice costs on Azure (a standard page blob takes about 500 writes/s and 60 MiB/s).
 */

import { randomBytes, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ContainerClient } from '@azure/storage-blob';
import type { StemcellRelease } from '../../src/boshio.js';
import { createAzureCredential } from '../../src/credentials.js';
import { planPageWrites } from '../../src/page-ranges.js';
import { extractStemcellFrom } from '../../src/stemcell.js';
import { SparseFileWriter, readExtents } from '../../src/vhd.js';
import { startAzurite } from '../support/azurite.js';
import { startIdentityEndpoint } from '../support/identity.js';
import { writeLargeStemcellFixture } from '../support/stemcell-fixture.js';
import { uploadFloor } from './upload.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

export interface MicroFigures {
  /** CPU seconds per GiB (user + system), on this machine. */
  sha1: number;
  sha256: number;
  zeroScanOfZeros: number;
  zeroScanOfData: number;
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

async function perGiB(bytes: number, work: () => Promise<void> | void): Promise<number> {
  const start = cpuSeconds();
  await work();
  return ((cpuSeconds() - start) * GIB) / bytes;
}

export async function microFigures(): Promise<MicroFigures> {
  const data = randomBytes(64 * MIB);
  const rounds = 8; // 512 MiB through each
  const hash = (algorithm: string) => () => {
    const h = createHash(algorithm);
    for (let i = 0; i < rounds; i++) h.update(data);
    h.digest();
  };
  const temp = await mkdtemp(join(tmpdir(), 'basm-micro-'));
  try {
    const scan = (chunk: Buffer) => async () => {
      const source = Readable.from(
        (function* () {
          for (let i = 0; i < rounds * 16; i++) yield chunk;
        })(),
      );
      await pipeline(source, new SparseFileWriter(join(temp, 'scan.vhd')));
    };
    return {
      sha1: await perGiB(rounds * data.length, hash('sha1')),
      sha256: await perGiB(rounds * data.length, hash('sha256')),
      zeroScanOfZeros: await perGiB(rounds * 16 * 4 * MIB, scan(Buffer.alloc(4 * MIB))),
      zeroScanOfData: await perGiB(rounds * 16 * 4 * MIB, scan(data.subarray(0, 4 * MIB))),
    };
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

export interface SweepRow {
  maxWriteMiB: number;
  concurrency: number;
  writes: number;
  bytes: number;
  azuriteSeconds: number;
  cpuSeconds: number;
  azureSeconds: number;
}

/** Uploads the non-zero extents of a generated `virtualMiB` stemcell at each write size and concurrency. */
export async function writeSweep(
  virtualMiB: number,
  dataMiB: number,
  log: (line: string) => void,
): Promise<SweepRow[]> {
  const temp = await mkdtemp(join(tmpdir(), 'basm-sweep-'));
  const identity = await startIdentityEndpoint();
  const azurite = await startAzurite();
  try {
    Object.assign(process.env, identity.env());
    const tarball = join(temp, 'stemcell.tgz');
    const fixture = await writeLargeStemcellFixture(tarball, {
      virtualSizeMiB: virtualMiB,
      dataMiB,
      seed: 7,
    });
    const release: StemcellRelease = {
      series: fixture.series,
      version: fixture.version,
      url: 'https://bosh.io/sweep',
      size: fixture.size,
      sha256: fixture.sha256,
    };
    const extracted = await extractStemcellFrom(createReadStream(tarball), release, { workDir: temp });
    const extents = await readExtents(extracted.extentsPath);
    const container = new ContainerClient(`${azurite.blobEndpoint}/sweep`, createAzureCredential());
    await container.createIfNotExists();
    const rows: SweepRow[] = [];
    for (const maxWriteMiB of [0.5, 1, 2, 4]) {
      for (const concurrency of [4, 8, 16]) {
        const writes = planPageWrites(extents, maxWriteMiB * MIB);
        const cpu = cpuSeconds();
        const start = performance.now();
        const result = await uploadFloor(
          container,
          'sweep.vhd',
          extracted.vhdPath,
          extracted.vhdSize,
          writes,
          concurrency,
        );
        const row: SweepRow = {
          maxWriteMiB,
          concurrency,
          writes: writes.length,
          bytes: result.bytesUploaded,
          azuriteSeconds: (performance.now() - start) / 1000,
          cpuSeconds: cpuSeconds() - cpu,
          azureSeconds: Math.max(result.bytesUploaded / (60 * MIB), writes.length / 500),
        };
        rows.push(row);
        log(
          `  ${maxWriteMiB} MiB x ${concurrency}: ${row.writes} writes, Azurite ${row.azuriteSeconds.toFixed(1)} s, ` +
            `CPU ${row.cpuSeconds.toFixed(1)} s, Azure model ${row.azureSeconds.toFixed(1)} s`,
        );
        await result.blob.delete();
      }
    }
    return rows;
  } finally {
    await azurite.stop();
    await identity.stop();
    await rm(temp, { recursive: true, force: true });
  }
}
