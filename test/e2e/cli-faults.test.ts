/**
 * Faults that only a real process shows: the built CLI killed (SIGKILL) in the middle of its page-blob
 * upload, and the CLI on a temp directory that fills up. The local services as in mirror-cli.test.ts, with
 * a proxy in front of Azurite that counts the page bytes written and can hold a Put Page unanswered, so
 * the test kills the process at a known point of its upload instead of after a guessed delay.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { planPageWrites } from '../../src/page-ranges.js';
import { vhdBlobName } from '../../src/pageblob.js';
import {
  jsonResults,
  runStemcellMirrorDirect,
  startStemcellMirrorDirect,
  startStemcellMirrorWrapped,
} from '../support/cli-process.js';
import { publishStemcell, startLocalAzure, type LocalAzure } from '../support/local-azure.js';
import type { StemcellFixture } from '../support/stemcell-fixture.js';
import { startStorageProxy, type StorageProxy } from '../support/storage-proxy.js';

const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const NOBLE = 'bosh-azure-hyperv-ubuntu-noble-go_agent';

let local: LocalAzure;
let proxy: StorageProxy;

before(async () => {
  local = await startLocalAzure({
    pollsUntilDone: 1,
    frontStorage: async (endpoint) => (proxy = await startStorageProxy(endpoint)),
  });
});
after(async () => {
  await local?.stop();
});

const publish = (
  series: string,
  version: string,
  options: { dataMiB?: number } = {},
): Promise<StemcellFixture> => publishStemcell(local, { series, version, seed: 11, ...options });

async function workDirFor(name: string): Promise<string> {
  const dir = join(local.workDir, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

function pageBlob(series: string, version: string) {
  return new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential)
    .getContainerClient('stemcell')
    .getPageBlobClient(vhdBlobName(series, version));
}

async function writtenBytes(series: string, version: string): Promise<number> {
  let total = 0;
  for await (const range of pageBlob(series, version).listPageRanges()) total += range.end - range.start + 1;
  return total;
}

/**
 * Frees the lease the killed writer held, as its expiry would (Azure's longest finite lease is 60 s; the
 * refusal of a run that comes sooner is pageblob.test.ts's): breaking it spares the suite a minute's wait.
 */
async function expireDeadWritersLease(series: string, version: string): Promise<void> {
  const blob = pageBlob(series, version);
  if ((await blob.getProperties()).leaseState === 'leased') await blob.getBlobLeaseClient().breakLease(0);
  assert.notEqual((await blob.getProperties()).leaseState, 'leased');
}

function versionsOf(definition: string): string[] {
  return [...local.arm.imageVersions.keys()].filter((k) => k.startsWith(`${definition}/`));
}

const dataBytesOf = (fixture: StemcellFixture): number =>
  planPageWrites(fixture.extents).reduce((sum, w) => sum + w.length, 0);

/** Runs the CLI one page write at a time and SIGKILLs it once the proxy holds one of its writes. */
async function killAtHeldWrite(env: Record<string, string>): Promise<void> {
  const killed = startStemcellMirrorDirect(['mirror', '--json', '--series', JAMMY], {
    ...env,
    BASM_UPLOAD_CONCURRENCY: '1',
  });
  const early = await Promise.race([proxy.nextHold(), killed.done]);
  assert.ok('index' in early, `the CLI ended before its second page write:\n${JSON.stringify(early)}`);
  killed.kill('SIGKILL');
  const ended = await killed.done;
  assert.equal(ended.signal, 'SIGKILL');
}

describe('the process killed mid-upload', { concurrency: 1 }, () => {
  test('fault: the CLI SIGKILLed while it writes the page blob: the next run sends only the missing pages, the blob is byte-identical', async () => {
    const fixture = await publish(JAMMY, '1.300');
    const dataBytes = dataBytesOf(fixture);
    const workDir = await workDirFor('killed');
    const env = { ...local.env, BASM_MOUNTED_DIRECTORY: workDir };

    // One write at a time. The page blob is first written while extracting (downloadAndExtract, under a lease
    // of its own): one write lands, the next is refused, so that step leaves the rest to uploadVhd. There the
    // first write lands, the second is held, and the process dies waiting for it.
    proxy.reset();
    let overlapLease: string | undefined;
    let uploadWrites = 0;
    proxy.fault = ({ index, leaseId }) => {
      overlapLease ??= leaseId;
      if (leaseId === overlapLease) return index === 0 ? 'pass' : 403;
      return uploadWrites++ === 0 ? 'pass' : 'hold';
    };
    try {
      await killAtHeldWrite(env);
    } finally {
      proxy.fault = () => 'pass';
    }
    const landed = await writtenBytes(JAMMY, '1.300');
    assert.ok(landed > 0 && landed < dataBytes, `${landed} of ${dataBytes} bytes landed before the kill`);
    assert.equal(landed, proxy.writtenBytes);
    assert.equal((await pageBlob(JAMMY, '1.300').getProperties()).metadata?.['upload_complete'], undefined);
    assert.deepEqual(versionsOf(JAMMY), [], 'a version was created from an incomplete blob');

    // A dead writer's blob lease (where the upload holds one) lasts until it expires: the next run comes after.
    await expireDeadWritersLease(JAMMY, '1.300');
    proxy.reset();
    const next = await runStemcellMirrorDirect(['mirror', '--json', '--series', JAMMY], {
      ...env,
      // Where the series lock exists: the killed holder's lock is stale after a second, not the default 15 min.
      BASM_SERIES_LOCK_STALE_SECONDS: '1',
    });
    assert.equal(next.status, 0, `${next.stdout}\n${next.stderr}`);
    const [result] = jsonResults(next);
    assert.equal(result?.action, 'created');
    // Counted on the wire (the --json contract carries no byte counts).
    assert.equal(proxy.writtenBytes, dataBytes - landed);
    assert.ok(
      proxy.putPages.every((p) => p.fault === 'pass'),
      `unexpected page writes: ${JSON.stringify(proxy.putPages)}`,
    );
    assert.ok(
      (await pageBlob(JAMMY, '1.300').downloadToBuffer()).equals(fixture.vhd),
      'blob differs from root.vhd',
    );
    assert.deepEqual(versionsOf(JAMMY), [`${JAMMY}/1.300.0`]);
    assert.deepEqual(await readdir(workDir), [], "the killed run's extraction was left behind");
  });

  test('fault: the CLI SIGKILLed mid-extraction after pages were sent: the next run replaces the unverified blob, byte-identical', async () => {
    const fixture = await publish(JAMMY, '1.301');
    const dataBytes = dataBytesOf(fixture);
    const workDir = await workDirFor('killed-extracting');
    const env = { ...local.env, BASM_MOUNTED_DIRECTORY: workDir };

    // A slow bucket (about 5 s for the tarball): the first page write lands, the second is held, and the
    // process dies while it still downloads and extracts.
    proxy.reset();
    proxy.fault = ({ index }) => (index === 0 ? 'pass' : 'hold');
    local.boshio.faults.perConnectionBytesPerSecond = 256 * 1024;
    const servedBefore = local.boshio.bytesServed;
    try {
      await killAtHeldWrite(env);
    } finally {
      proxy.fault = () => 'pass';
      delete local.boshio.faults.perConnectionBytesPerSecond;
    }
    const served = local.boshio.bytesServed - servedBefore;
    assert.ok(served < fixture.tarball.length, `the download had ended (${served} bytes) before the kill`);
    const landed = await writtenBytes(JAMMY, '1.301');
    assert.ok(landed > 0 && landed < dataBytes, `${landed} of ${dataBytes} bytes landed before the kill`);
    const metadata = (await pageBlob(JAMMY, '1.301').getProperties()).metadata ?? {};
    assert.equal(metadata['tarball_sha256'], fixture.sha256, 'the blob is labelled with the listed tarball');
    assert.equal(metadata['image_sha256'], undefined, 'a blob of unverified pages carries an image digest');
    assert.deepEqual(
      versionsOf(JAMMY).filter((v) => v.endsWith('/1.301.0')),
      [],
    );

    // The dead writer's lease lasts until it expires: the next run comes after.
    await expireDeadWritersLease(JAMMY, '1.301');
    proxy.reset();
    const next = await runStemcellMirrorDirect(
      ['mirror', '--json', '--series', JAMMY, '--version', '1.301'],
      {
        ...env,
        BASM_SERIES_LOCK_STALE_SECONDS: '1',
      },
    );
    assert.equal(next.status, 0, `${next.stdout}\n${next.stderr}`);
    const [result] = jsonResults(next);
    assert.equal(result?.action, 'created');
    // Replaced, not resumed: the killed attempt's pages were never verified, so every page is sent again.
    assert.equal(proxy.writtenBytes, dataBytes);
    const blob = pageBlob(JAMMY, '1.301');
    assert.ok((await blob.downloadToBuffer()).equals(fixture.vhd), 'blob differs from root.vhd');
    const complete = (await blob.getProperties()).metadata ?? {};
    assert.equal(complete['upload_complete'], 'true');
    assert.equal(complete['image_sha256'], fixture.imageSha256);
    assert.deepEqual(await readdir(workDir), [], "the killed run's extraction was left behind");
  });
});

/** Whether this process may mount a tmpfs in a private mount namespace (root with unshare). */
function privateTmpfsUnavailable(): string | false {
  if (process.getuid?.() !== 0) return 'mounting a small tmpfs needs root';
  const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt'], {
    encoding: 'utf8',
  });
  if (probe.error !== undefined || probe.status !== 0) {
    return `unshare -m with a tmpfs mount is not possible here: ${probe.error?.message ?? probe.stderr.trim()}`;
  }
  return false;
}

describe('the temp directory full', { concurrency: 1 }, () => {
  const unavailable = privateTmpfsUnavailable();

  test(
    'fault: the temp directory fills up during the extraction: a clear error naming it, nothing left behind, no upload, no version',
    { skip: unavailable },
    async () => {
      await publish(NOBLE, '1.10', { dataMiB: 4 });
      const workDir = await workDirFor('full');
      // A 2 MiB tmpfs over the temp directory, in a mount namespace of the CLI's own (gone when it ends);
      // after the CLI, the shell lists what it left there.
      const script = [
        'mount -t tmpfs -o size=2m tmpfs "$0" || exit 99',
        '"$@"',
        'status=$?',
        'echo "left behind: [$(find "$0" -mindepth 1 | tr "\\n" " ")]" >&2',
        'exit $status',
      ].join('\n');
      const dispatchesBefore = local.github.dispatches.length;
      const run = await startStemcellMirrorWrapped(
        ['unshare', '-m', 'sh', '-c', script, workDir],
        ['mirror', '--json', '--series', NOBLE],
        { ...local.env, BASM_MOUNTED_DIRECTORY: workDir },
      ).done;

      assert.equal(run.status, 1, `${run.stdout}\n${run.stderr}`);
      const [result] = jsonResults(run);
      assert.equal(result?.action, 'failed');
      assert.match(String(result?.error), new RegExp(`${workDir.replace(/[/.]/g, '\\$&')}.* is full`));
      assert.match(String(result?.error), /BASM_MOUNTED_DIRECTORY/);
      assert.match(run.stderr, /left behind: \[\]/);
      assert.equal(await pageBlob(NOBLE, '1.10').exists(), false);
      assert.deepEqual(versionsOf(NOBLE), []);
      assert.equal(local.github.dispatches.length, dispatchesBefore);
    },
  );
});
