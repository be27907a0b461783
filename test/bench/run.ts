/**
 * `npm run bench`: the mirror against the original project's algorithm and against the floor of each
 * phase, in the same run, on the same generated stemcell, the same bosh.io fake and the same Azurite.
 *
 *   node dist/test/bench/run.js [--quick] [--virtual-mib 512,5120] [--data-percent 35]
 *     [--per-connection-mbps 400] [--concurrency 8] [--cpu-prof DIR] [--baseline-cli PATH] [--json]
 *
 * - original: download the whole tarball to disk, extract it, extract `image`, upload root.vhd in 4 MiB
 *   chunks skipping all-zero ones, 4 workers (test/bench/original.ts), as a child process;
 * - mirror: the built CLI (`node dist/src/cli.js mirror`), as a child process, against the same services;
 * - baseline (with --baseline-cli): another build's CLI (e.g. the commit before a change), run the same way
 *   right after the mirror on the same stemcell, to measure a change side by side in one run;
 * - floors: bare decompression of the tarball (read -> SHA-256 -> gunzip -> tar -> gunzip -> discard),
 *   bare Put Page of the same non-zero ranges at the same concurrency, and the network time of the
 *   tarball at the per-connection cap.
 * Both children run under probe.ts (CPU, peak RSS, requests and bytes to the Blob service, per phase);
 * the bench samples their temp directory for the peak temp disk. Exits non-zero only when a result is
 * wrong (a blob that differs from the fixture, a failed run), never because of a timing.
 */

import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ContainerClient, type PageBlobClient } from '@azure/storage-blob';
import { createAzureCredential } from '../../src/credentials.js';
import { VHD_CONTAINER } from '../../src/config.js';
import { DEFAULT_CONNECTIONS, downloadStream } from '../../src/download.js';
import { planPageWrites } from '../../src/page-ranges.js';
import { vhdBlobName } from '../../src/pageblob.js';
import type { Extent } from '../../src/vhd.js';
import { CLI_ENTRY, REPO_ROOT } from '../support/cli-process.js';
import { startLocalAzure } from '../support/local-azure.js';
import type { LocalAzure } from '../support/local-azure.js';
import { writeLargeStemcellFixture } from '../support/stemcell-fixture.js';
import { extractionFloor } from './floor.js';
import { measureChild, type Measured } from './measure.js';
import type { ProbeReading, ProbeReport } from './probe.js';
import { summariseProfile } from './profile.js';
import type { ProfileSummary } from './profile.js';
import { microFigures, writeSweep } from './sweep.js';
import { pageRangeBytes, uploadFloor } from './upload.js';

const MIB = 1024 * 1024;
const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const SEED = 20250102;
/** Azure's scalability targets for one standard page blob. */
const AZURE_BYTES_PER_SECOND = 60 * MIB;
const AZURE_WRITES_PER_SECOND = 500;
const ORIGINAL = join(REPO_ROOT, 'dist/test/bench/original.js');

interface Options {
  sizesMiB: number[];
  dataPercent: number;
  perConnectionBytesPerSecond: number;
  concurrency: number;
  cpuProfDir: string | undefined;
  baselineCli: string | undefined;
  json: boolean;
  sweep: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'virtual-mib': { type: 'string' },
      'data-percent': { type: 'string', default: '35' },
      'per-connection-mbps': { type: 'string', default: '400' },
      concurrency: { type: 'string', default: '8' },
      'cpu-prof': { type: 'string' },
      'baseline-cli': { type: 'string' },
      json: { type: 'boolean', default: false },
      sweep: { type: 'boolean', default: false },
    },
  });
  const integer = (name: string, text: string, min: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new Error(`--${name} must be a whole number >= ${min}, not ${text}`);
    return value;
  };
  const sizes = values['virtual-mib'] ?? (values.quick ? '512' : '512,5120');
  return {
    sizesMiB: sizes.split(',').map((size) => integer('virtual-mib', size, 16)),
    dataPercent: integer('data-percent', values['data-percent'], 0),
    // Megabits per second, as link speeds are quoted.
    perConnectionBytesPerSecond: (integer('per-connection-mbps', values['per-connection-mbps'], 1) * 1e6) / 8,
    concurrency: integer('concurrency', values.concurrency, 1),
    cpuProfDir: values['cpu-prof'],
    baselineCli: values['baseline-cli'],
    json: values.json,
    sweep: values.sweep,
  };
}

let jsonMode = false;
const mib = (bytes: number): string => (bytes / MIB).toFixed(0);
const secs = (seconds: number): string => seconds.toFixed(1);
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}x` : '-');
const log = (line = ''): void => void (jsonMode ? process.stderr : process.stdout).write(`${line}\n`);
const load = (): number[] => loadavg().map((l) => Math.round(l * 100) / 100);

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

/** One phase of a run: what it took and what it used. */
interface Phase {
  name: string;
  wallSeconds: number;
  cpuSeconds: number;
  /** The process's peak RSS at the end of the phase (it only grows). */
  peakRssBytes: number;
  putPageBytes?: number;
  putPages?: number;
  /** Network-bound time on Azure: download at the cap, upload at the page blob's targets. */
  modeledNetworkSeconds?: number;
}

interface Run {
  who: string;
  /** The upload ran during the extraction (the blob was stamped before it was complete). */
  overlapped?: boolean;
  phases: Phase[];
  wallSeconds: number;
  cpuSeconds: number;
  peakRssBytes: number;
  peakTempDiskBytes: number;
  downloadedBytes: number;
  downloadRequests: number;
  downloadConnections: number;
  blobRequests: number;
  putPages: number;
  putPageBytes: number;
  storedBytes: number;
  /** Sum over phases of max(network time on Azure, CPU seconds on one core). */
  modeledAzureSeconds: number;
}

function phasesFrom(
  readings: Array<[string, ProbeReading]>,
  start: ProbeReading,
): Array<Omit<Phase, 'putPageBytes' | 'putPages'>> {
  let previous = start;
  return readings.map(([name, reading]) => {
    const phase = {
      name,
      wallSeconds: (reading.at - previous.at) / 1000,
      cpuSeconds: reading.cpuSeconds - previous.cpuSeconds,
      peakRssBytes: reading.maxRssBytes,
    };
    previous = reading;
    return phase;
  });
}

interface Subject {
  tarball: string;
  tarballSize: number;
  vhdSize: number;
  extents: Extent[];
  dataBytes: number;
  version: string;
  url: string;
}

function modelUpload(putPageBytes: number, putPages: number): number {
  return Math.max(putPageBytes / AZURE_BYTES_PER_SECOND, putPages / AZURE_WRITES_PER_SECOND);
}

/** The upload's figures on its phase: the pages it sent and their time on Azure's page-blob targets. */
function withUpload(phase: Phase, report: ProbeReport): void {
  phase.putPageBytes = report.putPageBytes;
  phase.putPages = report.putPages;
  phase.modeledNetworkSeconds = modelUpload(report.putPageBytes, report.putPages);
}

/** The phases' time on Azure: each as long as the slower of its network and its CPU on one core. */
function modeledSeconds(phases: Phase[]): number {
  return phases.reduce((total, p) => total + Math.max(p.modeledNetworkSeconds ?? 0, p.cpuSeconds), 0);
}

/** A run's figures: its measurement, its phases, the page blob it left (read back) and its modeled time. */
async function runOf(
  who: string,
  measured: Measured,
  phases: Phase[],
  blob: PageBlobClient,
  modeledAzureSeconds: number,
): Promise<Run> {
  const { report } = measured;
  return {
    who,
    phases,
    wallSeconds: (report.end.at - measured.started) / 1000,
    cpuSeconds: report.end.cpuSeconds,
    peakRssBytes: report.end.maxRssBytes,
    peakTempDiskBytes: measured.peakTempDiskBytes,
    downloadedBytes: measured.downloadedBytes,
    downloadRequests: measured.downloadRequests,
    downloadConnections: measured.downloadConnections,
    blobRequests: report.blobRequests,
    putPages: report.putPages,
    putPageBytes: report.putPageBytes,
    storedBytes: (await pageRangeBytes(blob)).bytes,
    modeledAzureSeconds,
  };
}

async function runOriginal(local: LocalAzure, subject: Subject, temp: string, cap: number): Promise<Run> {
  const workDir = join(temp, 'original');
  await mkdir(workDir);
  const blobName = vhdBlobName(SERIES, subject.version);
  const measured = await measureChild(
    local,
    workDir,
    [ORIGINAL, subject.url, workDir, `${local.azurite.blobEndpoint}/original`, blobName],
    local.env,
    join(temp, 'original-probe.json'),
  );
  const { report } = measured;
  const marks = ['download', 'extractTarball', 'extractImage', 'upload'].map(
    (name) => [name, report.marks[name]!] as [string, ProbeReading],
  );
  const phases: Phase[] = phasesFrom(marks, report.start);
  phases[0]!.modeledNetworkSeconds = measured.downloadedBytes / cap;
  withUpload(phases[3]!, report);
  const blob = new ContainerClient(
    `${local.azurite.blobEndpoint}/original`,
    local.azurite.sharedKeyCredential,
  ).getPageBlobClient(blobName);
  // The original's phases run one after the other: network, then CPU, then upload.
  return runOf('original', measured, phases, blob, modeledSeconds(phases));
}

/**
 * The mirror's phases. With the overlap: download + extract with the upload alongside, up to the blob's stamp
 * (one vCPU runs both: CPU adds up, the networks run side by side), then uploadVhd sending what is left,
 * verifying and marking the blob complete. Without it: download + extract up to the first page write, then
 * the upload up to the complete mark.
 */
function mirrorPhases(report: ProbeReport, downloadNetworkSeconds: number): Phase[] {
  const { extracted } = report;
  const uploaded = report.completed ?? report.lastPageWrite!;
  const phases: Phase[] = phasesFrom(
    [
      [extracted ? 'download + extract + upload' : 'download + extract', extracted ?? report.firstPageWrite!],
      [extracted ? 'upload: the rest, verify, complete' : 'upload', uploaded],
      ['gallery + notify', report.end],
    ],
    report.start,
  );
  const early = { putPages: extracted?.putPages ?? 0, putPageBytes: extracted?.putPageBytes ?? 0 };
  const late = {
    putPages: report.putPages - early.putPages,
    putPageBytes: report.putPageBytes - early.putPageBytes,
  };
  Object.assign(phases[0]!, extracted ? early : {}, {
    modeledNetworkSeconds: Math.max(downloadNetworkSeconds, modelUpload(early.putPageBytes, early.putPages)),
  });
  Object.assign(phases[1]!, late, { modeledNetworkSeconds: modelUpload(late.putPageBytes, late.putPages) });
  return phases;
}

async function runMirror(
  local: LocalAzure,
  subject: Subject,
  temp: string,
  cap: number,
  concurrency: number,
  cpuProfDir: string | undefined,
  build: { cli: string; who: string } = { cli: CLI_ENTRY, who: 'mirror' },
): Promise<Run> {
  const profile = cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir];
  const measured = await measureChild(
    local,
    local.workDir,
    [...profile, build.cli, 'mirror', '--json', '--series', SERIES],
    { ...local.env, BASM_UPLOAD_CONCURRENCY: String(concurrency) },
    join(temp, `${build.who}-probe-${subject.version}.json`),
  );
  const { report, stdout } = measured;
  check(
    report.firstPageWrite !== undefined && report.lastPageWrite !== undefined,
    `the mirror wrote no page: ${stdout}`,
  );
  const phases = mirrorPhases(report, measured.downloadedBytes / (cap * measured.downloadConnections));
  const blob = new ContainerClient(
    `${local.azurite.blobEndpoint}/${VHD_CONTAINER}`,
    local.azurite.sharedKeyCredential,
  ).getPageBlobClient(vhdBlobName(SERIES, subject.version));
  // Download and extraction stream together (the slower one sets the pace), the upload alongside them or
  // after; the gallery's replication is Azure's time, not the mirror's, and is left out.
  const run = await runOf(build.who, measured, phases, blob, modeledSeconds(phases.slice(0, 2)));
  return report.extracted ? { ...run, overlapped: true } : run;
}

interface Floors {
  decompression: { wallSeconds: number; cpuSeconds: number };
  upload: { wallSeconds: number; cpuSeconds: number; putPages: number; putPageBytes: number };
  /** The tarball at the per-connection cap over one connection. */
  networkOneConnectionSeconds: number;
  /** downloadStream alone (read and discard), by number of connections: wall seconds. */
  downloadAlone: Array<{ connections: number; wallSeconds: number; cpuSeconds: number; timesTheCap: number }>;
}

async function measureFloors(
  local: LocalAzure,
  subject: Subject,
  vhdPath: string,
  concurrency: number,
  cap: number,
): Promise<Floors> {
  const cpu = (): number => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  };
  let wall = performance.now();
  let cpuAt = cpu();
  const floor = await extractionFloor(createReadStream(subject.tarball));
  const decompression = { wallSeconds: (performance.now() - wall) / 1000, cpuSeconds: cpu() - cpuAt };
  check(floor.innerBytes >= subject.vhdSize, `the floor inflated ${floor.innerBytes} bytes of image`);

  const container = new ContainerClient(`${local.azurite.blobEndpoint}/floor`, createAzureCredential());
  await container.createIfNotExists(); // outside the timing, with the first token
  const writes = planPageWrites(subject.extents);
  wall = performance.now();
  cpuAt = cpu();
  const upload = await uploadFloor(container, 'floor.vhd', vhdPath, subject.vhdSize, writes, concurrency);
  const uploadFigures = {
    wallSeconds: (performance.now() - wall) / 1000,
    cpuSeconds: cpu() - cpuAt,
    putPages: writes.length,
    putPageBytes: upload.bytesUploaded,
  };
  await upload.blob.delete();

  const downloadAlone: Floors['downloadAlone'] = [];
  for (const connections of [1, DEFAULT_CONNECTIONS]) {
    wall = performance.now();
    cpuAt = cpu();
    let bytes = 0;
    for await (const chunk of downloadStream(subject.url, {
      timeoutMs: 60_000,
      expectedSize: subject.tarballSize,
      connections,
    }))
      bytes += (chunk as Buffer).length;
    check(bytes === subject.tarballSize, `downloadStream delivered ${bytes} bytes`);
    const wallSeconds = (performance.now() - wall) / 1000;
    downloadAlone.push({
      connections,
      wallSeconds,
      // The bosh.io fake runs in this process too: its TLS and reads are in this figure.
      cpuSeconds: cpu() - cpuAt,
      timesTheCap: subject.tarballSize / wallSeconds / cap,
    });
  }
  return {
    decompression,
    upload: uploadFigures,
    networkOneConnectionSeconds: subject.tarballSize / cap,
    downloadAlone,
  };
}

interface SizeResult {
  virtualMiB: number;
  tarballBytes: number;
  vhdBytes: number;
  nonZeroBytes: number;
  extents: number;
  loadBefore: number[];
  loadAfter: number[];
  original: Run;
  mirror: Run;
  baseline?: Run;
  floors: Floors;
  profile?: ProfileSummary;
}

async function benchSize(virtualMiB: number, opts: Options, temp: string): Promise<SizeResult> {
  const loadBefore = load();
  const version = `1.${virtualMiB}`;
  const tarball = join(temp, `stemcell-${virtualMiB}.tgz`);
  log(
    `\n== ${virtualMiB} MiB virtual disk, ${opts.dataPercent} % non-zero (load average ${loadBefore.join(' ')})`,
  );
  const fixture = await writeLargeStemcellFixture(tarball, {
    virtualSizeMiB: virtualMiB,
    // Blocks land at random and overlap: asking for -ln(1 - p) of the disk covers about p of it.
    dataMiB: Math.round(virtualMiB * -Math.log(1 - Math.min(opts.dataPercent, 95) / 100)),
    seed: SEED,
    series: SERIES,
    version,
  });
  const vhdSize = virtualMiB * MIB + 512;
  const dataBytes = fixture.extents.reduce((total, e) => total + e.length, 0);
  log(
    `fixture: tarball ${mib(fixture.size)} MiB, root.vhd ${mib(vhdSize)} MiB, ${mib(dataBytes)} MiB non-zero ` +
      `(${((100 * dataBytes) / vhdSize).toFixed(1)} %) in ${fixture.extents.length} extents`,
  );
  const local = await startLocalAzure({ pollsUntilDone: 1 });
  try {
    // The upload floor runs here, with a token from the same managed-identity endpoint as the CLI.
    Object.assign(process.env, local.identity.env());
    local.boshio.faults.perConnectionBytesPerSecond = opts.perConnectionBytesPerSecond;
    local.boshio.publish(SERIES, { version, tarball: { path: tarball, size: fixture.size } });
    const fileName = `bosh-stemcell-${version}-${SERIES.replace(/^bosh-/, '')}.tgz`;
    const subject: Subject = {
      tarball,
      tarballSize: fixture.size,
      vhdSize,
      extents: fixture.extents,
      dataBytes,
      version,
      url: `${local.boshio.url}/d/stemcells/${SERIES}/${version}/${fileName}`,
    };
    const cap = opts.perConnectionBytesPerSecond;
    log('original ...');
    const original = await runOriginal(local, subject, temp, cap);
    check(original.storedBytes >= dataBytes, `the original stored ${original.storedBytes} bytes`);
    log(`mirror ... (load average ${load().join(' ')})`);
    const profileDir = opts.cpuProfDir === undefined ? undefined : join(opts.cpuProfDir, String(virtualMiB));
    const mirror = await runMirror(local, subject, temp, cap, opts.concurrency, profileDir);
    check(
      mirror.storedBytes === dataBytes,
      `the mirror stored ${mirror.storedBytes} bytes, expected ${dataBytes}`,
    );
    check(local.arm.imageVersions.size === 1, 'the mirror created no image version');
    const baseline =
      opts.baselineCli === undefined
        ? undefined
        : await runBaseline(local, subject, temp, opts, { cli: opts.baselineCli, who: 'baseline' });
    log(`floors ... (load average ${load().join(' ')})`);
    const floors = await measureFloors(
      local,
      subject,
      join(temp, 'original', 'image', 'root.vhd'),
      opts.concurrency,
      cap,
    );
    let profile: ProfileSummary | undefined;
    if (profileDir !== undefined) {
      const file = (await readdir(profileDir)).find((name) => name.endsWith('.cpuprofile'));
      if (file) profile = await summariseProfile(join(profileDir, file));
    }
    return {
      virtualMiB,
      tarballBytes: fixture.size,
      vhdBytes: vhdSize,
      nonZeroBytes: dataBytes,
      extents: fixture.extents.length,
      loadBefore,
      loadAfter: load(),
      original,
      mirror,
      ...(baseline ? { baseline } : {}),
      floors,
      ...(profile ? { profile } : {}),
    };
  } finally {
    await local.stop();
    await rm(join(temp, 'original'), { recursive: true, force: true });
    await rm(tarball, { force: true });
  }
}

/** Another build's CLI on the same stemcell, after the mirror's version and blob are removed again. */
async function runBaseline(
  local: LocalAzure,
  subject: Subject,
  temp: string,
  opts: Options,
  build: { cli: string; who: string },
): Promise<Run> {
  local.arm.imageVersions.clear();
  await new ContainerClient(
    `${local.azurite.blobEndpoint}/${VHD_CONTAINER}`,
    local.azurite.sharedKeyCredential,
  )
    .getPageBlobClient(vhdBlobName(SERIES, subject.version))
    .delete();
  log(`${build.who} (${build.cli}) ... (load average ${load().join(' ')})`);
  const run = await runMirror(
    local,
    subject,
    temp,
    opts.perConnectionBytesPerSecond,
    opts.concurrency,
    undefined,
    build,
  );
  check(run.storedBytes === subject.dataBytes, `the ${build.who} stored ${run.storedBytes} bytes`);
  check(local.arm.imageVersions.size === 1, `the ${build.who} created no image version`);
  return run;
}

function printSize(result: SizeResult, opts: Options): void {
  const { original, mirror, floors } = result;
  log(
    `\n${result.virtualMiB} MiB: tarball ${mib(result.tarballBytes)} MiB, ${mib(result.nonZeroBytes)} MiB non-zero; ` +
      `load average ${result.loadBefore.join(' ')} before, ${result.loadAfter.join(' ')} after`,
  );
  const phaseRow = (who: string, p: Phase): string[] => [
    `${who}: ${p.name}`,
    secs(p.wallSeconds),
    secs(p.cpuSeconds),
    mib(p.peakRssBytes),
    '',
    p.putPageBytes === undefined ? '' : mib(p.putPageBytes),
    p.putPages === undefined ? '' : String(p.putPages),
    p.modeledNetworkSeconds === undefined ? '' : secs(Math.max(p.modeledNetworkSeconds, p.cpuSeconds)),
  ];
  const totalRow = (run: Run): string[] => [
    `${run.who}: total`,
    secs(run.wallSeconds),
    secs(run.cpuSeconds),
    mib(run.peakRssBytes),
    mib(run.peakTempDiskBytes),
    mib(run.putPageBytes),
    `${run.putPages} (${run.blobRequests})`,
    secs(run.modeledAzureSeconds),
  ];
  table([
    ['', 'wall s', 'CPU s', 'peak RSS MiB', 'peak temp MiB', 'MiB sent', 'Put Page (all)', 'Azure model s'],
    ...original.phases.map((p) => phaseRow('original', p)),
    totalRow(original),
    ...mirror.phases.map((p) => phaseRow('mirror', p)),
    totalRow(mirror),
    ...(result.baseline
      ? [...result.baseline.phases.map((p) => phaseRow('baseline', p)), totalRow(result.baseline)]
      : []),
    [
      'floor: decompression',
      secs(floors.decompression.wallSeconds),
      secs(floors.decompression.cpuSeconds),
      '',
      '',
      '',
      '',
      '',
    ],
    [
      `floor: upload (concurrency ${opts.concurrency})`,
      secs(floors.upload.wallSeconds),
      secs(floors.upload.cpuSeconds),
      '',
      '',
      mib(floors.upload.putPageBytes),
      String(floors.upload.putPages),
      secs(modelUpload(floors.upload.putPageBytes, floors.upload.putPages)),
    ],
    [
      'floor: download, one connection at the cap',
      secs(floors.networkOneConnectionSeconds),
      '',
      '',
      '',
      '',
      '',
      '',
    ],
    ...floors.downloadAlone.map((d) => [
      `downloadStream alone, ${d.connections} connection(s): ${d.timesTheCap.toFixed(2)}x the cap`,
      secs(d.wallSeconds),
      secs(d.cpuSeconds),
      '',
      '',
      '',
      '',
      '',
    ]),
  ]);
  const [downloadExtract, upload] = mirror.phases as [Phase, Phase];
  log(
    `download: original ${mib(original.downloadedBytes)} MiB in ${original.downloadRequests} request(s) on ` +
      `${original.downloadConnections} connection(s); mirror ${mib(mirror.downloadedBytes)} MiB in ` +
      `${mirror.downloadRequests} request(s), up to ${mirror.downloadConnections} at once ` +
      `(cap ${(opts.perConnectionBytesPerSecond / MIB).toFixed(1)} MiB/s per connection); bytes received past ` +
      `the tarball's ${result.tarballBytes}: original ${original.downloadedBytes - result.tarballBytes}, ` +
      `mirror ${mirror.downloadedBytes - result.tarballBytes}`,
  );
  log(
    `mirror / original: wall ${ratio(mirror.wallSeconds, original.wallSeconds)}, CPU ${ratio(mirror.cpuSeconds, original.cpuSeconds)}, ` +
      `peak RSS ${ratio(mirror.peakRssBytes, original.peakRssBytes)}, temp disk ${ratio(mirror.peakTempDiskBytes, original.peakTempDiskBytes)}, ` +
      `bytes sent ${ratio(mirror.putPageBytes, original.putPageBytes)}, Azure model ${ratio(mirror.modeledAzureSeconds, original.modeledAzureSeconds)}`,
  );
  const toBlob = mirror.phases.slice(0, 2);
  const toBlobWall = toBlob.reduce((t, p) => t + p.wallSeconds, 0);
  const toBlobCpu = toBlob.reduce((t, p) => t + p.cpuSeconds, 0);
  log(
    `mirror / original up to the uploaded blob (the original has no gallery step): ` +
      `wall ${ratio(toBlobWall, original.wallSeconds)}, CPU ${ratio(toBlobCpu, original.cpuSeconds)}`,
  );
  const decompressionFloor = Math.max(
    floors.decompression.wallSeconds,
    floors.networkOneConnectionSeconds / Math.max(1, mirror.downloadConnections),
  );
  if (mirror.overlapped) {
    const floorsMax = Math.max(decompressionFloor, floors.upload.wallSeconds);
    log(
      `mirror / floor: download + extract + upload ${ratio(downloadExtract.wallSeconds + upload.wallSeconds, floorsMax)} ` +
        `of max(decompression or network at ${mirror.downloadConnections} connection(s), bare upload) = ${secs(floorsMax)} s, ` +
        `${ratio(downloadExtract.wallSeconds + upload.wallSeconds, decompressionFloor + floors.upload.wallSeconds)} of their sum`,
    );
  } else {
    log(
      `mirror / floor: download + extract ${ratio(downloadExtract.wallSeconds, decompressionFloor)} of max(decompression, ` +
        `network at ${mirror.downloadConnections} connection(s)) = ${secs(decompressionFloor)} s; ` +
        `upload ${ratio(upload.wallSeconds, floors.upload.wallSeconds)} of the bare upload`,
    );
  }
  const { baseline } = result;
  if (baseline) {
    const toBlob = (run: Run): Phase[] => run.phases.slice(0, 2);
    const sum = (phases: Phase[], key: 'wallSeconds' | 'cpuSeconds'): number =>
      phases.reduce((t, p) => t + p[key], 0);
    log(
      `mirror / baseline (same run): up to the complete blob wall ${ratio(sum(toBlob(mirror), 'wallSeconds'), sum(toBlob(baseline), 'wallSeconds'))}, ` +
        `CPU ${ratio(sum(toBlob(mirror), 'cpuSeconds'), sum(toBlob(baseline), 'cpuSeconds'))}; peak RSS ` +
        `${ratio(mirror.peakRssBytes, baseline.peakRssBytes)}, Azure model ${ratio(mirror.modeledAzureSeconds, baseline.modeledAzureSeconds)}`,
    );
  }
  log(
    `mirror / non-zero bytes: temp disk ${ratio(mirror.peakTempDiskBytes, result.nonZeroBytes)}, ` +
      `bytes sent ${ratio(mirror.putPageBytes, result.nonZeroBytes)}, stored ${ratio(mirror.storedBytes, result.nonZeroBytes)}; ` +
      `original sends ${ratio(original.putPageBytes, result.nonZeroBytes)}`,
  );
  if (result.profile) {
    log(`CPU profile of the mirror (main thread, ${secs(result.profile.totalMs / 1000)} s sampled):`);
    for (const c of result.profile.categories) log(`  ${secs(c.ms / 1000).padStart(6)} s  ${c.category}`);
    log('  top self time:');
    for (const f of result.profile.functions) log(`  ${secs(f.ms / 1000).padStart(6)} s  ${f.name}`);
  }
}

async function sweepMain(opts: Options): Promise<void> {
  const size = opts.sizesMiB[0]!;
  log(`CPU per GiB on this machine (load average ${load().join(' ')}):`);
  const micro = await microFigures();
  log(
    `  SHA-1 ${micro.sha1.toFixed(2)} s, SHA-256 ${micro.sha256.toFixed(2)} s, zero scan + sparse write: ` +
      `${micro.zeroScanOfZeros.toFixed(2)} s of zeros, ${micro.zeroScanOfData.toFixed(2)} s of data`,
  );
  log(`page-write sweep on a ${size} MiB disk, ${opts.dataPercent} % non-zero:`);
  const rows = await writeSweep(size, Math.round(size * -Math.log(1 - opts.dataPercent / 100)), log);
  if (opts.json) process.stdout.write(`${JSON.stringify({ micro, sweep: rows }, null, 2)}\n`);
}

async function main(): Promise<void> {
  const opts = options();
  jsonMode = opts.json;
  if (opts.sweep) return sweepMain(opts);
  log(
    `bosh-azure-stemcell-mirror benchmark: Node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ` +
      `sizes ${opts.sizesMiB.join(', ')} MiB, upload concurrency ${opts.concurrency}, ` +
      `per-connection cap ${opts.perConnectionBytesPerSecond / 125_000} Mbit/s`,
  );
  const temp = await mkdtemp(join(tmpdir(), 'basm-bench-'));
  const results: SizeResult[] = [];
  try {
    for (const size of opts.sizesMiB) {
      const result = await benchSize(size, opts, temp);
      results.push(result);
      printSize(result, opts);
    }
    if (results.length > 1) {
      log(
        '\npeak RSS by size (MiB): ' +
          results
            .map(
              (r) =>
                `${r.virtualMiB} MiB disk: mirror ${mib(r.mirror.peakRssBytes)}, original ${mib(r.original.peakRssBytes)}`,
            )
            .join('; '),
      );
    }
    log(
      '\n"Azure model s" = per phase max(network, CPU on one core): download at the per-connection cap times the ' +
        "connections used, upload at max(bytes / 60 MiB/s, Put Page / 500 per s); the original's phases add up, " +
        "the mirror's download and extraction stream together, with its upload alongside (then one vCPU runs " +
        'all of their CPU). Azurite on loopback is not Azure: its upload ' +
        'times show the client only.',
    );
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ node: process.version, cpus: cpus().length, options: opts, results }, null, 2)}\n`,
      );
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
