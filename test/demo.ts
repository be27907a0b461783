/**
 * `npm run demo`: the whole mirror, once, on this machine, without an Azure subscription. Starts the
 * local services of the end-to-end suite, publishes a small generated stemcell on the bosh.io fake, runs
 * the command line against them exactly as an operator would, shows what landed, and stops everything.
 */

import { spawn } from 'node:child_process';
import { formatBytes } from '../src/progress.js';
import { REPO_ROOT } from './support/cli-process.js';
import { startLocalAzure } from './support/local-azure.js';
import { buildStemcellFixture } from './support/stemcell-fixture.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

function say(text: string): void {
  process.stderr.write(process.stderr.isTTY ? `\x1b[1m${text}\x1b[0m\n` : `${text}\n`);
}

function runCli(env: Record<string, string>): Promise<number> {
  return new Promise<number>((done, fail) => {
    const child = spawn('npx', ['stemcell-mirror', 'mirror'], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', fail);
    child.on('close', (code) => done(code ?? 1));
  });
}

async function main(): Promise<number> {
  say(
    'Starting Azurite (HTTPS, OAuth), a managed-identity endpoint and fakes of bosh.io, ARM and GitHub on 127.0.0.1 ...',
  );
  const local = await startLocalAzure({ pollsUntilDone: 3 });
  try {
    const version = '1.201';
    const fixture = await buildStemcellFixture({
      series: SERIES,
      version,
      seed: 1,
      virtualSizeMiB: 256,
      dataMiB: 48,
    });
    local.boshio.publish(SERIES, { version, tarball: fixture.tarball });
    // What the VHD holds beyond zeros: the fixture's blocks land at random offsets and overlap, so this is
    // less than the 48 MiB asked for, and it is exactly what the sparse upload sends.
    const dataBytes = fixture.extents.reduce((sum, extent) => sum + extent.length, 0);
    say(
      `bosh.io fake publishes ${SERIES} ${version} (a generated stemcell: ${formatBytes(fixture.vhd.length - 512)} VHD, ` +
        `${formatBytes(dataBytes)} of it data, the rest zeros, which are not uploaded).`,
    );
    say('The gallery is empty. The second run shows that a run with nothing to do changes nothing.');
    let status = 0;
    for (const run of ['first', 'second']) {
      say(`\n$ npx stemcell-mirror mirror    # ${run} run`);
      status = await runCli(local.env);
      say(`exit status ${status}`);
      if (status !== 0) break;
    }
    say('\nThe gallery now holds:');
    let tagged: string | undefined;
    for (const [name, version] of local.arm.imageVersions) {
      const { properties, tags } = version as {
        properties?: { provisioningState?: string };
        tags?: Record<string, string>;
      };
      tagged = tags?.['image_sha256'];
      process.stderr.write(`  ${name}  ${properties?.provisioningState ?? ''}\n`);
    }
    if (status === 0 && tagged === fixture.imageSha256) {
      say(
        'Checksums verified while streaming: the tarball against the SHA-256 bosh.io lists, the image against ' +
          `the SHA-1 in stemcell.MF, and the VHD footer; the version is tagged image_sha256 ${tagged.slice(0, 12)}..., ` +
          'the SHA-256 of that verified image.',
      );
    }
    say('GitHub workflow dispatches:');
    for (const d of local.github.dispatches)
      process.stderr.write(`  ${d.owner}/${d.repo} ${d.workflow}@${d.ref} ${JSON.stringify(d.inputs)}\n`);
    return status;
  } finally {
    await local.stop();
  }
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(
      `demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
