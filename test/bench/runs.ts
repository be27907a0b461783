/**
 * The measured runs of one size: the original's algorithm and the mirror's CLI (this build or a baseline
 * build) as child processes, cut into phases at the probe's marks, with their modeled time on Azure.
 */

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ContainerClient, type PageBlobClient } from '@azure/storage-blob';
import { VHD_CONTAINER } from '../../src/config.js';
import { vhdBlobName } from '../../src/pageblob.js';
import type { Extent } from '../../src/vhd.js';
import { CLI_ENTRY, REPO_ROOT, cliNodeFlags } from '../support/cli-process.js';
import type { LocalAzure } from '../support/local-azure.js';
import { measureChild, type Measured } from './measure.js';
import { MIB, check, load, log } from './output.js';
import type { MemoryPeak, ProbeReading, ProbeReport } from './probe.js';
import { pageRangeBytes } from './upload.js';

export const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
/** Azure's scalability targets for one standard page blob. */
const AZURE_BYTES_PER_SECOND = 60 * MIB;
const AZURE_WRITES_PER_SECOND = 500;
const ORIGINAL = join(REPO_ROOT, 'dist/test/bench/original.js');

/** One phase of a run: what it took and what it used. */
export interface Phase {
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

export interface Run {
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
  /** What the memory held at the highest sampled RSS, and in which phase. */
  memoryPeak?: MemoryPeak & { phase: string };
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

export interface Subject {
  tarball: string;
  tarballSize: number;
  vhdSize: number;
  extents: Extent[];
  dataBytes: number;
  version: string;
  url: string;
}

export function modelUpload(putPageBytes: number, putPages: number): number {
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

/** The phase the memory peak fell in. */
function phaseAt(phases: Phase[], report: ProbeReport): string {
  let end = report.start.at;
  for (const phase of phases) {
    end += phase.wallSeconds * 1000;
    if (report.memoryPeak!.at <= end) return phase.name;
  }
  return phases.at(-1)?.name ?? '';
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
    ...(report.memoryPeak ? { memoryPeak: { ...report.memoryPeak, phase: phaseAt(phases, report) } } : {}),
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

export async function runOriginal(
  local: LocalAzure,
  subject: Subject,
  temp: string,
  cap: number,
): Promise<Run> {
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

/** A build of the CLI and the Node flags it runs with (the mirror: this build, as its npm script runs it). */
export interface MirrorBuild {
  cli: string;
  who: string;
  nodeFlags: string[];
}

/** This build's CLI with the Node flags of its npm script, as operators run it. */
export function thisBuild(): MirrorBuild {
  return { cli: CLI_ENTRY, who: 'mirror', nodeFlags: cliNodeFlags() };
}

/** How the bench announces a run of a build. */
export function announce(build: MirrorBuild): void {
  log(
    `${build.who} (node ${[...build.nodeFlags, build.cli].join(' ')}) ... (load average ${load().join(' ')})`,
  );
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

export async function runMirror(
  local: LocalAzure,
  subject: Subject,
  temp: string,
  cap: number,
  concurrency: number,
  cpuProfDir: string | undefined,
  build: MirrorBuild = thisBuild(),
): Promise<Run> {
  const profile = cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir];
  const measured = await measureChild(
    local,
    local.workDir,
    [...build.nodeFlags, ...profile, build.cli, 'mirror', '--json', '--series', SERIES],
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

/** A build's CLI (another build, or this one in runPairs) on the stemcell, once an earlier run's version and blob are gone. */
export async function runBaseline(
  local: LocalAzure,
  subject: Subject,
  temp: string,
  settings: { cap: number; concurrency: number },
  build: MirrorBuild,
): Promise<Run> {
  local.arm.imageVersions.clear();
  const container = new ContainerClient(
    `${local.azurite.blobEndpoint}/${VHD_CONTAINER}`,
    local.azurite.sharedKeyCredential,
  );
  // On fresh services (runPairs) there is no container yet.
  if (await container.exists())
    await container.getPageBlobClient(vhdBlobName(SERIES, subject.version)).deleteIfExists();
  announce(build);
  const run = await runMirror(local, subject, temp, settings.cap, settings.concurrency, undefined, build);
  check(run.storedBytes === subject.dataBytes, `the ${build.who} stored ${run.storedBytes} bytes`);
  check(local.arm.imageVersions.size === 1, `the ${build.who} created no image version`);
  return run;
}

/** The mirror's and the baseline's figures of one more pair of runs. */
export interface Pair {
  mirror: Run;
  baseline: Run;
}

/**
 * `count` more pairs of the mirror and the baseline on the same stemcell, each pair on fresh services (Azurite
 * keeps a deleted blob's pages in memory for up to 10 minutes), the order swapped every pair (the baseline
 * first in the first of them, as it ran second before), so a change is seen past the noise of one run and
 * of running first or second.
 */
export async function runPairs(
  services: () => Promise<{ local: LocalAzure; subject: Subject }>,
  temp: string,
  settings: { cap: number; concurrency: number },
  builds: { mirror: MirrorBuild; baseline: MirrorBuild },
  count: number,
): Promise<Pair[]> {
  const pairs: Pair[] = [];
  for (let index = 0; index < count; index++) {
    const order = index % 2 === 0 ? (['baseline', 'mirror'] as const) : (['mirror', 'baseline'] as const);
    const runs: Partial<Pair> = {};
    const { local, subject } = await services();
    try {
      for (const who of order) runs[who] = await runBaseline(local, subject, temp, settings, builds[who]);
    } finally {
      await local.stop();
    }
    pairs.push(runs as Pair);
  }
  return pairs;
}
