/**
 * `npm run bench`: measures extraction and upload of a full-size stemcell and compares each figure
 * with a floor or baseline measured in the same run, on the same machine, from the same file.
 *
 *   node dist/test/bench/run.js [--quick] [--virtual-mib N] [--data-percent P] [--runs N] [--concurrency N]
 *
 * Extraction: `extractStemcellFrom` against the floor (read -> SHA-256 -> gunzip -> tar parse ->
 * inner gunzip -> discard). Upload: `uploadSparseVhd` against the naive upload of every 4 MiB chunk,
 * both to Azurite over HTTPS with a managed identity token. Prints its figures; exits non-zero only
 * when something failed (a wrong result), never because of a timing.
 */

import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ContainerClient, newPipeline } from '@azure/storage-blob';
import type { StemcellRelease } from '../../src/boshio.js';
import { createAzureCredential } from '../../src/credentials.js';
import { uploadSparseVhd, vhdBlobName } from '../../src/pageblob.js';
import { extractStemcellFrom } from '../../src/stemcell.js';
import type { ExtractedStemcell } from '../../src/stemcell.js';
import { readExtents } from '../../src/vhd.js';
import type { Extent } from '../../src/vhd.js';
import { startAzurite } from '../support/azurite.js';
import type { AzuriteBlob } from '../support/azurite.js';
import { startIdentityEndpoint } from '../support/identity.js';
import type { IdentityEndpoint } from '../support/identity.js';
import { writeLargeStemcellFixture } from '../support/stemcell-fixture.js';
import { extractionFloor } from './floor.js';
import { CHUNK, RequestCounter, pageRangeBytes, uploadEveryChunk } from './upload.js';
import type { RequestCounts } from './upload.js';

const MIB = 1024 * 1024;
const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const VERSION = '1.100';
const SEED = 20250102;
/** Azure's scalability targets for one standard page blob. */
const AZURE_BYTES_PER_SECOND = 60 * MIB;
const AZURE_REQUESTS_PER_SECOND = 500;

interface Options {
  virtualMiB: number;
  dataPercent: number;
  runs: number;
  concurrency: number;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'virtual-mib': { type: 'string' },
      'data-percent': { type: 'string', default: '20' },
      runs: { type: 'string' },
      concurrency: { type: 'string', default: '8' },
    },
  });
  const integer = (name: string, text: string, min: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new Error(`--${name} must be a whole number >= ${min}, not ${text}`);
    return value;
  };
  const virtualMiB = integer('virtual-mib', values['virtual-mib'] ?? (values.quick ? '512' : '5120'), 16);
  return {
    virtualMiB,
    dataPercent: integer('data-percent', values['data-percent'], 0),
    runs: integer('runs', values.runs ?? (virtualMiB <= 1024 ? '3' : '1'), 1),
    concurrency: integer('concurrency', values.concurrency, 1),
  };
}

const mib = (bytes: number): string => (bytes / MIB).toFixed(1);
const rate = (bytes: number, seconds: number): string => (bytes / MIB / seconds).toFixed(1);
const secs = (seconds: number): string => seconds.toFixed(2);
const log = (line = ''): void => console.log(line);
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await work();
  return { value, seconds: (performance.now() - start) / 1000 };
}

function sum(extents: readonly Extent[]): number {
  return extents.reduce((total, e) => total + e.length, 0);
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`benchmark result is wrong: ${message}`);
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  for (const row of rows) {
    log(
      row
        .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
        .join('  '),
    );
  }
}

interface ExtractionFigures {
  floorSeconds: number;
  productSeconds: number;
  extracted: ExtractedStemcell;
  allocatedBytes: number;
}

async function benchExtraction(
  tarball: string,
  release: StemcellRelease,
  expectedExtents: Extent[],
  temp: string,
  runs: number,
): Promise<ExtractionFigures> {
  let floorSeconds = Infinity;
  let productSeconds = Infinity;
  let extracted: ExtractedStemcell | undefined;
  for (let run = 1; run <= runs; run++) {
    const floor = await timed(() => extractionFloor(createReadStream(tarball)));
    check(
      floor.value.sha256 === release.sha256,
      `floor SHA-256 ${floor.value.sha256}, expected ${release.sha256}`,
    );
    floorSeconds = Math.min(floorSeconds, floor.seconds);

    const workDir = join(temp, 'work');
    await rm(workDir, { recursive: true, force: true });
    await mkdir(workDir);
    const product = await timed(() => extractStemcellFrom(createReadStream(tarball), release, { workDir }));
    productSeconds = Math.min(productSeconds, product.seconds);
    extracted = product.value;
    log(
      `  run ${run}/${runs}: floor ${secs(floor.seconds)} s, extractStemcellFrom ${secs(product.seconds)} s ` +
        `(inner tar ${mib(floor.value.innerBytes)} MiB)`,
    );
  }
  if (!extracted) throw new Error('no extraction ran');
  const extents = await readExtents(extracted.extentsPath);
  check(
    JSON.stringify(extents) === JSON.stringify(expectedExtents),
    `the extracted extents (${extents.length}, ${sum(extents)} bytes) differ from the fixture's (${expectedExtents.length}, ${sum(expectedExtents)} bytes)`,
  );
  check(
    extracted.dataBytes === sum(expectedExtents),
    `dataBytes ${extracted.dataBytes}, expected ${sum(expectedExtents)}`,
  );
  const info = await stat(extracted.vhdPath);
  check(
    info.size === extracted.vhdSize,
    `root.vhd is ${info.size} bytes, the result says ${extracted.vhdSize}`,
  );
  return { floorSeconds, productSeconds, extracted, allocatedBytes: info.blocks * 512 };
}

interface UploadFigures {
  seconds: number;
  bytesUploaded: number;
  counts: RequestCounts;
  rangeBytes: number;
  ranges: number;
}

async function benchUpload(
  extracted: ExtractedStemcell,
  concurrency: number,
): Promise<{ sparse: UploadFigures; naive: UploadFigures }> {
  let identity: IdentityEndpoint | undefined;
  let azurite: AzuriteBlob | undefined;
  try {
    identity = await startIdentityEndpoint();
    Object.assign(process.env, identity.env());
    azurite = await startAzurite();
    const credential = createAzureCredential();
    const counter = new RequestCounter();
    const pipeline = newPipeline(credential);
    pipeline.factories.push(counter);
    const sparseContainer = new ContainerClient(`${azurite.blobEndpoint}/bench-sparse`, pipeline);
    const naiveContainer = new ContainerClient(`${azurite.blobEndpoint}/bench-naive`, pipeline);
    // Outside the timings: the first token and the containers.
    await sparseContainer.createIfNotExists();
    await naiveContainer.createIfNotExists();
    const blobName = vhdBlobName(extracted.series, extracted.version);
    const extents = await readExtents(extracted.extentsPath);

    counter.reset();
    const sparse = await timed(() =>
      uploadSparseVhd({
        container: sparseContainer,
        blobName,
        vhdPath: extracted.vhdPath,
        extents,
        size: extracted.vhdSize,
        metadata: {
          image_sha256: extracted.imageSha256,
          stemcell_series: extracted.series,
          stemcell_version: extracted.version,
        },
        concurrency,
      }),
    );
    const sparseCounts = counter.reset();
    const sparseRanges = await pageRangeBytes(sparseContainer.getPageBlobClient(blobName));
    check(
      sparse.value.bytesUploaded === sparseCounts.putPageBytes,
      'uploadSparseVhd reports other bytes than it sent',
    );
    check(
      sparseRanges.bytes === extracted.dataBytes,
      `sparse blob holds ${sparseRanges.bytes} written bytes, expected ${extracted.dataBytes}`,
    );
    log(`  uploadSparseVhd: ${secs(sparse.seconds)} s, ${sparseCounts.putPages} Put Page`);

    counter.reset();
    const naive = await timed(() =>
      uploadEveryChunk(naiveContainer, blobName, extracted.vhdPath, extracted.vhdSize, concurrency),
    );
    const naiveCounts = counter.reset();
    const naiveRanges = await pageRangeBytes(naive.value.blob);
    check(
      naive.value.bytesUploaded === naiveCounts.putPageBytes,
      'the naive upload reports other bytes than it sent',
    );
    log(`  every 4 MiB chunk: ${secs(naive.seconds)} s, ${naiveCounts.putPages} Put Page`);
    await naive.value.blob.delete();

    return {
      sparse: {
        seconds: sparse.seconds,
        bytesUploaded: sparse.value.bytesUploaded,
        counts: sparseCounts,
        rangeBytes: sparseRanges.bytes,
        ranges: sparseRanges.ranges,
      },
      naive: {
        seconds: naive.seconds,
        bytesUploaded: naive.value.bytesUploaded,
        counts: naiveCounts,
        rangeBytes: naiveRanges.bytes,
        ranges: naiveRanges.ranges,
      },
    };
  } finally {
    await azurite?.stop();
    await identity?.stop();
  }
}

function azureLowerBound(figures: UploadFigures): number {
  return Math.max(
    figures.counts.putPageBytes / AZURE_BYTES_PER_SECOND,
    figures.counts.putPages / AZURE_REQUESTS_PER_SECOND,
  );
}

async function main(): Promise<void> {
  const opts = options();
  const dataMiB = Math.round((opts.virtualMiB * opts.dataPercent) / 100);
  log(
    `bosh-azure-stemcell-mirror benchmark: Node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ` +
      `extraction best of ${opts.runs}, upload concurrency ${opts.concurrency}, load average ${load()}`,
  );
  const temp = await mkdtemp(join(tmpdir(), 'basm-bench-'));
  try {
    const tarball = join(temp, 'stemcell.tgz');
    log(
      `\n1. fixture: ${opts.virtualMiB} MiB virtual disk, about ${dataMiB} MiB of scattered data blocks requested`,
    );
    const generated = await timed(() =>
      writeLargeStemcellFixture(tarball, {
        virtualSizeMiB: opts.virtualMiB,
        dataMiB,
        seed: SEED,
        series: SERIES,
        version: VERSION,
      }),
    );
    const fixture = generated.value;
    const vhdSize = opts.virtualMiB * MIB + 512;
    const dataBytes = sum(fixture.extents);
    log(
      `  generated in ${secs(generated.seconds)} s: tarball ${mib(fixture.size)} MiB, root.vhd ${mib(vhdSize)} MiB ` +
        `with ${mib(dataBytes)} MiB non-zero (${((100 * dataBytes) / vhdSize).toFixed(1)}%) in ${fixture.extents.length} extents`,
    );
    const release: StemcellRelease = {
      series: SERIES,
      version: VERSION,
      url: `https://bosh.io/d/stemcells/${SERIES}?v=${VERSION}`,
      size: fixture.size,
      sha256: fixture.sha256,
    };

    log('\n2. extraction (same tarball, page cache warm for both)');
    const extraction = await benchExtraction(tarball, release, fixture.extents, temp, opts.runs);
    await rm(tarball);
    const { extracted } = extraction;

    log(
      `\n3. upload to Azurite over HTTPS on loopback, managed identity token, concurrency ${opts.concurrency}`,
    );
    const upload = await benchUpload(extracted, opts.concurrency);

    const floorRate = vhdSize / MIB / extraction.floorSeconds;
    const productRate = vhdSize / MIB / extraction.productSeconds;
    log('\nExtraction of root.vhd (MiB/s of VHD bytes, best run)');
    table([
      ['', 'seconds', 'MiB/s'],
      [
        'floor: read, SHA-256, gunzip, tar, inner gunzip, discard',
        secs(extraction.floorSeconds),
        floorRate.toFixed(1),
      ],
      [
        'extractStemcellFrom (to a sparse file + extent map)',
        secs(extraction.productSeconds),
        productRate.toFixed(1),
      ],
    ]);
    log(`extractStemcellFrom / floor throughput: ${(productRate / floorRate).toFixed(2)}`);
    log(
      `root.vhd on disk: ${mib(extraction.allocatedBytes)} MiB allocated (stat.blocks*512) of ${mib(extracted.vhdSize)} MiB logical; ` +
        `${mib(extracted.dataBytes)} MiB in extents`,
    );

    log(
      `\nUpload of root.vhd (${mib(extracted.vhdSize)} MiB) as a page blob, concurrency ${opts.concurrency}`,
    );
    const row = (name: string, f: UploadFigures): string[] => [
      name,
      secs(f.seconds),
      mib(f.counts.putPageBytes),
      String(f.counts.putPages),
      rate(f.counts.putPageBytes, f.seconds),
      mib(f.rangeBytes),
      secs(azureLowerBound(f)),
    ];
    table([
      ['', 'Azurite s', 'MiB sent', 'Put Page', 'MiB/s', 'page ranges MiB', 'Azure >= s'],
      row('uploadSparseVhd (non-zero extents)', upload.sparse),
      row(`every ${CHUNK / MIB} MiB chunk (JS SDK, no helper)`, upload.naive),
    ]);
    log(
      `sparse / naive: ${(upload.sparse.seconds / upload.naive.seconds).toFixed(2)} of the Azurite time, ` +
        `${(upload.sparse.counts.putPageBytes / upload.naive.counts.putPageBytes).toFixed(3)} of the bytes, ` +
        `${(upload.sparse.counts.putPages / upload.naive.counts.putPages).toFixed(3)} of the requests, ` +
        `${(upload.sparse.rangeBytes / upload.naive.rangeBytes).toFixed(3)} of the stored pages`,
    );
    log(
      `Azurite on loopback is not Azure: its times show the client's overhead only. What transfers is the bytes ` +
        `sent and the Put Page count; "Azure >= s" = max(bytes / 60 MiB/s, requests / 500 per s), the scalability ` +
        `targets of one standard page blob.`,
    );
    log(
      `Exact: VHD ${extracted.vhdSize} bytes, ${extracted.dataBytes} in extents; sent sparse ${upload.sparse.counts.putPageBytes}, ` +
        `naive ${upload.naive.counts.putPageBytes}; page ranges sparse ${upload.sparse.rangeBytes}, naive ${upload.naive.rangeBytes}`,
    );
    log(
      `Other requests (create, properties, page range listing, metadata): sparse ${upload.sparse.counts.requests - upload.sparse.counts.putPages}, ` +
        `naive ${upload.naive.counts.requests - upload.naive.counts.putPages}; listPageRanges returns ${upload.sparse.ranges} ranges ` +
        `for the sparse blob (Azurite lists each write, it does not join neighbours)`,
    );
    log(
      `Load average at the end: ${load()} (other processes on the machine slow both sides of each comparison)`,
    );
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
