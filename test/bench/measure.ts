/**
 * A child process of the bench measured from outside and from inside: the peak temp disk under a folder,
 * what the fake bosh.io's bucket served it, and the probe's readings (--import probe.js).
 */

import { spawn } from 'node:child_process';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/cli-process.js';
import type { LocalAzure } from '../support/local-azure.js';
import type { ProbeReport } from './probe.js';

const PROBE = join(REPO_ROOT, 'dist/test/bench/probe.js');

/** One child run as both runs measure it: what the bucket served it, the peak temp disk, the probe's report. */
export interface Measured {
  report: ProbeReport;
  stdout: string;
  /** Wall time the child was started, on the probe's clock. */
  started: number;
  peakTempDiskBytes: number;
  downloadedBytes: number;
  downloadRequests: number;
  downloadConnections: number;
}

export async function measureChild(
  local: LocalAzure,
  diskDir: string,
  args: string[],
  env: Record<string, string>,
  probeOut: string,
): Promise<Measured> {
  local.boshio.resetServed();
  const requestsBefore = local.boshio.requests.length;
  const disk = sampleDisk(diskDir);
  const started = performance.timeOrigin + performance.now();
  const { report, stdout } = await runChild(args, env, probeOut);
  const peakTempDiskBytes = await disk.stop();
  return {
    report,
    stdout,
    started,
    peakTempDiskBytes,
    downloadedBytes: local.boshio.bytesServed,
    downloadRequests: local.boshio.requests.length - requestsBefore,
    downloadConnections: local.boshio.peakConnections,
  };
}

/** Allocated bytes under `dir`, sampled every 100 ms until stopped: the peak temp disk. */
function sampleDisk(dir: string): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const usage = async (path: string): Promise<number> => {
    let total = 0;
    for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) total += await usage(child);
      else
        total += await stat(child).then(
          (s) => s.blocks * 512,
          () => 0,
        );
    }
    return total;
  };
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await usage(dir));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

async function runChild(
  args: string[],
  env: Record<string, string>,
  probeOut: string,
): Promise<{ report: ProbeReport; stdout: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', PROBE, ...args], {
      cwd: REPO_ROOT,
      env: { ...env, BENCH_PROBE_OUT: probeOut },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', fail);
    child.on('close', (status) => {
      if (status !== 0) {
        fail(
          new Error(
            `${args.join(' ')} exited ${status}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
          ),
        );
        return;
      }
      readFile(probeOut, 'utf8').then(
        (text) => done({ report: JSON.parse(text) as ProbeReport, stdout }),
        fail,
      );
    });
  });
}
