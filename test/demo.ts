/**
 * `npm run demo`: the whole mirror, once, on this machine, without an Azure subscription. Starts the
 * local services of the end-to-end suite, publishes a small generated stemcell on the bosh.io fake, runs
 * the command line against them exactly as an operator would, shows what landed, and stops everything.
 */

import { spawn } from 'node:child_process';
import { REPO_ROOT } from './support/cli-process.js';
import { startLocalAzure } from './support/local-azure.js';
import { buildStemcellFixture } from './support/stemcell-fixture.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

function say(text: string): void {
  process.stderr.write(process.stderr.isTTY ? `\x1b[1m${text}\x1b[0m\n` : `${text}\n`);
}

function runCli(env: Record<string, string>): Promise<number> {
  return new Promise<number>((done, fail) => {
    const child = spawn('npm', ['run', '--silent', 'stemcell-mirror', '--', 'mirror'], {
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
    say(
      `bosh.io fake publishes ${SERIES} ${version} (a generated stemcell: 256 MiB VHD, 48 MiB of it data).`,
    );
    say('The gallery is empty. The second run shows that a run with nothing to do changes nothing.');
    let status = 0;
    for (const run of ['first', 'second']) {
      say(`\n$ npm run --silent stemcell-mirror -- mirror    # ${run} run`);
      status = await runCli(local.env);
      say(`exit status ${status}`);
      if (status !== 0) break;
    }
    say('\nThe gallery now holds:');
    for (const [name, version] of local.arm.imageVersions) {
      const state = (version as { properties?: { provisioningState?: string } }).properties
        ?.provisioningState;
      process.stderr.write(`  ${name}  ${state ?? ''}\n`);
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
