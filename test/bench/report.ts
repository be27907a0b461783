/** The bench's tables and ratios for one size: the original, the mirror (and a baseline) and the floors. */

import type { Floors } from './floor.js';
import { MIB, log, mib, ratio, secs, table } from './output.js';
import type { ProfileSummary } from './profile.js';
import { modelUpload, type Pair, type Phase, type Run } from './runs.js';

export interface SizeResult {
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
  /** With --pairs: every pair of mirror and baseline runs, the first one included. */
  pairs?: Pair[];
  floors: Floors;
  profile?: ProfileSummary;
}

export function printSize(
  result: SizeResult,
  opts: { concurrency: number; perConnectionBytesPerSecond: number },
): void {
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
  for (const run of [original, mirror, ...(result.baseline ? [result.baseline] : [])]) printMemoryPeak(run);
  if (result.pairs) printPairs(result.pairs);
  if (result.profile) {
    log(`CPU profile of the mirror (main thread, ${secs(result.profile.totalMs / 1000)} s sampled):`);
    for (const c of result.profile.categories) log(`  ${secs(c.ms / 1000).padStart(6)} s  ${c.category}`);
    log('  top self time:');
    for (const f of result.profile.functions) log(`  ${secs(f.ms / 1000).padStart(6)} s  ${f.name}`);
  }
}

/** Where a run's peak RSS went: V8's heap, the memory Buffers hold, and the rest (Node, code, zlib, TLS, malloc). */
function printMemoryPeak(run: Run): void {
  const peak = run.memoryPeak;
  if (peak === undefined) return;
  const other = peak.rss - peak.heapTotal - peak.external;
  log(
    `${run.who}: peak RSS sampled ${mib(peak.rss)} MiB in '${peak.phase}': V8 heap ${mib(peak.heapTotal)} MiB ` +
      `(${mib(peak.heapUsed)} in use), external ${mib(peak.external)} MiB (Buffers ${mib(peak.arrayBuffers)}), ` +
      `the rest ${mib(other)} MiB (Node and V8 code, zlib, TLS, allocator slack)`,
  );
}

/** Each pair's figures up to the complete blob, and the medians of each and of the pair's ratios. */
function printPairs(pairs: Pair[]): void {
  const toBlob = (run: Run, key: 'wallSeconds' | 'cpuSeconds'): number =>
    run.phases.slice(0, 2).reduce((t, p) => t + p[key], 0);
  const figures = (run: Run): number[] => [
    toBlob(run, 'wallSeconds'),
    toBlob(run, 'cpuSeconds'),
    run.peakRssBytes / MIB,
    run.modeledAzureSeconds,
  ];
  const median = (values: number[]): number => {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = sorted.length >> 1;
    return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  };
  const row = (label: string, values: number[]): string[] => [
    label,
    ...values.map((v, i) => (i === 2 ? v.toFixed(0) : secs(v))),
  ];
  const rows = pairs.flatMap((pair, index) => [
    row(`pair ${index + 1}: mirror`, figures(pair.mirror)),
    row(`pair ${index + 1}: baseline`, figures(pair.baseline)),
  ]);
  const column = (who: 'mirror' | 'baseline', i: number): number[] => pairs.map((p) => figures(p[who])[i]!);
  const medians = (who: 'mirror' | 'baseline'): number[] => [0, 1, 2, 3].map((i) => median(column(who, i)));
  const ratios = [0, 1, 2, 3].map((i) =>
    median(pairs.map((p) => figures(p.mirror)[i]! / figures(p.baseline)[i]!)),
  );
  log(`mirror and baseline in ${pairs.length} pairs, the order alternating (up to the complete blob):`);
  table([
    ['', 'wall s', 'CPU s', 'peak RSS MiB', 'Azure model s'],
    ...rows,
    row('median: mirror', medians('mirror')),
    row('median: baseline', medians('baseline')),
    ['median of mirror / baseline', ...ratios.map((r) => `${r.toFixed(2)}x`)],
  ]);
}
