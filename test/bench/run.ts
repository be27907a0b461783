/**
 * `npm run bench`: the mirror against the original project's algorithm and against the floor of each
 * phase, in the same run, on the same generated stemcell, the same bosh.io fake and the same Azurite.
 *
 *   node dist/test/bench/run.js [--quick] [--virtual-mib 512,5120] [--data-percent 35]
 *     [--per-connection-mbps 400] [--concurrency 8] [--cpu-prof DIR] [--baseline-cli PATH]
 *     [--baseline-node-flags=FLAGS] [--pairs N] [--json]
 *
 * - original: download the whole tarball to disk, extract it, extract `image`, upload root.vhd in 4 MiB
 *   chunks skipping all-zero ones, 4 workers (test/bench/original.ts), as a child process;
 * - mirror: the built CLI as its npm script runs it (`node <the script's flags> dist/src/cli.js mirror`), as a
 *   child process, against the same services;
 * - baseline (with --baseline-cli): another build's CLI (e.g. the commit before a change), run the same way
 *   right after the mirror on the same stemcell, to measure a change side by side in one run; with the
 *   mirror's Node flags, or --baseline-node-flags (`--baseline-cli dist/src/cli.js --baseline-node-flags=`
 *   measures this build without them); --pairs N runs N pairs of mirror and baseline in all, the order
 *   alternating, and prints each pair and the medians;
 * - floors: bare decompression of the tarball (read -> SHA-256 -> gunzip -> tar -> gunzip -> discard),
 *   bare Put Page of the same non-zero ranges at the same concurrency, and the network time of the
 *   tarball at the per-connection cap.
 * Both children run under probe.ts (CPU, peak RSS and what the memory holds at it, requests and bytes to
 * the Blob service, per phase); the bench samples their temp directory for the peak temp disk. Exits
 * non-zero only when a result is wrong (a blob that differs from the fixture, a failed run), never because
 * of a timing. The runs are in runs.ts, the floors in floor.ts, the tables in report.ts.
 */

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalAzure, type LocalAzure } from '../support/local-azure.js';
import { writeLargeStemcellFixture } from '../support/stemcell-fixture.js';
import { measureFloors } from './floor.js';
import { check, load, log, mib, MIB, setJsonMode } from './output.js';
import { summariseProfile } from './profile.js';
import type { ProfileSummary } from './profile.js';
import { printSize, type SizeResult } from './report.js';
import {
  SERIES,
  announce,
  runBaseline,
  runMirror,
  runOriginal,
  runPairs,
  thisBuild,
  type Subject,
} from './runs.js';
import { microFigures, writeSweep } from './sweep.js';

const SEED = 20250102;

interface Options {
  sizesMiB: number[];
  dataPercent: number;
  perConnectionBytesPerSecond: number;
  concurrency: number;
  cpuProfDir: string | undefined;
  baselineCli: string | undefined;
  /** More pairs of mirror and baseline runs after the first, order alternating (--pairs N: N - 1 more). */
  pairs: number;
  /** The baseline's Node flags; undefined: the mirror's. */
  baselineNodeFlags: string[] | undefined;
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
      'baseline-node-flags': { type: 'string' },
      pairs: { type: 'string', default: '1' },
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
    pairs: integer('pairs', values.pairs, 1),
    baselineNodeFlags: values['baseline-node-flags']?.split(/\s+/).filter((flag) => flag !== ''),
    json: values.json,
    sweep: values.sweep,
  };
}

/**
 * A fresh set of local services with the stemcell published on the bosh.io fake at the per-connection cap:
 * Azurite keeps a deleted blob's pages in memory until its 10-minute collection, so each pair of extra runs
 * gets its own.
 */
async function startServices(
  tarball: string,
  fixture: { size: number; vhdSize: number; extents: Subject['extents']; dataBytes: number },
  opts: Options,
  version: string,
): Promise<{ local: LocalAzure; subject: Subject }> {
  const local = await startLocalAzure({ pollsUntilDone: 1 });
  // The upload floor runs here, with a token from the same managed-identity endpoint as the CLI.
  Object.assign(process.env, local.identity.env());
  local.boshio.faults.perConnectionBytesPerSecond = opts.perConnectionBytesPerSecond;
  local.boshio.publish(SERIES, { version, tarball: { path: tarball, size: fixture.size } });
  const fileName = `bosh-stemcell-${version}-${SERIES.replace(/^bosh-/, '')}.tgz`;
  const subject: Subject = {
    tarball,
    tarballSize: fixture.size,
    vhdSize: fixture.vhdSize,
    extents: fixture.extents,
    dataBytes: fixture.dataBytes,
    version,
    url: `${local.boshio.url}/d/stemcells/${SERIES}/${version}/${fileName}`,
  };
  return { local, subject };
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
  const shape = { size: fixture.size, vhdSize, extents: fixture.extents, dataBytes };
  const { local, subject } = await startServices(tarball, shape, opts, version);
  const cap = opts.perConnectionBytesPerSecond;
  const settings = { cap, concurrency: opts.concurrency };
  const mirrorBuild = thisBuild();
  const baselineBuild =
    opts.baselineCli === undefined
      ? undefined
      : {
          cli: opts.baselineCli,
          who: 'baseline',
          nodeFlags: opts.baselineNodeFlags ?? mirrorBuild.nodeFlags,
        };
  let result: SizeResult;
  try {
    log('original ...');
    const original = await runOriginal(local, subject, temp, cap);
    check(original.storedBytes >= dataBytes, `the original stored ${original.storedBytes} bytes`);
    announce(mirrorBuild);
    const profileDir = opts.cpuProfDir === undefined ? undefined : join(opts.cpuProfDir, String(virtualMiB));
    const mirror = await runMirror(local, subject, temp, cap, opts.concurrency, profileDir, mirrorBuild);
    check(
      mirror.storedBytes === dataBytes,
      `the mirror stored ${mirror.storedBytes} bytes, expected ${dataBytes}`,
    );
    check(local.arm.imageVersions.size === 1, 'the mirror created no image version');
    const baseline = baselineBuild && (await runBaseline(local, subject, temp, settings, baselineBuild));
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
    result = {
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
  }
  try {
    if (baselineBuild && result.baseline && opts.pairs > 1) {
      const more = await runPairs(
        () => startServices(tarball, shape, opts, version),
        temp,
        settings,
        { mirror: mirrorBuild, baseline: baselineBuild },
        opts.pairs - 1,
      );
      result.pairs = [{ mirror: result.mirror, baseline: result.baseline }, ...more];
      result.loadAfter = load();
    }
  } finally {
    await rm(tarball, { force: true });
  }
  return result;
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
  setJsonMode(opts.json);
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
