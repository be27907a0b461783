/**
 * The command line, built and run as an operator runs it, against the local services: Azurite (HTTPS,
 * OAuth through the managed-identity endpoint) and faithful fakes of bosh.io, ARM and GitHub.
 *
 * Layout:
 * - "stories" run concurrently (most of a run is spent waiting on ARM's long-running operations). Each
 *   story owns its series (so its own bosh.io releases, image definition, blobs and dispatches) and its
 *   own temp directory, and sets up everything it needs in its own `before`: any single test can be run
 *   by name (`--test-name-pattern`). Inside a story, tests run one after the other and only read the
 *   state its `before` made, except where one test is one scenario in several runs.
 *   Assertions about "nothing changed" therefore look at the story's own series (ARM paths under its
 *   image definition, plus any write outside image definitions; bosh.io downloads of its series).
 * - "command-line contract" runs afterwards, alone, so it can assert that nothing at all was called.
 *
 * Most runs use `node dist/src/cli.js` directly (runStemcellMirrorDirect: no npm start-up); the main
 * scenario and some failures run through `npm run --silent stemcell-mirror -- ...` exactly as operators do.
 */

import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { USAGE_LINE } from '../../src/cli.js';
import { MIRROR_STEMCELL_REFERENCE } from '../../src/cpi.js';
import type { ComputeGallery } from '../../src/gallery.js';
import { vhdBlobName } from '../../src/pageblob.js';
import {
  jsonResults,
  runStemcellMirror,
  runStemcellMirrorBin,
  runStemcellMirrorDirect,
  startStemcellMirrorDirect,
  type CliRun,
} from '../support/cli-process.js';
import {
  publishStemcell,
  startLocalAzure,
  storyIn,
  TEST_GALLERY,
  TEST_RESOURCE_GROUP,
  TEST_SUBSCRIPTION,
  type LocalAzure,
  type Story,
} from '../support/local-azure.js';
import { foreignGallery, succeededVersion, wholeVhdPageBlob } from '../support/foreign-versions.js';
import {
  buildStemcellFixture,
  type StemcellFixture,
  type StemcellFixtureOptions,
} from '../support/stemcell-fixture.js';

const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

let local: LocalAzure;

before(async () => {
  local = await startLocalAzure({ pollsUntilDone: 1 });
});
after(async () => {
  await local?.stop();
});

const publish = (
  options: StemcellFixtureOptions & { series: string; version: string },
): Promise<StemcellFixture> => publishStemcell(local, options);

const story = (name: string): Promise<Story> => storyIn(local, name);

/** `mirror --json ...args` with node directly. */
function mirror(s: Story, ...args: string[]): Promise<CliRun> {
  return runStemcellMirrorDirect(['mirror', '--json', ...args], s.env);
}

/** `mirror --json ...args` exactly as operators run it, through npm. */
function mirrorWithNpm(s: Story, ...args: string[]): Promise<CliRun> {
  return runStemcellMirror(['mirror', '--json', ...args], s.env);
}

/** Mirrors in a `before`, failing the setup (with the output) unless the run succeeded. */
async function mirrored(s: Story, series: string): Promise<void> {
  const run = await mirror(s, '--series', series);
  assert.equal(run.status, 0, `setup mirror of ${series} failed:\n${run.stdout}\n${run.stderr}`);
}

function versionsOf(definition: string): string[] {
  return [...local.arm.imageVersions.keys()]
    .filter((k) => k.startsWith(`${definition}/`))
    .map((k) => k.slice(definition.length + 1));
}

/** Whether an ARM path concerns this image definition, or no image definition at all (gallery, ...). */
function concerns(path: string, definition: string): boolean {
  const match = /\/images\/([^/]+)/i.exec(path);
  return match === null || decodeURIComponent(match[1] ?? '').toLowerCase() === definition.toLowerCase();
}

/** PUT and DELETE requests since `since` that concern `definition` (see concerns). */
function armWrites(since: number, definition: string): string[] {
  return local.arm.requests
    .slice(since)
    .filter((r) => r.method === 'PUT' || r.method === 'DELETE')
    .filter((r) => concerns(r.path, definition))
    .map((r) => `${r.method} ${r.path}`);
}

/** Every request that can change something (anything but GET/HEAD) since `since`, as armWrites. */
function armChanges(since: number, definition: string): string[] {
  return local.arm.requests
    .slice(since)
    .filter((r) => r.method !== 'GET' && r.method !== 'HEAD')
    .filter((r) => concerns(r.path, definition))
    .map((r) => `${r.method} ${r.path}`);
}

/** Stemcell downloads (anything but the API) of `series` since `since`. */
function downloads(since: number, series: string): Array<{ path: string; range?: string }> {
  return local.boshio.requests
    .slice(since)
    .filter((r) => !r.path.startsWith('/api/'))
    .filter((r) => decodeURIComponent(r.path).includes(`/${series}/`));
}

async function blobBytes(url: string): Promise<Buffer> {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  const path = new URL(url).pathname.split('/').slice(2).join('/'); // drop the account segment
  const [container, ...name] = path.split('/');
  return service
    .getContainerClient(container ?? '')
    .getBlobClient(decodeURIComponent(name.join('/')))
    .downloadToBuffer();
}

/** The series lock blob's properties, as an administrator sees them. */
async function lockBlob(series: string) {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  return service.getContainerClient('stemcell').getBlobClient(`locks/${series}`).getProperties();
}

/** Waits until a run holds the series (its lock blob is leased). */
async function untilLeased(series: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const leased = await lockBlob(series).then(
      (p) => p.leaseState === 'leased' && p.metadata?.['holder'] !== undefined,
      () => false,
    );
    if (leased) return;
    if (Date.now() > deadline) throw new Error(`no run took series ${series} within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function versionPath(definition: string, version: string): string {
  return (
    `/subscriptions/${TEST_SUBSCRIPTION}/resourceGroups/${TEST_RESOURCE_GROUP}/providers/Microsoft.Compute` +
    `/galleries/${TEST_GALLERY}/images/${definition}/versions/${version}`
  );
}

async function workDirEntries(s: Story): Promise<string[]> {
  return readdir(s.workDir, { recursive: true });
}

type ImageVersion = {
  tags: Record<string, string>;
  properties: {
    provisioningState: string;
    storageProfile: { osDiskImage: { source: Record<string, string> } };
  };
};

function imageVersion(definition: string, version: string): ImageVersion | undefined {
  return local.arm.imageVersions.get(`${definition}/${version}`) as ImageVersion | undefined;
}

/** The gallery as another tool (the original mirror) sees it: the same ARM, the identity endpoint's token. */
const otherTool = (): ComputeGallery => foreignGallery(local);

/**
 * What the original mirror left behind: the whole VHD (zeros included) as a page blob of its own naming, and
 * an image version made from it without any tag. Returns the blob's URL.
 */
async function versionFromAnotherTool(series: string, version: string, vhd: Buffer): Promise<string> {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  const container = service.getContainerClient('vhds');
  await container.createIfNotExists();
  const blobUrl = await wholeVhdPageBlob(container, `${series}-${version}.vhd`, vhd);
  const gallery = otherTool();
  await gallery.ensureImageDefinition({
    name: series,
    publisher: 'bosh',
    offer: series,
    sku: 'gen1',
    osType: 'Linux',
    osState: 'Generalized',
    hyperVGeneration: 'V1',
    architecture: 'x64',
  });
  const galleryVersion = `${version}.0`;
  await succeededVersion(
    gallery,
    { definitionName: series, versionName: galleryVersion, blobUrl, tags: {} },
    `setup version ${galleryVersion}`,
  );
  return blobUrl;
}

/** Whether the mirror uploaded its own page blob for this version. */
async function mirrorBlobExists(series: string, version: string): Promise<boolean> {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  return service.getContainerClient('stemcell').getBlobClient(vhdBlobName(series, version)).exists();
}

/** What a progress bar writes to redraw itself: carriage return, ANSI escape. */
function hasTerminalControl(text: string): boolean {
  return text.includes('\r') || text.includes('\u001b');
}

const BLOB_URL = /^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/stemcell\//;

// Stories are independent; four at a time keep a loaded 2-core machine well inside the CLI timeout.
describe('stories', { concurrency: 4 }, () => {
  describe('mirror a new stemcell version', { concurrency: 1 }, () => {
    let s: Story;
    let fixture: StemcellFixture;
    let first: CliRun;

    before(async () => {
      s = await story('new-version');
      fixture = await publish({ series: JAMMY, version: '1.100', seed: 1 });
      first = await mirrorWithNpm(s, '--series', JAMMY);
    });

    test('exits 0 and reports the version created, with its blob', () => {
      assert.equal(first.status, 0, first.stderr);
      const [result, ...rest] = jsonResults(first);
      assert.equal(rest.length, 0);
      assert.equal(result?.series, JAMMY);
      assert.equal(result?.version, '1.100');
      assert.equal(result?.galleryVersion, '1.100.0');
      assert.equal(result?.action, 'created');
      assert.match(String(result?.blobUrl), BLOB_URL);
    });

    test('the page blob holds the VHD byte for byte', async () => {
      const [result] = jsonResults(first);
      const bytes = await blobBytes(String(result?.blobUrl));
      assert.equal(bytes.length, fixture.vhd.length);
      assert.ok(bytes.equals(fixture.vhd), 'blob content differs from root.vhd');
    });

    test('the image definition is created as the BOSH Azure CPI would create it', () => {
      const definition = local.arm.imageDefinitions.get(JAMMY) as
        { properties: Record<string, unknown> } | undefined;
      assert.ok(definition, `no image definition ${JAMMY}`);
      assert.equal(definition.properties.osType, 'Linux');
      assert.equal(definition.properties.osState, 'Generalized');
      assert.equal(definition.properties.hyperVGeneration, 'V1');
      assert.equal(definition.properties.architecture, 'x64');
      assert.deepEqual(definition.properties.identifier, { publisher: 'bosh', offer: JAMMY, sku: 'gen1' });
    });

    test('the image version comes from the blob and carries the CPI tags', () => {
      const version = imageVersion(JAMMY, '1.100.0');
      assert.ok(version, 'no image version 1.100.0');
      assert.equal(version.properties.provisioningState, 'Succeeded');
      const source = version.properties.storageProfile.osDiskImage.source;
      assert.equal(
        source.storageAccountId,
        `/subscriptions/${TEST_SUBSCRIPTION}/resourceGroups/${TEST_RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/devstoreaccount1`,
      );
      assert.equal(source.uri, jsonResults(first)[0]?.blobUrl);
      assert.equal(version.tags.image_sha256, fixture.imageSha256);
      assert.equal(version.tags.compute_gallery_name, TEST_GALLERY);
      assert.equal(version.tags.compute_gallery_image_definition, JAMMY);
      assert.equal(version.tags.stemcell_references, MIRROR_STEMCELL_REFERENCE);
    });

    test('one workflow dispatch with the five inputs', () => {
      const dispatches = local.github.dispatches.filter(
        (d) => d.inputs.gallery_image_name === JAMMY && d.inputs.gallery_image_version === '1.100.0',
      );
      assert.deepEqual(dispatches, [
        {
          owner: 'example',
          repo: 'stemcell-consumer',
          workflow: 'stemcell-published.yml',
          ref: 'main',
          inputs: {
            gallery_name: TEST_GALLERY,
            gallery_image_name: JAMMY,
            gallery_image_version: '1.100.0',
            gallery_subscription_id: TEST_SUBSCRIPTION,
            gallery_resource_group: TEST_RESOURCE_GROUP,
          },
        },
      ]);
    });

    test('the storage and ARM calls were made with managed-identity tokens', () => {
      const resources = new Set(local.identity.requests.map((r) => r.resource));
      const seen = [...resources].join(', ');
      assert.ok(resources.has('https://storage.azure.com'), seen);
      // The ARM audience is the configured endpoint (AZURE_RESOURCE_MANAGER_ENDPOINT), here the fake's URL.
      assert.ok(resources.has(local.arm.url), `no token for ${local.arm.url}; tokens for: ${seen}`);
    });

    test('the GitHub token never reaches the output', () => {
      assert.doesNotMatch(
        first.stdout + first.stderr,
        new RegExp(local.env.BASM_NOTIFY_GITHUB_TOKEN ?? 'unset'),
      );
    });

    test('no temp file is left behind', async () => {
      assert.deepEqual(await workDirEntries(s), []);
    });

    test('a second run does nothing and uploads nothing', async () => {
      const armBefore = local.arm.requests.length;
      const boshioBefore = local.boshio.requests.length;
      const dispatchesBefore = local.github.dispatches.filter((d) => d.inputs.gallery_image_name === JAMMY);
      const second = await mirror(s, '--series', JAMMY);
      assert.equal(second.status, 0, second.stderr);
      assert.deepEqual(
        jsonResults(second).map((r) => [r.version, r.action]),
        [['1.100', 'exists']],
      );
      assert.match(
        second.stderr,
        new RegExp(`^${JAMMY}: nothing to do: the gallery already has 1\\.100 `, 'm'),
      );
      assert.deepEqual(armWrites(armBefore, JAMMY), []);
      assert.deepEqual(armChanges(armBefore, JAMMY), []);
      assert.deepEqual(downloads(boshioBefore, JAMMY), []);
      assert.deepEqual(
        local.github.dispatches.filter((d) => d.inputs.gallery_image_name === JAMMY),
        dispatchesBefore,
      );
    });
  });

  describe('a dry run', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-dryrun-go_agent';
    let s: Story;

    before(async () => {
      s = await story('dry-run');
      await publish({ series, version: '1.100', seed: 1 });
      await mirrored(s, series);
      await publish({ series, version: '1.101', seed: 2 });
    });

    test('--dry-run reports the plan and changes nothing', async () => {
      const armBefore = local.arm.requests.length;
      const boshioBefore = local.boshio.requests.length;
      const run = await mirror(s, '--series', series, '--dry-run');
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(jsonResults(run), [
        { series, version: '1.101', galleryVersion: '1.101.0', action: 'planned', reason: 'newest' },
      ]);
      assert.deepEqual(armWrites(armBefore, series), []);
      assert.deepEqual(armChanges(armBefore, series), []);
      // No stemcell is downloaded: the one request reads the head of the tarball, for stemcell.MF (feature drift).
      assert.deepEqual(
        downloads(boshioBefore, series).map((r) => r.range),
        ['bytes=0-5242879'],
      );
      assert.deepEqual(versionsOf(series), ['1.100.0']);
      assert.deepEqual(await workDirEntries(s), []);
    });

    test('the stemcell-mirror bin (npx, no --) runs the same dry run on Node 22', async () => {
      const armBefore = local.arm.requests.length;
      const run = await runStemcellMirrorBin(['mirror', '--dry-run', '--json', '--series', series], s.env);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(jsonResults(run), [
        { series, version: '1.101', galleryVersion: '1.101.0', action: 'planned', reason: 'newest' },
      ]);
      assert.deepEqual(armChanges(armBefore, series), []);
    });

    test('not signed in to Azure: one line says to run az login; the credential chain only with --verbose', async () => {
      // No identity endpoint, and a PATH without az, azd or pwsh: nothing DefaultAzureCredential can use.
      const { IDENTITY_ENDPOINT: _endpoint, IDENTITY_HEADER: _header, ...rest } = s.env;
      const env = { ...rest, PATH: dirname(process.execPath) };
      const notSignedIn =
        'not signed in to Azure: run `az login` (or set AZURE_MANAGED_IDENTITY_ID in Azure)';

      const run = await runStemcellMirrorDirect(['mirror', '--dry-run', '--json', '--series', series], env);
      assert.equal(run.status, 1, run.stderr);
      assert.deepEqual(jsonResults(run), [
        { series, version: null, galleryVersion: null, action: 'failed', error: notSignedIn },
      ]);
      assert.doesNotMatch(run.stderr, /EnvironmentCredential|ManagedIdentityCredential|Azure CLI/);

      const verbose = await runStemcellMirrorDirect(
        ['mirror', '--dry-run', '--verbose', '--series', series],
        env,
      );
      assert.equal(verbose.status, 1, verbose.stderr);
      assert.equal(verbose.stdout, `failed   ${series}: ${notSignedIn}\n`);
      assert.match(verbose.stderr, /EnvironmentCredential/);
    });

    test('a refused connection fails the dry run within seconds, with one JSON document', async () => {
      // A port nobody listens on (fetch refuses the well-known ones such as 1 as "bad port").
      const server = createServer();
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
      const { port } = server.address() as AddressInfo;
      await new Promise((done) => server.close(done));
      const started = Date.now();
      const run = await runStemcellMirrorDirect(['mirror', '--dry-run', '--json', '--series', series], {
        ...s.env,
        BASM_BOSHIO_URL: `https://127.0.0.1:${port}`,
      });
      const seconds = (Date.now() - started) / 1000;
      assert.equal(run.status, 1, run.stderr);
      const [result, ...more] = jsonResults(run);
      assert.equal(more.length, 0);
      assert.equal(result?.action, 'failed');
      assert.match(String(result?.error), /ECONNREFUSED/);
      assert.doesNotMatch(run.stderr, /retrying/);
      assert.ok(seconds < 20, `took ${seconds} s`);
    });
  });

  describe('feature drift', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-drift-go_agent';
    const definition = `${series}-gen2`;
    // What a director's CPI made for an earlier build: generation 2, Trusted Launch, SCSI only.
    const scsiOnly = {
      name: definition,
      publisher: 'bosh',
      offer: definition,
      sku: 'gen2',
      osType: 'Linux' as const,
      osState: 'Generalized' as const,
      hyperVGeneration: 'V2' as const,
      architecture: 'x64' as const,
      features: [{ name: 'SecurityType', value: 'TrustedLaunchSupported' }],
    };
    const drift = /DiskControllerTypes is SCSI there but the stemcell needs SCSI,NVMe \(.*Dv6.*\)/;
    let s: Story;
    let before_: string;
    let dryRunRefusal = '';

    before(async () => {
      s = await story('feature-drift');
      await publish({
        series,
        version: '3.1',
        seed: 31,
        cloudProperties: {
          generation: 'gen2',
          disk_controller_types: ['scsi', 'nvme'],
          security_type: 'TrustedLaunchSupported',
        },
      });
      await otherTool().ensureImageDefinition(scsiOnly);
      before_ = JSON.stringify(local.arm.imageDefinitions.get(definition));
    });

    test('fault: --dry-run reports an existing definition whose features differ as failed, reading only stemcell.MF', async () => {
      const armBefore = local.arm.requests.length;
      const boshioBefore = local.boshio.requests.length;
      const run = await mirror(s, '--series', series, '--dry-run');
      assert.equal(run.status, 1, run.stderr);
      const [result, ...others] = jsonResults(run);
      assert.deepEqual(others, []);
      assert.deepEqual(
        { ...result, error: undefined },
        {
          series,
          version: '3.1',
          galleryVersion: '3.1.0',
          action: 'failed',
          reason: 'feature-drift',
          error: undefined,
        },
      );
      assert.match(String(result?.error), new RegExp(`^Image definition ${definition} in gallery `));
      assert.match(String(result?.error), drift);
      assert.match(String(result?.error), /A run would create nothing\./);
      dryRunRefusal = String(result?.error);
      assert.deepEqual(armChanges(armBefore, series), []);
      // The one stemcell request is the head of the tarball, for stemcell.MF.
      assert.deepEqual(
        downloads(boshioBefore, series).map((r) => r.range),
        ['bytes=0-5242879'],
      );
      assert.deepEqual(await workDirEntries(s), []);
    });

    test('fault: a run refuses to put a version in a definition whose features differ, and leaves it as it was', async () => {
      const armBefore = local.arm.requests.length;
      const run = await mirror(s, '--series', series);
      assert.equal(run.status, 1, run.stderr);
      const [result, ...others] = jsonResults(run);
      assert.deepEqual(others, []);
      assert.equal(result?.action, 'failed');
      assert.match(String(result?.error), drift);
      assert.match(String(result?.error), /CPI would not notice: it uses an existing definition as it is/);
      assert.match(String(result?.error), /Nothing was created\./);
      assert.equal(
        String(result?.error),
        dryRunRefusal.replace('A run would create nothing.', 'Nothing was created.'),
        'the dry run and the run refuse in the same words, but for what they did',
      );
      assert.deepEqual(versionsOf(definition), []);
      assert.equal(JSON.stringify(local.arm.imageDefinitions.get(definition)), before_);
      assert.deepEqual(
        armChanges(armBefore, series).filter((change) => change.includes('/images/')),
        [],
        'no definition or version is written',
      );
    });
  });

  describe('a missed day', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-catchup-go_agent';
    let s: Story;

    before(async () => {
      s = await story('missed-day');
      await publish({ series, version: '1.100', seed: 1 });
      await mirrored(s, series);
      await publish({ series, version: '1.101', seed: 2 });
      await publish({ series, version: '1.102', seed: 3 });
      await publish({ series, version: '1.99', seed: 4 }); // older than the gallery's: not a gap
    });

    test('a missed day is caught up, oldest first', async () => {
      const armBefore = local.arm.requests.length;
      const run = await mirror(s, '--series', series);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(
        jsonResults(run).map((r) => [r.version, r.action]),
        [
          ['1.101', 'created'],
          ['1.102', 'created'],
        ],
      );
      const created = armWrites(armBefore, series).filter(
        (w) => w.startsWith('PUT') && w.includes('/versions/'),
      );
      assert.deepEqual(
        created.map((w) => w.replace(/.*\/versions\//, '')),
        ['1.101.0', '1.102.0'],
      );
      assert.deepEqual(versionsOf(series).sort(), ['1.100.0', '1.101.0', '1.102.0']);
    });
  });

  describe('a gallery version that Azure fails', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-noble';

    // One scenario in two runs: the second run is the point (it repairs what the first left).
    test('fault: a version Azure fails is reported failed, then deleted and created again by the next run', async () => {
      const s = await story('azure-fails');
      await publish({ series, version: '3.5', seed: 7 });
      local.arm.failNextVersion(series, '3.5.0', {
        code: 'InternalOperationError',
        message: 'Replication failed in westeurope',
      });
      const failed = await mirror(s, '--series', series);
      assert.equal(failed.status, 1);
      const [result] = jsonResults(failed);
      assert.equal(result?.action, 'failed');
      assert.match(String(result?.error), /Replication failed in westeurope/);

      const armBefore = local.arm.requests.length;
      const retried = await mirror(s, '--series', series);
      assert.equal(retried.status, 0, retried.stderr);
      assert.deepEqual(
        jsonResults(retried).map((r) => [r.version, r.action]),
        [['3.5', 'created']],
      );
      const writes = armWrites(armBefore, series).filter((w) => w.includes('/versions/3.5.0'));
      assert.deepEqual(
        writes.map((w) => w.split(' ')[0]),
        ['DELETE', 'PUT'],
      );
    });
  });

  describe('a run that stops after the version was created', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-notify-go_agent';

    // One scenario in three runs: interrupted, finished, then nothing left to do.
    test('fault: a dispatch that failed after the version was created is sent by the next run, without mirroring again', async () => {
      const s = await story('stops-after-create');
      await publish({ series, version: '5.1', seed: 21 });
      const unreachableWorkflow = { ...s, env: { ...s.env, BASM_NOTIFY_GITHUB_WORKFLOW: 'not-there.yml' } };
      const first = await mirror(unreachableWorkflow, '--series', series);
      assert.equal(first.status, 1);
      const [failed] = jsonResults(first);
      assert.equal(failed?.action, 'failed');
      assert.match(String(failed?.error), /Not Found|404/);
      assert.equal(imageVersion(series, '5.1.0')?.tags.mirror_notified, undefined);

      const boshioBefore = local.boshio.requests.length;
      const second = await mirror(s, '--series', series);
      assert.equal(second.status, 0, second.stderr);
      assert.deepEqual(
        jsonResults(second).map((r) => [r.version, r.action]),
        [['5.1', 'created']],
      );
      assert.deepEqual(
        local.github.dispatches
          .filter((d) => d.inputs.gallery_image_name === series)
          .map((d) => d.inputs.gallery_image_version),
        ['5.1.0'],
      );
      assert.deepEqual(downloads(boshioBefore, series), [], 'finishing does not download the stemcell again');
      assert.match(String(imageVersion(series, '5.1.0')?.tags.mirror_notified), /^\d{4}-\d\d-\d\dT/);

      const third = await mirror(s, '--series', series);
      assert.deepEqual(
        jsonResults(third).map((r) => [r.version, r.action]),
        [['5.1', 'exists']],
      );
    });
  });

  describe('migrating from the original mirror: untagged versions it made', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-migrate-go_agent';
    const docs =
      /untagged, from another tool: see docs\/operations\.md#migrating-from-the-container-apps-job/;

    // One scenario in three runs: reported without the option, adopted with it, then nothing left to do.
    test('reported once without BASM_ADOPT_UNTAGGED, then verified, compared and adopted with it', async () => {
      const s = await story('migrate');
      const old = await publish({ series, version: '9.1', seed: 61 });
      await publish({ series, version: '9.2', seed: 62 });
      const sourceUrl = await versionFromAnotherTool(series, '9.1', old.vhd);

      const before = local.arm.requests.length;
      const reported = await mirror(s, '--series', series);
      assert.equal(reported.status, 1, reported.stderr);
      const [created, untagged, ...more] = jsonResults(reported);
      assert.equal(more.length, 0);
      assert.deepEqual(
        [created?.version, created?.action],
        ['9.2', 'created'],
        'the other versions are mirrored',
      );
      assert.deepEqual([untagged?.version, untagged?.action], ['9.1', 'failed']);
      assert.match(String(untagged?.error), docs);
      assert.deepEqual(imageVersion(series, '9.1.0')?.tags, {});
      assert.deepEqual(
        armChanges(before, series).filter((w) => w.includes('/versions/9.1.0')),
        [],
      );

      const adoptFrom = local.arm.requests.length;
      const boshioFrom = local.boshio.requests.length;
      const adopt = { ...s, env: { ...s.env, BASM_ADOPT_UNTAGGED: 'true' } };
      const adopted = await mirror(adopt, '--series', series);
      assert.equal(adopted.status, 0, adopted.stderr);
      assert.deepEqual(jsonResults(adopted), [
        { series, version: '9.1', galleryVersion: '9.1.0', action: 'exists', blobUrl: sourceUrl },
      ]);
      assert.equal(downloads(boshioFrom, series).length, 1, 'the stemcell is downloaded and verified');
      assert.match(
        adopted.stderr,
        new RegExp(`^${series} 9\\.1: .*source blob holds the verified root\\.vhd`, 'm'),
      );
      const version = imageVersion(series, '9.1.0');
      assert.equal(version?.properties.storageProfile.osDiskImage.source.uri, sourceUrl, 'not recreated');
      assert.equal(version?.tags.image_sha256, old.imageSha256);
      assert.equal(version?.tags.stemcell_references, MIRROR_STEMCELL_REFERENCE);
      assert.equal(version?.tags.compute_gallery_name, TEST_GALLERY);
      assert.equal(version?.tags.compute_gallery_image_definition, series);
      assert.equal(version?.tags.version, '9.1');
      const writes = armChanges(adoptFrom, series).filter((w) => w.includes('/versions/9.1.0'));
      assert.ok(writes.length > 0 && writes.every((w) => !w.startsWith('DELETE')), writes.join(', '));
      assert.equal(await mirrorBlobExists(series, '9.1'), false, 'adoption uploads nothing');
      assert.deepEqual(
        local.github.dispatches
          .filter((d) => d.inputs.gallery_image_name === series)
          .map((d) => d.inputs.gallery_image_version),
        ['9.2.0'],
        'the original mirror announced 9.1 when it made it',
      );

      const again = await mirror(adopt, '--series', series);
      assert.equal(again.status, 0, again.stderr);
      assert.deepEqual(
        jsonResults(again).map((r) => [r.version, r.action]),
        [['9.2', 'exists']],
      );
    });
  });

  describe('migrating: an untagged version whose source blob is not the stemcell', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-migrate-mismatch-go_agent';

    test('fault: BASM_ADOPT_UNTAGGED refuses an untagged version whose source blob is not the stemcell: failed, not tagged, not recreated', async () => {
      const s = await story('migrate-mismatch');
      await publish({ series, version: '9.5', seed: 65 });
      // Same size, other bytes: what another image under this version name would look like.
      const other = await buildStemcellFixture({ series, version: '9.5', seed: 66 });
      const sourceUrl = await versionFromAnotherTool(series, '9.5', other.vhd);

      const before = local.arm.requests.length;
      const run = await mirror({ ...s, env: { ...s.env, BASM_ADOPT_UNTAGGED: 'true' } }, '--series', series);
      assert.equal(run.status, 1, run.stderr);
      const [result, ...more] = jsonResults(run);
      assert.equal(more.length, 0);
      assert.equal(result?.action, 'failed');
      assert.match(
        String(result?.error),
        /source blob .* is not .* 9\.5 from bosh\.io \(its bytes \d+-\d+ differ\); refusing to adopt it/,
      );
      assert.deepEqual(imageVersion(series, '9.5.0')?.tags, {});
      assert.equal(
        imageVersion(series, '9.5.0')?.properties.storageProfile.osDiskImage.source.uri,
        sourceUrl,
      );
      assert.deepEqual(armChanges(before, series), []);
      assert.deepEqual(await workDirEntries(s), []);
    });
  });

  describe('two runs of one series at once', { concurrency: 1 }, () => {
    test('fault: two command lines mirror one series at once: one download, one image version, one dispatch', async () => {
      const series = 'bosh-azure-hyperv-ubuntu-twice-go_agent';
      // Two machines: each its own temp directory; the second waits for the series rather than giving up.
      const [a, b] = await Promise.all([story('twice-a'), story('twice-b')]);
      for (const s of [a, b]) s.env.BASM_SERIES_LOCK_WAIT_SECONDS = '120';
      await publish({ series, version: '6.1', seed: 31 });
      const armBefore = local.arm.requests.length;
      const boshioBefore = local.boshio.requests.length;

      const runs = await Promise.all([mirror(a, '--series', series), mirror(b, '--series', series)]);

      for (const run of runs) assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
      assert.deepEqual(runs.map((run) => jsonResults(run)[0]?.action).sort(), ['created', 'exists']);
      assert.deepEqual(
        local.github.dispatches
          .filter((d) => d.inputs.gallery_image_name === series)
          .map((d) => d.inputs.gallery_image_version),
        ['6.1.0'],
      );
      assert.deepEqual(
        armWrites(armBefore, series).filter((w) => w.startsWith('PUT') && w.includes('/versions/')),
        [`PUT ${versionPath(series, '6.1.0')}`],
      );
      assert.equal(
        downloads(boshioBefore, series).length,
        1,
        'the stemcell was downloaded (and uploaded) twice',
      );
      assert.equal((await lockBlob(series)).leaseState, 'available', 'the series lock was not released');
    });

    test('fault: a run that finds its series held reports who holds it and since when', async () => {
      const series = 'bosh-azure-hyperv-ubuntu-held-go_agent';
      const [a, b] = await Promise.all([story('held-a'), story('held-b')]);
      b.env.BASM_SERIES_LOCK_WAIT_SECONDS = '0';
      await publish({ series, version: '6.2', seed: 32 });
      const release = local.boshio.holdDownloads(series);
      const holder = startStemcellMirrorDirect(['mirror', '--json', '--series', series], a.env);
      try {
        await untilLeased(series);

        const refused = await mirror(b, '--series', series);

        assert.equal(refused.status, 1, refused.stderr);
        const [result] = jsonResults(refused);
        assert.equal(result?.action, 'failed');
        assert.match(
          String(result?.error),
          new RegExp(
            `another run holds series ${series}: command line \\(pid ${holder.pid} on [^)]+\\), ` +
              `since \\d{4}-\\d\\d-\\d\\dT[^,]+, last heartbeat \\d{4}-`,
          ),
        );
      } finally {
        release();
      }
      const held = await holder.done;
      assert.equal(held.status, 0, held.stderr);
      assert.equal(jsonResults(held)[0]?.action, 'created');
      assert.equal(local.github.dispatches.filter((d) => d.inputs.gallery_image_name === series).length, 1);
    });

    test('fault: a run killed (SIGKILL) while it holds its series blocks it only until the lock is stale', async () => {
      const series = 'bosh-azure-hyperv-ubuntu-killed-go_agent';
      const [a, b] = await Promise.all([story('killed-a'), story('killed-b')]);
      for (const s of [a, b]) {
        s.env.BASM_SERIES_LOCK_STALE_SECONDS = '3';
        s.env.BASM_SERIES_LOCK_WAIT_SECONDS = '60';
      }
      await publish({ series, version: '6.3', seed: 33 });
      const release = local.boshio.holdDownloads(series);
      const killed = startStemcellMirrorDirect(['mirror', '--json', '--series', series], a.env);
      try {
        await untilLeased(series);
        killed.kill('SIGKILL');
        assert.equal((await killed.done).signal, 'SIGKILL');
      } finally {
        release();
      }
      const killedAt = Date.now();

      const next = await mirror(b, '--series', series);

      assert.equal(next.status, 0, next.stderr);
      assert.equal(jsonResults(next)[0]?.action, 'created');
      assert.match(
        next.stderr,
        new RegExp(`took over series ${series} from command line \\(pid ${killed.pid} `),
      );
      assert.ok(Date.now() - killedAt < 45_000, 'the dead holder blocked the series far beyond the bound');
      assert.equal(local.github.dispatches.filter((d) => d.inputs.gallery_image_name === series).length, 1);
      assert.equal((await lockBlob(series)).leaseState, 'available');
    });
  });

  describe('--version', { concurrency: 1 }, () => {
    const series = 'bosh-azure-hyperv-ubuntu-pinned-go_agent';

    // One scenario in two runs: the second shows the pinned version is then left alone.
    test('--version mirrors exactly that version', async () => {
      const s = await story('pinned');
      await publish({ series, version: '4.1', seed: 11 });
      await publish({ series, version: '4.2', seed: 12 });
      const run = await mirror(s, '--series', series, '--version', '4.1');
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(
        jsonResults(run).map((r) => [r.version, r.action]),
        [['4.1', 'created']],
      );
      assert.deepEqual(versionsOf(series), ['4.1.0']);

      const boshioBefore = local.boshio.requests.length;
      const again = await mirror(s, '--series', series, '--version', '4.1');
      assert.equal(again.status, 0, again.stderr);
      assert.deepEqual(
        jsonResults(again).map((r) => [r.version, r.action]),
        [['4.1', 'exists']],
      );
      assert.deepEqual(downloads(boshioBefore, series), [], 'an existing version is not downloaded again');
    });
  });

  describe('two series in one run', { concurrency: 1 }, () => {
    const a = 'bosh-azure-hyperv-ubuntu-pair-a-go_agent';
    const b = 'bosh-azure-hyperv-ubuntu-pair-b-go_agent';
    let s: Story;
    let fixtures: StemcellFixture[];
    let run: CliRun;

    before(async () => {
      s = await story('two-series');
      fixtures = [
        await publish({ series: a, version: '6.1', seed: 31 }),
        await publish({ series: b, version: '6.2', seed: 32 }),
      ];
      run = await mirror(s, '--series', `${a},${b}`);
    });

    test('--series a,b mirrors both, in the order given, and exits 0', () => {
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(
        jsonResults(run).map((r) => [r.series, r.version, r.galleryVersion, r.action]),
        [
          [a, '6.1', '6.1.0', 'created'],
          [b, '6.2', '6.2.0', 'created'],
        ],
      );
      assert.deepEqual(versionsOf(a), ['6.1.0']);
      assert.deepEqual(versionsOf(b), ['6.2.0']);
    });

    test('each series gets its own blob, image definition, version and dispatch', async () => {
      const results = jsonResults(run);
      for (const [i, series] of [a, b].entries()) {
        const result = results[i];
        const fixture = fixtures[i];
        assert.ok(result && fixture);
        assert.match(String(result.blobUrl), BLOB_URL);
        const bytes = await blobBytes(String(result.blobUrl));
        assert.ok(bytes.equals(fixture.vhd), `blob of ${series} differs from its root.vhd`);
        assert.ok(local.arm.imageDefinitions.has(series), `no image definition ${series}`);
        const version = imageVersion(series, String(result.galleryVersion));
        assert.equal(version?.properties.storageProfile.osDiskImage.source.uri, result.blobUrl);
        assert.equal(version?.tags.image_sha256, fixture.imageSha256);
        assert.deepEqual(
          local.github.dispatches
            .filter((d) => d.inputs.gallery_image_name === series)
            .map((d) => d.inputs.gallery_image_version),
          [result.galleryVersion],
        );
      }
      assert.deepEqual(await workDirEntries(s), []);
    });
  });

  describe('one series fails, the other succeeds', { concurrency: 1 }, () => {
    const good = 'bosh-azure-hyperv-ubuntu-mixed-good-go_agent';
    const bad = 'bosh-azure-hyperv-ubuntu-mixed-badsha-go_agent';
    let s: Story;
    let run: CliRun;

    before(async () => {
      s = await story('mixed');
      await publish({ series: good, version: '7.1', seed: 41 });
      const f = await buildStemcellFixture({ series: bad, version: '7.2', seed: 42 });
      local.boshio.publish(bad, { version: '7.2', tarball: f.tarball, sha256: 'ab'.repeat(32) });
      // The failing series first: a failure must not stop the series after it.
      run = await mirror(s, '--series', `${bad},${good}`);
    });

    test('fault: one series failing beside one succeeding exits 1 and reports both results', () => {
      assert.equal(run.status, 1, run.stderr);
      const results = jsonResults(run);
      assert.deepEqual(
        results.map((r) => [r.series, r.version, r.galleryVersion, r.action]),
        [
          [bad, '7.2', '7.2.0', 'failed'],
          [good, '7.1', '7.1.0', 'created'],
        ],
      );
      assert.match(String(results[0]?.error), /sha-?256/i);
      assert.match(String(results[1]?.blobUrl), BLOB_URL);
      assert.deepEqual(versionsOf(bad), []);
      assert.deepEqual(versionsOf(good), ['7.1.0']);
    });

    test('--json results carry exactly the documented fields', () => {
      const results = jsonResults(run);
      for (const result of results) {
        for (const key of Object.keys(result)) {
          assert.ok(['series', 'version', 'galleryVersion', 'action', 'blobUrl', 'error'].includes(key), key);
        }
      }
      assert.deepEqual(Object.keys(results[0] ?? {}), [
        'series',
        'version',
        'galleryVersion',
        'action',
        'error',
      ]);
      assert.deepEqual(Object.keys(results[1] ?? {}), [
        'series',
        'version',
        'galleryVersion',
        'action',
        'blobUrl',
      ]);
    });
  });

  describe('without --json', { concurrency: 1 }, () => {
    const good = 'bosh-azure-hyperv-ubuntu-table-go_agent';
    const missing = 'bosh-azure-hyperv-ubuntu-table-nosuch-go_agent';
    let s: Story;
    let run: CliRun;

    before(async () => {
      s = await story('table');
      await publish({ series: good, version: '8.1', seed: 51 });
      run = await runStemcellMirrorDirect(['mirror', '--series', `${good},${missing}`], s.env);
    });

    test('stdout holds one line per result: action, series, version -> galleryVersion, blob URL or error', () => {
      assert.equal(run.status, 1, run.stderr);
      const lines = run.stdout.split('\n');
      assert.equal(lines.pop(), '', 'stdout ends with a newline');
      assert.equal(lines.length, 2, run.stdout);
      const created = new RegExp(`^created +${good} 8\\.1 -> 8\\.1\\.0 \\((https://\\S+)\\)$`).exec(
        lines[0] ?? '',
      );
      assert.ok(created, `not a "created" line: ${lines[0]}`);
      assert.match(String(created[1]), BLOB_URL);
      assert.equal(created[1], imageVersion(good, '8.1.0')?.properties.storageProfile.osDiskImage.source.uri);
      assert.match(lines[1] ?? '', new RegExp(`^failed +${missing}: .*lists no versions`));
    });

    test('every stderr line about the version starts with "<series> <version>:"', () => {
      const about = run.stderr.split('\n').filter((l) => /\b8\.1\b|8\.1\.0/.test(l));
      assert.ok(about.length >= 6, run.stderr);
      for (const line of about) assert.ok(line.startsWith(`${good} 8.1: `), `unprefixed: ${line}`);
    });

    test('stdout then holds no progress and no logs', () => {
      assert.doesNotMatch(run.stdout, /%|MiB|download|upload|Succeeded|dispatched/);
      assert.ok(!hasTerminalControl(run.stdout), JSON.stringify(run.stdout));
    });

    test('progress goes to stderr as plain lines (stderr is not a terminal)', () => {
      assert.ok(!hasTerminalControl(run.stderr), 'no bar redrawing on a pipe');
      const lines = run.stderr.split('\n').filter((l) => l !== '');
      for (const phase of ['download', 'upload'])
        assert.ok(
          lines.some((l) => new RegExp(`^${good} 8\\.1: ${phase} 100% `).test(l)),
          `no "${phase} 100%" line:\n${run.stderr}`,
        );
      for (const done of ['downloaded', 'uploaded'])
        assert.ok(
          lines.some((l) =>
            new RegExp(
              `^${good} 8\\.1: ${done} \\d+\\.\\d (MiB|GiB) in \\d+\\.\\d s( \\(\\d+\\.\\d MiB/s\\))?$`,
            ).test(l),
          ),
          `no "${done}" summary line:\n${run.stderr}`,
        );
      assert.ok(
        lines.some((l) => l === `${good} 8.1: image version 8.1.0 is Succeeded`),
        `no provisioning line:\n${run.stderr}`,
      );
    });
  });

  describe('bad stemcells fail cleanly', () => {
    const cases: Array<{
      name: string;
      series: string;
      expect: RegExp;
      setup: (series: string) => Promise<void>;
    }> = [
      {
        name: 'a tarball whose SHA-256 differs from bosh.io',
        series: 'bosh-azure-hyperv-ubuntu-badsha-go_agent',
        expect: /sha-?256/i,
        setup: async (series) => {
          const f = await buildStemcellFixture({ series, version: '2.1' });
          local.boshio.publish(series, { version: '2.1', tarball: f.tarball, sha256: 'ab'.repeat(32) });
        },
      },
      {
        name: 'an image whose SHA-1 differs from stemcell.MF',
        series: 'bosh-azure-hyperv-ubuntu-badmf-go_agent',
        expect: /sha-?1/i,
        setup: async (series) => {
          await publish({ series, version: '2.1', manifest: { sha1: 'cd'.repeat(20) } });
        },
      },
      {
        name: 'a truncated tarball',
        series: 'bosh-azure-hyperv-ubuntu-truncated-go_agent',
        expect: /truncat|unexpected end|corrupt|incomplete/i,
        setup: async (series) => {
          const f = await buildStemcellFixture({ series, version: '2.1' });
          local.boshio.publish(series, {
            version: '2.1',
            tarball: f.tarball.subarray(0, Math.floor(f.tarball.length / 2)),
          });
        },
      },
      {
        name: 'a tarball without image',
        series: 'bosh-azure-hyperv-ubuntu-noimage-go_agent',
        expect: /image/,
        setup: async (series) => {
          await publish({ series, version: '2.1', omitImage: true });
        },
      },
      {
        name: 'an image without root.vhd',
        series: 'bosh-azure-hyperv-ubuntu-novhd-go_agent',
        expect: /root\.vhd/,
        setup: async (series) => {
          await publish({ series, version: '2.1', omitRootVhd: true });
        },
      },
      {
        name: 'a VHD that is not a whole number of MiB',
        series: 'bosh-azure-hyperv-ubuntu-oddsize-go_agent',
        expect: /MiB/,
        setup: async (series) => {
          await publish({ series, version: '2.1', vhdSizeBytes: 16 * 1024 * 1024 + 512 + 512 });
        },
      },
      {
        name: 'fault: a root.vhd larger than cloud_properties.disk allows',
        series: 'bosh-azure-hyperv-ubuntu-oversize-go_agent',
        expect: /root\.vhd is \d+ bytes, larger than the \d+ expected \(cloud_properties\.disk is 8 MiB/,
        setup: async (series) => {
          await publish({ series, version: '2.1', cloudProperties: { disk: 8 } });
        },
      },
      {
        name: 'fault: a tarball with an entry named ../../ (path traversal)',
        series: 'bosh-azure-hyperv-ubuntu-traversal-go_agent',
        expect: /entry named "\.\.\/\.\.\/etc\/cron\.d\/x": absolute names and '\.\.' are refused/,
        setup: async (series) => {
          await publish({
            series,
            version: '2.1',
            extraEntries: [{ name: '../../etc/cron.d/x', body: 'outside', archive: 'image' }],
          });
        },
      },
      {
        name: 'fault: an image whose root.vhd is a symlink',
        series: 'bosh-azure-hyperv-ubuntu-symlink-go_agent',
        expect: /root\.vhd as a SymbolicLink entry to "\/etc\/passwd", expected a regular file/,
        setup: async (series) => {
          await publish({
            series,
            version: '2.1',
            extraEntries: [
              {
                name: 'root.vhd',
                type: 'SymbolicLink',
                linkpath: '/etc/passwd',
                archive: 'image',
                first: true,
              },
            ],
          });
        },
      },
    ];

    // Each case has its own series and temp directory: they run concurrently, as the stories do.
    for (const [i, c] of cases.entries()) {
      test(`fault: ${c.name}: exits non-zero, says why, creates no version, leaves no temp file`, async () => {
        const s = await story(`bad-${c.series}`);
        await c.setup(c.series);
        const armBefore = local.arm.requests.length;
        // One of them as operators run it, through npm.
        const run =
          i === 0 ? await mirrorWithNpm(s, '--series', c.series) : await mirror(s, '--series', c.series);
        assert.equal(run.status, 1, run.stderr);
        const [result] = jsonResults(run);
        assert.equal(result?.action, 'failed');
        assert.match(String(result?.error), c.expect);
        assert.deepEqual(Object.keys(result ?? {}), [
          'series',
          'version',
          'galleryVersion',
          'action',
          'error',
        ]);
        assert.deepEqual(
          armWrites(armBefore, c.series).filter((w) => w.includes('/versions/')),
          [],
        );
        assert.deepEqual(versionsOf(c.series), []);
        assert.deepEqual(await workDirEntries(s), []);
      });
    }
  });
});

// Alone (after the stories), so "no network call" can be asserted on every local service.
describe('command-line contract', () => {
  function requestCounts(): Record<string, number> {
    return {
      boshio: local.boshio.requests.length,
      arm: local.arm.requests.length,
      identity: local.identity.requests.length,
      github: local.github.dispatches.length,
    };
  }

  test("an unknown option exits 2 with the tool's own message, the one usage line and a pointer to --help", async () => {
    const run = await runStemcellMirror(['mirror', '--frobnicate'], local.env);
    assert.equal(run.status, 2);
    assert.equal(
      run.stderr,
      `stemcell-mirror: unknown option --frobnicate\n${USAGE_LINE}\nMore: stemcell-mirror --help\n`,
    );
    assert.equal(run.stdout, '');
  });

  test('a bad flag value is called a flag, not a setting', async () => {
    const run = await runStemcellMirrorDirect(['mirror', '--series', 'Not A Series'], local.env);
    assert.equal(run.status, 2);
    assert.match(
      run.stderr,
      /^stemcell-mirror: Invalid command line \(1 flag\):\n {2}--series: "Not A Series"/,
    );
    assert.doesNotMatch(run.stderr, /setting/);
  });

  test('fault: a bad setting exits 2 naming every offending variable before any network call', async () => {
    const counts = requestCounts();
    const boshioBefore = local.boshio.requests.length;
    const env = {
      ...local.env,
      AZURE_SUBSCRIPTION_ID: 'not-a-guid',
      BASM_BOSHIO_URL: 'http://bosh.io',
      BASM_MAX_VERSIONS_PER_RUN: 'many',
    };
    const run = await runStemcellMirror(['mirror', '--json'], env);
    assert.equal(run.status, 2);
    for (const name of ['AZURE_SUBSCRIPTION_ID', 'BASM_BOSHIO_URL', 'BASM_MAX_VERSIONS_PER_RUN'])
      assert.match(run.stderr, new RegExp(name));
    assert.equal(local.boshio.requests.length, boshioBefore);
    assert.deepEqual(requestCounts(), counts);
    assert.equal(run.stdout, '');
  });

  test('fault: an unknown series fails that series with a clear message', async () => {
    const run = await runStemcellMirror(
      ['mirror', '--json', '--series', 'bosh-azure-hyperv-ubuntu-nosuch-go_agent'],
      local.env,
    );
    assert.equal(run.status, 1);
    assert.match(String(jsonResults(run)[0]?.error), /lists no versions/);
  });

  test('--version with two series is a usage error: exit 2, before any network call', async () => {
    const counts = requestCounts();
    const run = await runStemcellMirrorDirect(
      ['mirror', '--json', '--series', `${JAMMY},bosh-azure-hyperv-ubuntu-noble`, '--version', '1.100'],
      local.env,
    );
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /--version/);
    assert.match(run.stderr, /one series/);
    assert.equal(run.stdout, '');
    assert.deepEqual(requestCounts(), counts);
  });

  test('--help exits 0 with the usage on stdout', async () => {
    const counts = requestCounts();
    const run = await runStemcellMirrorDirect(['--help'], local.env);
    assert.equal(run.status, 0, run.stderr);
    assert.ok(run.stdout.startsWith(`${USAGE_LINE}\n   or: npm run --silent stemcell-mirror -- mirror`));
    for (const option of ['--series', '--version', '--dry-run', '--json', '--verbose', '--help'])
      assert.match(run.stdout, new RegExp(option));
    const required = ['AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_REGION'];
    for (const name of [...required, 'AZURE_STORAGE_ACCOUNT_NAME', 'AZURE_GALLERY_NAME'])
      assert.match(run.stdout, new RegExp(name));
    assert.match(run.stdout, /docs\/configuration\.md/);
    assert.equal(run.stderr, '');
    assert.deepEqual(requestCounts(), counts);

    const short = await runStemcellMirrorDirect(['mirror', '-h'], local.env);
    assert.equal(short.status, 0, short.stderr);
    assert.equal(short.stdout, run.stdout);
  });
});
