/**
 * `npm run bench:idle`: what a check with nothing to do costs, on this machine with the local services:
 * `mirror` on a series whose newest stemcell the gallery already holds (what every timer run but the one
 * after a release does), and `status`. Both through the built CLI, as an operator runs them: the seconds
 * include starting Node. Prints requests per service and seconds; exits non-zero only when a run failed or
 * did something (a download, an ARM write), never because of a timing.
 *
 *   node dist/test/bench/idle-check.js [--runs N]
 */

import { parseArgs } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import { runStemcellMirrorDirect, type CliRun } from '../support/cli-process.js';
import { startLocalAzure, type LocalAzure } from '../support/local-azure.js';
import { buildStemcellFixture } from '../support/stemcell-fixture.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

interface Sample {
  seconds: number;
  boshio: number;
  downloads: number;
  armReads: number;
  armWrites: number;
  tokens: number;
  blobsChanged: number;
}

async function blobEtags(local: LocalAzure): Promise<Map<string, string>> {
  const container = new BlobServiceClient(
    local.azurite.blobEndpoint,
    local.azurite.sharedKeyCredential,
  ).getContainerClient('stemcell');
  const etags = new Map<string, string>();
  // Before the first run the container does not exist yet.
  if (!(await container.exists())) return etags;
  for await (const blob of container.listBlobsFlat()) etags.set(blob.name, blob.properties.etag ?? '');
  return etags;
}

async function measure(local: LocalAzure, args: string[], env: Record<string, string>): Promise<Sample> {
  const counts = {
    boshio: local.boshio.requests.length,
    arm: local.arm.requests.length,
    tokens: local.identity.requests.length,
  };
  const before = await blobEtags(local);
  const started = process.hrtime.bigint();
  const run: CliRun = await runStemcellMirrorDirect(args, env);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (run.status !== 0)
    throw new Error(`${args.join(' ')} failed (${run.status}):\n${run.stdout}\n${run.stderr}`);
  const after = await blobEtags(local);
  const boshio = local.boshio.requests.slice(counts.boshio);
  const arm = local.arm.requests.slice(counts.arm);
  return {
    seconds,
    boshio: boshio.length,
    downloads: boshio.filter((r) => !r.path.startsWith('/api/')).length,
    armReads: arm.filter((r) => r.method === 'GET').length,
    armWrites: arm.filter((r) => r.method !== 'GET').length,
    tokens: local.identity.requests.length - counts.tokens,
    blobsChanged: [...after].filter(([name, etag]) => before.get(name) !== etag).length,
  };
}

function report(what: string, samples: Sample[]): void {
  const seconds = samples.map((s) => s.seconds).sort((a, b) => a - b);
  const median = seconds[Math.floor(seconds.length / 2)] ?? 0;
  const [first] = samples;
  console.log(
    `${what}: median ${median.toFixed(2)} s (min ${seconds[0]?.toFixed(2)}, max ${seconds.at(-1)?.toFixed(2)}) over ${samples.length} runs; ` +
      `per run: bosh.io ${first?.boshio} (downloads ${first?.downloads}), ARM ${first?.armReads} GET + ${first?.armWrites} writes, ` +
      `tokens ${first?.tokens}, blobs written ${first?.blobsChanged}`,
  );
  if (samples.some((s) => s.downloads > 0 || s.armWrites > 0))
    throw new Error(`${what} downloaded or wrote to ARM`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
  const runs = Math.max(1, Number(values.runs));
  const local = await startLocalAzure({ pollsUntilDone: 1, notify: false });
  try {
    const env = { ...local.env, BASM_STEMCELL_SERIES: SERIES };
    const fixture = await buildStemcellFixture({ series: SERIES, version: '1.100' });
    local.boshio.publish(SERIES, { version: '1.100', tarball: fixture.tarball });
    await measure(local, ['mirror', '--json'], env);
    const idle: Sample[] = [];
    const status: Sample[] = [];
    for (let i = 0; i < runs; i++) {
      idle.push(await measure(local, ['mirror', '--json'], env));
      status.push(await measure(local, ['status', '--json'], env));
    }
    console.log(
      `machine: ${(await import('node:os')).cpus().length} cores, load ${(await import('node:os')).loadavg()[0]?.toFixed(2)}`,
    );
    report('mirror, nothing to do', idle);
    report('status', status);
  } finally {
    await local.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
