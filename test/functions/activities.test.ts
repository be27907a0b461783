/**
 * The activities as the host invokes them (activity trigger input in RPC form), running the real steps
 * against the local services: Azurite over HTTPS with managed-identity tokens, and fakes of bosh.io and ARM.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createAzureCredential } from '../../src/credentials.js';
import {
  MIRROR_NOTIFIED_TAG,
  MIRROR_STEMCELL_REFERENCE,
  imageDefinitionFor,
  imageVersionTags,
} from '../../src/cpi.js';
import type { ComputeGallery } from '../../src/gallery.js';
import { vhdBlobName } from '../../src/pageblob.js';
import { computeGalleryFor } from '../../src/services.js';
import { STEP_RETRY, type StepName, type StepOutcome, type StepOutputs } from '../../src/workflow.js';

import {
  invokeFunction,
  jsonData,
  loadFunctionsApp,
  returnedJson,
  type Invocation,
} from '../support/functions-core/host.js';
import {
  GITHUB_TOKEN,
  NOTIFY_INPUTS,
  TEST_GALLERY,
  TEST_RESOURCE_GROUP,
  TEST_SUBSCRIPTION,
  startLocalAzure,
  type LocalAzure,
} from '../support/local-azure.js';
import { startHttpsServer } from '../support/https-server.js';
import { buildStemcellFixture, type StemcellFixture } from '../support/stemcell-fixture.js';
import { jsonResults, runStemcellMirrorDirect } from '../support/cli-process.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const OUTAGE_SERIES = 'bosh-azure-hyperv-ubuntu-noble';
const BIONIC = 'bosh-azure-hyperv-ubuntu-bionic-go_agent';
/** A series no setting names: every step refuses it. */
const FOREIGN_SERIES = 'bosh-aws-xen-hvm-ubuntu-jammy-go_agent';
/** The series whose lock the Functions app holds in the series-lock tests. */
const LOCKED_SERIES = 'bosh-azure-hyperv-ubuntu-locked-go_agent';
/** The series of a version at Azure's 50 tags. */
const FULL_SERIES = 'bosh-azure-hyperv-ubuntu-full-go_agent';
/** The stemcell most tests work on: steps name it, and re-read everything else. */
const REF = { series: SERIES, version: '1.100' };
/** Its gallery version, the one name the steps give it. */
const GALLERY_VERSION = '1.100.0';

let local: LocalAzure;
let fixture: StemcellFixture;

before(async () => {
  local = await startLocalAzure({ notify: false });
  Object.assign(process.env, local.env, {
    BASM_STEMCELL_SERIES: `${SERIES},${OUTAGE_SERIES},${BIONIC},${LOCKED_SERIES},${FULL_SERIES}`,
  });
  fixture = await buildStemcellFixture({ series: SERIES, version: '1.100', seed: 3 });
  local.boshio.publish(SERIES, { version: '1.100', tarball: fixture.tarball });
  await loadFunctionsApp();
});
after(async () => {
  await local?.stop();
});

async function activity(name: string, input: unknown): Promise<Invocation & { outcome: unknown }> {
  const invocation = await invokeFunction(name, { activityTrigger: jsonData(input) });
  return { ...invocation, outcome: returnedJson(invocation.response) };
}

function valueOf<T>(outcome: unknown): T {
  const result = outcome as StepOutcome<T>;
  if (!result.ok) assert.fail(`the step failed: ${result.error}`);
  return result.value;
}

/** A blob of the test account, through a shared-key client (not the identity the mirror uses). */
function sharedKeyBlob(url: string) {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  const [container = '', ...name] = new URL(url).pathname.split('/').slice(2);
  return service.getContainerClient(container).getPageBlobClient(decodeURIComponent(name.join('/')));
}

async function blobBytes(url: string): Promise<Buffer> {
  return sharedKeyBlob(url).downloadToBuffer();
}

interface ChildInvocation {
  outcome: unknown;
  logs: Array<{ level: string; category: string; message: string }>;
}

const hostModule = new URL('../support/functions-core/host.js', import.meta.url).href;
const childScript = `
const host = await import(process.argv[1]);
await host.loadFunctionsApp();
const results = [];
for (const [name, input] of JSON.parse(process.argv[2])) {
  const invocation = await host.invokeFunction(name, { activityTrigger: host.jsonData(input) });
  results.push({ outcome: host.returnedJson(invocation.response), logs: invocation.logs });
}
process.stdout.write(JSON.stringify(results));
`;

/**
 * Activities invoked in a fresh worker process (the app caches its settings and clients per worker), with
 * `env` as its app settings, against the local services of this process.
 */
async function activitiesInWorker(
  env: Record<string, string>,
  calls: Array<[string, unknown]>,
): Promise<{ results: ChildInvocation[]; stderr: string }> {
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', childScript, hostModule, JSON.stringify(calls)],
    { env, maxBuffer: 16 * 1024 * 1024 },
  );
  return { results: JSON.parse(stdout) as ChildInvocation[], stderr };
}

const notifySettings = (): Record<string, string> => ({
  BASM_NOTIFY_GITHUB_TOKEN: GITHUB_TOKEN,
  BASM_NOTIFY_GITHUB_API_URL: local.github.url,
  BASM_NOTIFY_GITHUB_OWNER: 'example',
  BASM_NOTIFY_GITHUB_REPO: 'stemcell-consumer',
  BASM_NOTIFY_GITHUB_WORKFLOW: 'stemcell-published.yml',
  BASM_NOTIFY_GITHUB_REF: 'main',
});

interface Prepared {
  release: StepOutputs['resolveVersions']['newest'];
  stemcell: StepOutputs['downloadAndExtract'];
  blobUrl: string;
  definitionName: string;
  gallery: ComputeGallery;
}

let preparedOnce: Promise<Prepared> | undefined;

/** The stemcell downloaded, uploaded and its image definition made, by the activities; a client of the gallery. */
function prepared(): Promise<Prepared> {
  preparedOnce ??= (async () => {
    const plan = valueOf<StepOutputs['resolveVersions']>(
      (await activity('resolveVersions', { series: SERIES, version: '1.100' })).outcome,
    );
    const release = plan.mirror.find((m) => m.release.version === '1.100')?.release;
    if (!release) assert.fail('1.100 is not planned');
    const stemcell = valueOf<StepOutputs['downloadAndExtract']>(
      (await activity('downloadAndExtract', REF)).outcome,
    );
    const { blobUrl } = valueOf<StepOutputs['uploadVhd']>(
      (await activity('uploadVhd', { ...REF, imageSha256: stemcell.imageSha256 })).outcome,
    );
    const { definitionName } = valueOf<StepOutputs['ensureImageDefinition']>(
      (await activity('ensureImageDefinition', REF)).outcome,
    );
    const gallery = computeGalleryFor(loadConfig(process.env), createAzureCredential(), {
      pollIntervalMs: 10,
    });
    return { release, stemcell, blobUrl, definitionName, gallery };
  })();
  return preparedOnce;
}

/** The tags the mirror itself gives a version of this stemcell. */
function mirrorTags(p: Prepared): Record<string, string> {
  return imageVersionTags({
    manifest: p.stemcell.manifest,
    imageSha256: p.stemcell.imageSha256,
    galleryName: TEST_GALLERY,
    definitionName: p.definitionName,
    sourceUrl: p.release.url,
  });
}

/**
 * Creates a version through the fake ARM's REST API (so its validation applies) and reads it until Azure
 * settles it: Succeeded, or Failed when `failWith` is given.
 */
async function existingVersion(
  p: Prepared,
  versionName: string,
  tags: Record<string, string>,
  failWith?: { code: string; message: string },
): Promise<void> {
  if (failWith) local.arm.failNextVersion(p.definitionName, versionName, failWith);
  await p.gallery.startImageVersion({
    definitionName: p.definitionName,
    versionName,
    blobUrl: p.blobUrl,
    tags,
  });
  for (let reads = 0; reads < 50; reads++) {
    const state = (await p.gallery.getImageVersion(p.definitionName, versionName))?.provisioningState;
    if (state === (failWith ? 'Failed' : 'Succeeded')) return;
    if (state === 'Failed' || state === 'Succeeded') assert.fail(`${versionName} ended ${state}`);
  }
  assert.fail(`${versionName} never settled`);
}

async function versionTags(p: Prepared, versionName: string): Promise<Record<string, string>> {
  const state = await p.gallery.getImageVersion(p.definitionName, versionName);
  if (!state) assert.fail(`${versionName} does not exist`);
  return state.tags;
}

/** The requests to one version's resource since `from` (an index into the fake ARM's request log). */
function versionRequests(p: Prepared, versionName: string, from: number): string[] {
  const path = `/images/${p.definitionName}/versions/${versionName}`.toLowerCase();
  return local.arm.requests
    .slice(from)
    .filter((r) => r.path.toLowerCase().endsWith(path))
    .map((r) => r.method);
}

/** The stemcell's gallery version as `tags` (and `failWith`) make it, after removing any earlier one. */
async function withoutVersion(p: Prepared): Promise<void> {
  if (await p.gallery.getImageVersion(p.definitionName, GALLERY_VERSION)) {
    await p.gallery.deleteImageVersion(p.definitionName, GALLERY_VERSION);
  }
}

/** createImageVersion over the version as the test left it: its outcome, and what it wrote (not GETs) to it. */
async function createOverExisting(p: Prepared): Promise<{ outcome: unknown; writes: string[] }> {
  const from = local.arm.requests.length;
  const { outcome } = await activity('createImageVersion', REF);
  return { outcome, writes: versionRequests(p, GALLERY_VERSION, from).filter((m) => m !== 'GET') };
}

/** createImageVersion's answer for the stemcell's version. */
function createAnswer(
  p: Prepared,
  outcome: 'started' | 'exists',
  provisioningState: 'Creating' | 'Succeeded',
): StepOutputs['createImageVersion'] {
  return { outcome, provisioningState, definitionName: p.definitionName };
}

/** How the ARM fake fails a version's replication. */
const REPLICATION_FAILED = { code: 'InternalOperationError', message: 'replication failed' };

async function freshVersion(
  p: Prepared,
  tags: Record<string, string>,
  failWith?: { code: string; message: string },
): Promise<void> {
  await withoutVersion(p);
  await existingVersion(p, GALLERY_VERSION, tags, failWith);
}

describe('resolveVersions', () => {
  test('plans the newest published version the gallery lacks, and logs to the invocation', async () => {
    const { outcome, logs } = await activity('resolveVersions', { series: SERIES });

    const plan = valueOf<StepOutputs['resolveVersions']>(outcome);
    assert.deepEqual(
      plan.mirror.map((p) => [p.release.version, p.galleryVersion, p.reason]),
      [['1.100', '1.100.0', 'newest']],
    );
    assert.ok(
      logs.some((l) => l.category === 'user' && l.message.includes('1.100: to mirror')),
      JSON.stringify(logs),
    );
  });

  test('fault: resolveVersions throws on a bosh.io outage, so the orchestrator’s retry policy applies', async () => {
    local.boshio.setSeriesResponse(OUTAGE_SERIES, { status: 503, body: 'Service Unavailable' });

    await assert.rejects(activity('resolveVersions', { series: OUTAGE_SERIES }), /503/);
  });
});

describe('downloadAndExtract, then uploadVhd', () => {
  let stemcell: StepOutputs['downloadAndExtract'];
  let uploaded: StepOutputs['uploadVhd'];

  before(async () => {
    stemcell = valueOf((await activity('downloadAndExtract', REF)).outcome);
    uploaded = valueOf((await activity('uploadVhd', { ...REF, imageSha256: stemcell.imageSha256 })).outcome);
  });

  test('downloadAndExtract returns the verified stemcell’s digests and sizes as small JSON', () => {
    assert.equal(stemcell.imageSha256, fixture.imageSha256);
    assert.equal(stemcell.tarballSha256, fixture.sha256);
    assert.equal(stemcell.vhdSize, fixture.vhd.length);
    assert.ok(JSON.stringify(stemcell).length < 4096);
  });

  test('uploadVhd leaves a page blob holding exactly root.vhd', async () => {
    assert.equal(uploaded.alreadyComplete, false);
    assert.ok((await blobBytes(uploaded.blobUrl)).equals(fixture.vhd));
  });

  test('uploadVhd writes exactly the non-zero extents of root.vhd, no zero page', async () => {
    const written: Array<{ start: number; end: number }> = [];
    for await (const range of sharedKeyBlob(uploaded.blobUrl).listPageRanges()) {
      written.push({ start: range.start, end: range.end });
    }

    assert.deepEqual(
      written,
      fixture.extents.map((e) => ({ start: e.offset, end: e.offset + e.length - 1 })),
    );
  });

  test('uploadVhd run again finds the complete blob and uploads nothing', async () => {
    const again = valueOf<StepOutputs['uploadVhd']>(
      (await activity('uploadVhd', { ...REF, imageSha256: stemcell.imageSha256 })).outcome,
    );

    assert.deepEqual(again, { ...uploaded, bytesUploaded: 0, alreadyComplete: true });
  });
});

describe('downloadAndExtract with the overlapped upload, then uploadVhd as a replay resumes it on another worker', () => {
  const ref = { series: BIONIC, version: '1.5' };
  let bionic: StemcellFixture;
  let stemcell: StepOutputs['downloadAndExtract'];
  const vhdBlob = (version: string) =>
    new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential)
      .getContainerClient(loadConfig(process.env).storageContainer)
      .getPageBlobClient(vhdBlobName(BIONIC, version));

  before(async () => {
    bionic = await buildStemcellFixture({ series: BIONIC, version: '1.5', seed: 5 });
    local.boshio.publish(BIONIC, { version: '1.5', tarball: bionic.tarball });
    stemcell = valueOf((await activity('downloadAndExtract', { ...ref, overlapUpload: true })).outcome);
  });

  test('downloadAndExtract leaves every page on the blob, stamped with the verified image, not yet complete', async () => {
    assert.equal(stemcell.imageSha256, bionic.imageSha256);
    const properties = await vhdBlob('1.5').getProperties();
    assert.equal(properties.metadata?.['image_sha256'], bionic.imageSha256);
    assert.equal(properties.metadata?.['tarball_sha256'], bionic.sha256);
    assert.equal(properties.metadata?.['upload_complete'], undefined);
    const written: Array<{ start: number; end: number }> = [];
    for await (const range of vhdBlob('1.5').listPageRanges()) written.push(range);
    const bytes = (ranges: Array<{ start: number; end: number }>) =>
      ranges.reduce((sum, r) => sum + r.end - r.start + 1, 0);
    assert.equal(
      bytes(written),
      bytes(bionic.extents.map((e) => ({ start: e.offset, end: e.offset + e.length - 1 }))),
    );
  });

  test('uploadVhd, on a worker without the extraction, extracts again, sends no page and completes the blob', async () => {
    valueOf((await activity('cleanup', ref)).outcome);

    const settings = { ...local.env, BASM_STEMCELL_SERIES: process.env.BASM_STEMCELL_SERIES ?? '' };
    const { results } = await activitiesInWorker(settings, [
      ['uploadVhd', { ...ref, imageSha256: stemcell.imageSha256 }],
    ]);

    const uploaded = valueOf<StepOutputs['uploadVhd']>(results[0]?.outcome);
    assert.equal(uploaded.bytesUploaded, 0);
    assert.equal(uploaded.alreadyComplete, false);
    assert.ok((await vhdBlob('1.5').downloadToBuffer()).equals(bionic.vhd), 'the blob differs from root.vhd');
    assert.equal((await vhdBlob('1.5').getProperties()).metadata?.['upload_complete'], 'true');
  });

  test('fault: a stemcell whose checksum does not match fails downloadAndExtract as a value and leaves no blob', async () => {
    const bad = await buildStemcellFixture({ series: BIONIC, version: '1.6', seed: 8 });
    local.boshio.publish(BIONIC, { version: '1.6', tarball: bad.tarball, sha256: '0'.repeat(64), sha1: '' });

    const { outcome } = await activity('downloadAndExtract', {
      series: BIONIC,
      version: '1.6',
      overlapUpload: true,
    });

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match((outcome as { error: string }).error, /tarball SHA-256 is [0-9a-f]{64}, expected 0{64}/);
    assert.equal(await vhdBlob('1.6').exists(), false);
  });
});

test('uploadVhd records the manifest on a complete blob uploaded before blobs kept it, sending no page', async () => {
  const p = await prepared();
  const blob = sharedKeyBlob(p.blobUrl);
  const { stemcell_manifest: manifest, ...older } = (await blob.getProperties()).metadata ?? {};
  assert.ok(manifest, 'the upload records the manifest');
  await blob.setMetadata(older);

  const { outcome } = await activity('uploadVhd', { ...REF, imageSha256: p.stemcell.imageSha256 });

  const uploaded = valueOf<StepOutputs['uploadVhd']>(outcome);
  assert.equal(uploaded.bytesUploaded, 0);
  assert.equal(uploaded.alreadyComplete, true);
  const after = (await blob.getProperties()).metadata ?? {};
  assert.deepEqual(after, { ...older, stemcell_manifest: manifest });
  assert.deepEqual(valueOf((await activity('ensureImageDefinition', REF)).outcome), {
    definitionName: p.definitionName,
    created: false,
  });
});

test('fault: a stemcell whose checksum does not match fails downloadAndExtract permanently, as a value', async () => {
  const bad = await buildStemcellFixture({ series: SERIES, version: '1.101', seed: 4 });
  local.boshio.publish(SERIES, { version: '1.101', tarball: bad.tarball, sha256: '0'.repeat(64), sha1: '' });
  const plan = valueOf<StepOutputs['resolveVersions']>(
    (await activity('resolveVersions', { series: SERIES, version: '1.101' })).outcome,
  );
  const release = plan.mirror[0]?.release;
  assert.equal(release?.version, '1.101');

  const { outcome } = await activity('downloadAndExtract', { series: SERIES, version: '1.101' });

  assert.equal((outcome as StepOutcome<unknown>).ok, false);
  assert.match((outcome as { error: string }).error, /sha|checksum|SHA/i);
});

describe('createImageVersion with a version of that name already in the gallery', () => {
  let p: Prepared;
  before(async () => {
    p = await prepared();
  });

  test('fault: an existing version with another image_sha256 is refused, naming both digests, and nothing is sent', async () => {
    const other = 'f'.repeat(64);
    await freshVersion(p, { ...mirrorTags(p), image_sha256: other });

    const { outcome, writes } = await createOverExisting(p);

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    const { error } = outcome as { error: string };
    assert.ok(error.includes(other), error);
    assert.ok(error.includes(p.stemcell.imageSha256), error);
    assert.deepEqual(writes, []);
  });

  test('fault: an existing Failed version is deleted and then created again', async () => {
    await freshVersion(p, mirrorTags(p), REPLICATION_FAILED);

    const { outcome, writes } = await createOverExisting(p);

    assert.deepEqual(valueOf(outcome), createAnswer(p, 'started', 'Creating'));
    assert.deepEqual(writes, ['DELETE', 'PUT']);
  });

  test('fault: a Failed version a director made of another image is reported and never deleted', async () => {
    const director = `bosh-stemcell-${randomUUID()}`;
    const other = '9'.repeat(64);
    await freshVersion(p, { ...directorTags(p, director), image_sha256: other }, REPLICATION_FAILED);

    const { outcome, writes } = await createOverExisting(p);

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    const { error } = outcome as { error: string };
    assert.match(error, /1\.100\.0 is Failed/);
    assert.match(error, /not created by this mirror/);
    assert.ok(error.includes(other), error);
    assert.deepEqual(writes, []);
  });

  test('fault: a Failed version a director made without image_sha256 is reported and never deleted', async () => {
    const director = `bosh-stemcell-${randomUUID()}`;
    const tags = directorTags(p, director);
    delete tags['image_sha256'];
    await freshVersion(p, tags, REPLICATION_FAILED);

    const { outcome, writes } = await createOverExisting(p);

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match((outcome as { error: string }).error, /not created by this mirror.*delete it by hand/);
    assert.deepEqual(writes, []);
  });

  test('a Failed version a director made of this very image is deleted and created again', async () => {
    await freshVersion(p, directorTags(p, `bosh-stemcell-${randomUUID()}`), REPLICATION_FAILED);

    const { outcome, writes } = await createOverExisting(p);

    assert.deepEqual(valueOf(outcome), createAnswer(p, 'started', 'Creating'));
    assert.deepEqual(writes, ['DELETE', 'PUT']);
  });

  test('a Succeeded version a BOSH director created is adopted: the mirror’s reference joins the director’s', async () => {
    const director = `bosh-stemcell-${randomUUID()}`;
    await freshVersion(p, directorTags(p, director));

    const { outcome } = await activity('createImageVersion', REF);

    // Not yet notified by the mirror: the run goes on to finish it.
    assert.deepEqual(valueOf(outcome), createAnswer(p, 'started', 'Succeeded'));
    const references = (await versionTags(p, GALLERY_VERSION))['stemcell_references']?.split(',');
    assert.deepEqual(references?.sort(), [director, MIRROR_STEMCELL_REFERENCE].sort());
  });

  test('fault: an existing version with neither stemcell_references nor stemcell_name is refused', async () => {
    const foreign = { ...mirrorTags(p) };
    delete foreign['stemcell_references'];
    await freshVersion(p, foreign);

    const { outcome, writes } = await createOverExisting(p);

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match(
      (outcome as { error: string }).error,
      /is untagged, from another tool: see docs\/operations\.md#/,
    );
    assert.deepEqual(writes, []);
  });

  test('a Succeeded version of the mirror’s that it already notified about exists: nothing to do', async () => {
    await freshVersion(p, {
      ...mirrorTags(p),
      [MIRROR_NOTIFIED_TAG]: new Date().toISOString(),
    });

    const { outcome, writes } = await createOverExisting(p);

    assert.deepEqual(valueOf(outcome), createAnswer(p, 'exists', 'Succeeded'));
    assert.deepEqual(writes, []);
  });
});

describe('notify with notifications on (a worker with the BASM_NOTIFY_GITHUB_* settings)', () => {
  let p: Prepared;
  let dispatchesBefore: number;
  let run: { results: ChildInvocation[]; stderr: string };

  before(async () => {
    p = await prepared();
    await existingVersion(p, '1.106.0', mirrorTags(p));
    dispatchesBefore = local.github.dispatches.length;
    run = await activitiesInWorker({ ...local.env, ...notifySettings() }, [
      ['notify', { series: SERIES, version: '1.106', definitionName: p.definitionName }],
    ]);
  });

  test('notify sends one workflow dispatch with the five gallery inputs', () => {
    assert.deepEqual(valueOf(run.results[0]?.outcome), { notified: true });
    assert.deepEqual(local.github.dispatches.slice(dispatchesBefore), [
      {
        owner: 'example',
        repo: 'stemcell-consumer',
        workflow: 'stemcell-published.yml',
        ref: 'main',
        inputs: {
          gallery_name: TEST_GALLERY,
          gallery_image_name: p.definitionName,
          gallery_image_version: '1.106.0',
          gallery_subscription_id: TEST_SUBSCRIPTION,
          gallery_resource_group: TEST_RESOURCE_GROUP,
        },
      },
    ]);
    assert.deepEqual(
      Object.keys(local.github.dispatches.at(-1)?.inputs ?? {}).sort(),
      [...NOTIFY_INPUTS].sort(),
    );
  });

  test('notify tags the version mirror_notified with the time of the dispatch', async () => {
    const notified = (await versionTags(p, '1.106.0'))[MIRROR_NOTIFIED_TAG] ?? '';
    assert.match(notified, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(new Date(notified).toISOString(), notified);
  });

  test('the GitHub token appears in no log line of the invocation', () => {
    const logs = run.results.flatMap((r) => r.logs);
    assert.ok(logs.length > 0, 'the invocation logged nothing');
    for (const line of logs) assert.ok(!line.message.includes(GITHUB_TOKEN), line.message);
    assert.ok(!run.stderr.includes(GITHUB_TOKEN));
  });
});

describe('notify with notifications off', () => {
  let p: Prepared;
  let dispatchesBefore: number;
  let outcome: unknown;

  before(async () => {
    p = await prepared();
    await existingVersion(p, '1.107.0', mirrorTags(p));
    dispatchesBefore = local.github.dispatches.length;
    ({ outcome } = await activity('notify', {
      series: SERIES,
      version: '1.107',
      definitionName: p.definitionName,
    }));
  });

  test('notify tags the version mirror_notified: off', async () => {
    assert.deepEqual(valueOf(outcome), { notified: false });
    assert.equal((await versionTags(p, '1.107.0'))[MIRROR_NOTIFIED_TAG], 'off');
  });

  test('notify sends no dispatch', () => {
    assert.equal(local.github.dispatches.length, dispatchesBefore);
  });
});

/** Tags the BOSH Azure CPI gives a version a director uploaded itself (its own reference, no source URL). */
function directorTags(p: Prepared, director: string): Record<string, string> {
  const tags: Record<string, string> = {
    ...mirrorTags(p),
    stemcell_references: director,
    stemcell_name: director,
  };
  delete tags['stemcell_source_url'];
  return tags;
}

/** The non-GET requests to one version's resource since `from`, with their bodies. */
function versionWrites(p: Prepared, versionName: string, from: number) {
  const path = `/images/${p.definitionName}/versions/${versionName}`.toLowerCase();
  return local.arm.requests
    .slice(from)
    .filter((r) => r.method !== 'GET' && r.path.toLowerCase().endsWith(path));
}

describe('notify on versions it did not create', () => {
  let p: Prepared;
  before(async () => {
    p = await prepared();
  });

  test('on a director’s Succeeded version: one tags-only update adds the mirror’s reference after the director’s and sets mirror_notified', async () => {
    const director = `bosh-stemcell-${randomUUID()}`;
    await existingVersion(p, '1.108.0', directorTags(p, director));
    const before = await versionTags(p, '1.108.0');
    const dispatchesBefore = local.github.dispatches.length;
    const from = local.arm.requests.length;

    const { outcome } = await activity('notify', {
      series: SERIES,
      version: '1.108',
      definitionName: p.definitionName,
    });

    assert.deepEqual(valueOf(outcome), { notified: false });
    const after = await versionTags(p, '1.108.0');
    assert.equal(after['stemcell_references'], `${director},${MIRROR_STEMCELL_REFERENCE}`);
    assert.equal(after[MIRROR_NOTIFIED_TAG], 'off');
    assert.deepEqual(after, {
      ...before,
      stemcell_references: `${director},${MIRROR_STEMCELL_REFERENCE}`,
      [MIRROR_NOTIFIED_TAG]: 'off',
    });
    const writes = versionWrites(p, '1.108.0', from);
    assert.deepEqual(
      writes.map((w) => w.method),
      ['PATCH'],
    );
    assert.deepEqual(Object.keys(writes[0]?.body ?? {}), ['tags']);
    assert.equal(local.github.dispatches.length, dispatchesBefore);
  });

  test('refuses a version with neither stemcell_references nor stemcell_name: ok:false, no dispatch, no tag written', async () => {
    const foreign = { ...mirrorTags(p) };
    delete foreign['stemcell_references'];
    delete foreign['stemcell_name'];
    await existingVersion(p, '1.109.0', foreign);
    const before = await versionTags(p, '1.109.0');
    const dispatchesBefore = local.github.dispatches.length;
    const from = local.arm.requests.length;

    // Notifications on, so that a dispatch would be seen if one were sent.
    const { results } = await activitiesInWorker({ ...local.env, ...notifySettings() }, [
      ['notify', { series: SERIES, version: '1.109', definitionName: p.definitionName }],
    ]);

    const outcome = results[0]?.outcome as StepOutcome<unknown>;
    assert.equal(outcome.ok, false);
    assert.match(
      (outcome as { error: string }).error,
      /is untagged, from another tool: see docs\/operations\.md#/,
    );
    assert.equal(local.github.dispatches.length, dispatchesBefore);
    assert.deepEqual(versionWrites(p, '1.109.0', from), []);
    const after = await versionTags(p, '1.109.0');
    assert.deepEqual(after, before);
    assert.equal(after[MIRROR_NOTIFIED_TAG], undefined);
  });
});

/** Five director references: with the mirror's added, the tag would exceed Azure's 256 characters. */
function fiveReferences(): string {
  return Array.from({ length: 5 }, () => `bosh-stemcell-${randomUUID()}`).join(',');
}

/** A director's version whose tags fill Azure's 50. */
function fiftyTags(p: Prepared): Record<string, string> {
  const tags = directorTags(p, `bosh-stemcell-${randomUUID()}`);
  for (let i = 0; Object.keys(tags).length < 50; i++) tags[`director_note_${i}`] = 'x';
  return tags;
}

/** notify run twice on a version, in a worker with notifications on: both invocations, and the dispatches sent. */
async function notifyTwice(
  p: Prepared,
  version: string,
): Promise<{ results: ChildInvocation[]; dispatches: number }> {
  const dispatchesBefore = local.github.dispatches.length;
  const input = { series: SERIES, version, definitionName: p.definitionName };
  const { results } = await activitiesInWorker({ ...local.env, ...notifySettings() }, [
    ['notify', input],
    ['notify', input],
  ]);
  return { results, dispatches: local.github.dispatches.length - dispatchesBefore };
}

describe('tag limits', () => {
  let p: Prepared;
  before(async () => {
    p = await prepared();
  });

  test('fault: a director’s version whose references leave no room for the mirror’s: one dispatch, mirror_notified set, references untouched', async () => {
    const references = fiveReferences();
    await existingVersion(p, '1.100.20', { ...directorTags(p, 'x'), stemcell_references: references });

    const { results, dispatches } = await notifyTwice(p, '1.100.20');

    assert.deepEqual(valueOf(results[0]?.outcome), { notified: true });
    assert.deepEqual(valueOf(results[1]?.outcome), { notified: false });
    assert.equal(dispatches, 1);
    const tags = await versionTags(p, '1.100.20');
    assert.equal(tags['stemcell_references'], references);
    assert.match(tags[MIRROR_NOTIFIED_TAG] ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.ok(
      results[0]?.logs.some((l) => /stemcell_references.*256/.test(l.message)),
      JSON.stringify(results[0]?.logs),
    );
  });

  test('fault: createImageVersion adopts a director’s version whose references are full without failing', async () => {
    const references = fiveReferences();
    await freshVersion(p, { ...directorTags(p, 'x'), stemcell_references: references });

    const { outcome, writes } = await createOverExisting(p);

    assert.deepEqual(valueOf(outcome), createAnswer(p, 'started', 'Succeeded'));
    assert.deepEqual(writes, []);
  });

  test('fault: a version at Azure’s 50 tags: the notification is recorded in the mirror’s storage, and never sent twice', async () => {
    await existingVersion(p, '1.100.22', fiftyTags(p));

    const { results, dispatches } = await notifyTwice(p, '1.100.22');

    assert.deepEqual(valueOf(results[0]?.outcome), { notified: true });
    assert.deepEqual(valueOf(results[1]?.outcome), { notified: false });
    assert.equal(dispatches, 1);
    assert.equal((await versionTags(p, '1.100.22'))[MIRROR_NOTIFIED_TAG], undefined);
    const record = await new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential)
      .getContainerClient('stemcell')
      .getBlobClient(`notified/${p.definitionName}/1.100.22`)
      .getProperties();
    assert.match(record.metadata?.['mirror_notified'] ?? '', /^\d{4}-\d\d-\d\dT/);
  });

  test('fault: resolveVersions takes a version whose notification is recorded in the mirror’s storage as finished', async () => {
    const series = FULL_SERIES;
    const config = loadConfig(process.env);
    const manifest = {
      ...p.stemcell.manifest,
      cloudProperties: { ...p.stemcell.manifest.cloudProperties, name: series },
    };
    const spec = imageDefinitionFor(manifest, config.gallery);
    await p.gallery.ensureImageDefinition(spec);
    local.boshio.publish(series, { version: '4.1', tarball: fixture.tarball });
    await existingVersion({ ...p, definitionName: spec.name }, '4.1.0', fiftyTags(p));
    const unfinished = valueOf<StepOutputs['resolveVersions']>(
      (await activity('resolveVersions', { series })).outcome,
    );
    assert.deepEqual(
      unfinished.mirror.map((m) => m.reason),
      ['finish'],
    );
    const { results } = await activitiesInWorker(
      { ...local.env, ...notifySettings(), BASM_STEMCELL_SERIES: process.env.BASM_STEMCELL_SERIES ?? '' },
      [['notify', { series, version: '4.1', definitionName: spec.name }]],
    );
    assert.deepEqual(valueOf(results[0]?.outcome), { notified: true });

    const plan = valueOf<StepOutputs['resolveVersions']>(
      (await activity('resolveVersions', { series })).outcome,
    );

    assert.deepEqual(plan.mirror, []);
  });
});

test('createImageVersion on a director’s version still Creating returns started and sends no PATCH', async () => {
  const p = await prepared();
  const director = `bosh-stemcell-${randomUUID()}`;
  // Started but not read until settled: the fake ARM answers Creating for the next reads.
  if (await p.gallery.getImageVersion(p.definitionName, GALLERY_VERSION)) {
    await p.gallery.deleteImageVersion(p.definitionName, GALLERY_VERSION);
  }
  await p.gallery.startImageVersion({
    definitionName: p.definitionName,
    versionName: GALLERY_VERSION,
    blobUrl: p.blobUrl,
    tags: directorTags(p, director),
  });
  const from = local.arm.requests.length;

  const { outcome } = await activity('createImageVersion', REF);

  assert.deepEqual(valueOf(outcome), {
    outcome: 'started',
    provisioningState: 'Creating',
    definitionName: p.definitionName,
  });
  assert.deepEqual(versionWrites(p, GALLERY_VERSION, from), []);
  assert.ok(versionRequests(p, GALLERY_VERSION, from).includes('GET'));
  assert.equal((await versionTags(p, GALLERY_VERSION))['stemcell_references'], director);
});

test('resolveVersions finishes a director’s unnotified version in bosh.io’s list and backfills nothing above it', async () => {
  const p = await prepared();
  const series = 'bosh-azure-hyperv-ubuntu-bionic-go_agent';
  const config = loadConfig(process.env);
  const manifest = {
    ...p.stemcell.manifest,
    cloudProperties: { ...p.stemcell.manifest.cloudProperties, name: series },
  };
  const spec = imageDefinitionFor(manifest, config.gallery);
  assert.notEqual(spec.name, p.definitionName);
  await p.gallery.ensureImageDefinition(spec);
  for (const version of ['2.1', '2.2', '2.3']) {
    local.boshio.publish(series, { version, tarball: fixture.tarball });
  }
  const director = `bosh-stemcell-${randomUUID()}`;
  await existingVersion({ ...p, definitionName: spec.name }, '2.1.0', directorTags(p, director));

  const plan = valueOf<StepOutputs['resolveVersions']>(
    (await activity('resolveVersions', { series })).outcome,
  );

  assert.equal(plan.newest.version, '2.3');
  assert.deepEqual(
    plan.mirror.map((m) => [m.release.version, m.galleryVersion, m.reason]),
    [
      ['2.3', '2.3.0', 'newest'],
      ['2.1', '2.1.0', 'finish'],
    ],
  );
  assert.deepEqual(plan.mirror[1]?.finish, { definitionName: spec.name, blobUrl: p.blobUrl });
  assert.deepEqual(plan.deferred, []);
});

test('fault: a bad setting makes an activity return { ok: false } with the configuration error', async () => {
  const env = { ...local.env, AZURE_SUBSCRIPTION_ID: 'not-a-subscription' };
  let expected = '';
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) expected = error.message;
  }
  assert.match(expected, /AZURE_SUBSCRIPTION_ID/);

  const { results } = await activitiesInWorker(env, [['resolveVersions', { series: SERIES }]]);

  assert.deepEqual(results[0]?.outcome, { ok: false, error: expected });
});

describe('the series lock, as the Functions app holds it', () => {
  const series = LOCKED_SERIES;
  const claim = { series, leaseId: randomUUID() };
  const holder = `orchestration mirror-${series} (pid ${process.pid} on ${hostname()})`;
  /** How long to wait for a held series and how often to look: the settings, never an input. */
  const settingsWait = () => {
    const config = loadConfig(process.env);
    return {
      waitSeconds: config.seriesLockWaitSeconds,
      pollIntervalSeconds: config.versionPollIntervalSeconds,
    };
  };

  before(async () => {
    local.boshio.publish(series, { version: '7.1', tarball: fixture.tarball });
    const { outcome } = await activity('acquireSeriesLock', { claim, run: `orchestration mirror-${series}` });
    assert.deepEqual(valueOf(outcome), { acquired: true, wait: settingsWait() });
  });

  test('acquireSeriesLock names the orchestration, the process and the host; another claim is told so', async () => {
    const { outcome } = await activity('acquireSeriesLock', {
      claim: { series, leaseId: randomUUID() },
      run: 'orchestration mirror-other',
    });

    const refused = valueOf<StepOutputs['acquireSeriesLock']>(outcome);
    assert.equal(refused.acquired, false);
    assert.ok(!refused.acquired);
    assert.equal(refused.holder, holder);
    assert.deepEqual(refused.wait, settingsWait());
  });

  test("acquireSeriesLock answers with the settings' wait, whatever wait or poll interval its input names", async () => {
    const { outcome } = await activity('acquireSeriesLock', {
      claim: { series, leaseId: randomUUID() },
      run: 'orchestration mirror-forged',
      wait: { waitSeconds: 86_400, pollIntervalSeconds: 0.001 },
      monitor: { pollIntervalSeconds: 0.001, deadlineMinutes: 100_000, seriesLockWaitSeconds: 86_400 },
    });

    assert.deepEqual(valueOf<StepOutputs['acquireSeriesLock']>(outcome).wait, settingsWait());
  });

  test("fault: a forged claim (another series' real lease, no lease id, a lease id that is no GUID, none held) makes a step fail before it acts", async () => {
    const boshioBefore = local.boshio.requests.length;
    const forgedClaims: unknown[] = [
      claim,
      { series: SERIES },
      { series: SERIES, leaseId: '' },
      { series: SERIES, leaseId: 'not-a-guid' },
      { series: SERIES, leaseId: randomUUID() },
      'mirror-x',
    ];

    for (const lock of forgedClaims) {
      const { outcome } = await activity('downloadAndExtract', { ...REF, lock });
      assert.equal((outcome as StepOutcome<unknown>).ok, false, JSON.stringify(lock));
      assert.match(
        (outcome as { error: string }).error,
        /claim|no longer holds series/,
        JSON.stringify(lock),
      );
    }
    assert.deepEqual(
      local.boshio.requests.slice(boshioBefore),
      [],
      'a step with a forged claim asked bosh.io',
    );
  });

  test('fault: deleteImageVersion without a claim, or with a forged one, deletes nothing and asks ARM nothing', async () => {
    const armBefore = local.arm.requests.length;
    const target = { ...REF, definitionName: SERIES };
    const unclaimed = await activity('deleteImageVersion', target);
    assert.deepEqual(unclaimed.outcome, {
      ok: false,
      error:
        'deleteImageVersion deletes only in a run that holds its series lock; this step carries no claim',
    });
    for (const lock of [claim, { series: SERIES, leaseId: randomUUID() }, { series: SERIES }]) {
      const { outcome } = await activity('deleteImageVersion', { ...target, lock });
      assert.equal((outcome as StepOutcome<unknown>).ok, false, JSON.stringify(lock));
      assert.match(
        (outcome as { error: string }).error,
        /claim|no longer holds series/,
        JSON.stringify(lock),
      );
    }
    assert.deepEqual(local.arm.requests.slice(armBefore), [], 'a refused deletion asked ARM');
  });

  test('fault: the command line started next to the Functions app leaves the series to it, naming it', async () => {
    const boshioBefore = local.boshio.requests.length;

    const run = await runStemcellMirrorDirect(['mirror', '--json', '--series', series], {
      ...local.env,
      BASM_SERIES_LOCK_WAIT_SECONDS: '0',
    });

    assert.equal(run.status, 1, run.stderr);
    const [result] = jsonResults(run);
    assert.equal(result?.action, 'failed');
    assert.ok(String(result?.error).includes(`another run holds series ${series}: ${holder}, since `));
    assert.deepEqual(local.boshio.requests.slice(boshioBefore), [], 'it looked at bosh.io anyway');
  });

  test('fault: a step whose run no longer holds the series fails as a value before it does anything', async () => {
    const boshioBefore = local.boshio.requests.length;

    const { outcome } = await activity('resolveVersions', {
      series,
      lock: { series, leaseId: randomUUID() },
    });

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match((outcome as { error: string }).error, /no longer holds series .*: .* took it over at /);
    assert.deepEqual(local.boshio.requests.slice(boshioBefore), []);
  });

  test('a step of the holding run runs, and releaseSeriesLock gives the series back', async () => {
    const plan = valueOf<StepOutputs['resolveVersions']>(
      (await activity('resolveVersions', { series, lock: claim })).outcome,
    );
    assert.equal(plan.newest.version, '7.1');

    assert.deepEqual(valueOf((await activity('releaseSeriesLock', { claim })).outcome), { released: true });
    const next = { series, leaseId: randomUUID() };
    assert.deepEqual(valueOf((await activity('acquireSeriesLock', { claim: next, run: 'next' })).outcome), {
      acquired: true,
      wait: settingsWait(),
    });
    await activity('releaseSeriesLock', { claim: next });
  });
});

describe('steps given forged input (an orchestration started by hand with the system key)', () => {
  let p: Prepared;
  before(async () => {
    p = await prepared();
  });

  /** An HTTPS server standing for the attacker's: it must never be asked for anything. */
  async function attacker() {
    const requests: string[] = [];
    const server = await startHttpsServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.writeHead(200).end('not a stemcell');
    });
    return { url: server.url, requests, stop: () => server.stop() };
  }

  test('fault: downloadAndExtract given a foreign tarball URL downloads only what the configured bosh.io lists', async () => {
    const evil = await attacker();
    try {
      const forged = {
        ...REF,
        release: { ...p.release, url: `${evil.url}/evil.tgz`, sha256: '0'.repeat(64), sha1: '' },
      };
      const { outcome } = await activity('downloadAndExtract', forged);

      const stemcell = valueOf<StepOutputs['downloadAndExtract']>(outcome);
      assert.equal(stemcell.tarballSha256, fixture.sha256);
      assert.equal(stemcell.imageSha256, fixture.imageSha256);
      assert.deepEqual(evil.requests, []);
    } finally {
      await evil.stop();
    }
  });

  test('fault: a series no setting names is refused by every step, before bosh.io, the gallery or storage is asked', async () => {
    const boshioFrom = local.boshio.requests.length;
    const armFrom = local.arm.requests.length;
    const input = {
      series: FOREIGN_SERIES,
      version: '1.100',
      imageSha256: p.stemcell.imageSha256,
      definitionName: p.definitionName,
    };

    for (const name of Object.keys(STEP_RETRY) as StepName[]) {
      const { outcome } = await activity(name, input);
      assert.equal((outcome as StepOutcome<unknown>).ok, false, name);
      assert.match((outcome as { error: string }).error, /not one this mirror is configured for/, name);
    }
    assert.deepEqual(local.boshio.requests.slice(boshioFrom), []);
    assert.deepEqual(local.arm.requests.slice(armFrom), []);
  });

  test('fault: ensureImageDefinition given another stemcell’s manifest makes the definition of the mirror’s own upload', async () => {
    const manifest = { ...p.stemcell.manifest, name: 'attacker-stemcell' };
    const armFrom = local.arm.requests.length;

    const { outcome } = await activity('ensureImageDefinition', { ...REF, manifest });

    assert.deepEqual(valueOf(outcome), { definitionName: p.definitionName, created: false });
    assert.ok(!local.arm.requests.slice(armFrom).some((r) => r.path.includes('attacker')));
  });

  test('fault: createImageVersion given another definition, version name, blob and digest creates only the stemcell’s own version from the mirror’s upload', async () => {
    const evil = await attacker();
    try {
      if (await p.gallery.getImageVersion(p.definitionName, GALLERY_VERSION)) {
        await p.gallery.deleteImageVersion(p.definitionName, GALLERY_VERSION);
      }
      const armFrom = local.arm.requests.length;
      const forged = {
        ...REF,
        definitionName: 'another-definition',
        galleryVersion: '9.9.9',
        blobUrl: `${evil.url}/evil.vhd`,
        release: { ...p.release, url: `${evil.url}/evil.tgz` },
        stemcell: { ...p.stemcell, imageSha256: 'f'.repeat(64) },
      };

      const { outcome } = await activity('createImageVersion', forged);

      assert.deepEqual(valueOf(outcome), {
        outcome: 'started',
        provisioningState: 'Creating',
        definitionName: p.definitionName,
      });
      const writes = local.arm.requests.slice(armFrom).filter((r) => r.method !== 'GET');
      assert.deepEqual(
        writes.map((w) =>
          w.path
            .toLowerCase()
            .endsWith(`/images/${p.definitionName}/versions/${GALLERY_VERSION}`.toLowerCase()),
        ),
        [true],
      );
      const body = JSON.stringify(writes[0]?.body);
      assert.ok(body.includes(p.blobUrl), body);
      assert.ok(body.includes(p.stemcell.imageSha256), body);
      assert.doesNotMatch(
        JSON.stringify(local.arm.requests.slice(armFrom)),
        /another-definition|9\.9\.9|evil|ffffffff/,
      );
      assert.deepEqual(evil.requests, []);
    } finally {
      await evil.stop();
    }
  });

  test('fault: createImageVersion for a version the mirror has not uploaded is refused and creates nothing', async () => {
    const armFrom = local.arm.requests.length;

    const { outcome } = await activity('createImageVersion', {
      series: SERIES,
      version: '1.199',
      blobUrl: p.blobUrl,
    });

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match((outcome as { error: string }).error, /does not exist; the uploadVhd step makes it/);
    assert.deepEqual(
      local.arm.requests.slice(armFrom).filter((r) => r.method !== 'GET'),
      [],
    );
  });

  test('fault: uploadVhd given a digest of another image uploads nothing and refuses to mix them', async () => {
    const before = await sharedKeyBlob(p.blobUrl).getProperties();

    const { outcome } = await activity('uploadVhd', { ...REF, imageSha256: 'f'.repeat(64) });

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match((outcome as { error: string }).error, /different image .*refusing to mix them/);
    const after = await sharedKeyBlob(p.blobUrl).getProperties();
    assert.equal(after.etag, before.etag, 'the blob is untouched');
  });

  test('fault: getImageVersionState, notify and extendImageVersion refuse a definition that is not one of the series’, with no request and no dispatch', async () => {
    const armFrom = local.arm.requests.length;
    const dispatchesBefore = local.github.dispatches.length;

    for (const name of ['getImageVersionState', 'notify', 'extendImageVersion'] as const) {
      const { outcome } = await activity(name, { ...REF, definitionName: 'another-stemcell' });
      assert.equal((outcome as StepOutcome<unknown>).ok, false, name);
      assert.match(
        (outcome as { error: string }).error,
        /not one of this series’ definitions|not one of this series' definitions/,
        name,
      );
    }
    assert.deepEqual(local.arm.requests.slice(armFrom), []);
    assert.equal(local.github.dispatches.length, dispatchesBefore);
  });

  test('extendImageVersion reads the version in the definition the plan passed, listing nothing; an older input without it still works', async () => {
    await freshVersion(p, mirrorTags(p));
    const lists = (from: number) =>
      local.arm.requests
        .slice(from)
        .filter((r) => r.method === 'GET' && /\/images(\/[^/]+\/versions)?$/.test(r.path));
    const unchanged = { definitionName: p.definitionName, extended: false, change: '' };

    const armFrom = local.arm.requests.length;
    const { outcome } = await activity('extendImageVersion', { ...REF, definitionName: p.definitionName });
    assert.deepEqual(valueOf(outcome), unchanged);
    assert.deepEqual(lists(armFrom), [], 'the plan already knows the definition');

    const olderFrom = local.arm.requests.length;
    const older = await activity('extendImageVersion', REF);
    assert.deepEqual(valueOf(older.outcome), unchanged);
    assert.ok(lists(olderFrom).length > 0, 'an input from before the change finds it by listing');
  });

  test("fault: extendImageVersion refuses a version of the series' definition that the mirror did not create", async () => {
    await freshVersion(p, { stemcell_references: 'bosh-stemcell-1', image_sha256: p.stemcell.imageSha256 });
    const armFrom = local.arm.requests.length;

    const { outcome } = await activity('extendImageVersion', { ...REF, definitionName: p.definitionName });

    assert.equal((outcome as StepOutcome<unknown>).ok, false);
    assert.match(
      (outcome as { error: string }).error,
      /this mirror created is in the gallery; nothing to extend/,
    );
    assert.deepEqual(
      local.arm.requests.slice(armFrom).filter((r) => r.method !== 'GET'),
      [],
    );
  });

  test('fault: adoptImageVersion without BASM_ADOPT_UNTAGGED adopts nothing, whatever the input says', async () => {
    const evil = await attacker();
    try {
      await freshVersion(p, {});
      const armFrom = local.arm.requests.length;
      const boshioFrom = local.boshio.requests.length;

      const { outcome } = await activity('adoptImageVersion', {
        ...REF,
        adopt: true,
        adoptUntagged: true,
        definitionName: p.definitionName,
        sourceUri: `${evil.url}/evil.vhd`,
      });

      assert.equal((outcome as StepOutcome<unknown>).ok, false);
      assert.match(
        (outcome as { error: string }).error,
        /BASM_ADOPT_UNTAGGED is not true; refusing to adopt/,
      );
      assert.deepEqual(local.arm.requests.slice(armFrom), []);
      assert.deepEqual(local.boshio.requests.slice(boshioFrom), []);
      assert.deepEqual(await versionTags(p, GALLERY_VERSION), {});
      assert.deepEqual(evil.requests, []);
    } finally {
      await withoutVersion(p);
      await evil.stop();
    }
  });

  test('fault: adoptImageVersion sends no credential to a source blob outside this cloud’s storage, and tags nothing', async () => {
    const evil = await attacker();
    try {
      await freshVersion(p, {});
      // The gallery's own word on where the version came from: another tool may have named any host.
      const stored = local.arm.imageVersions.get(`${p.definitionName}/${GALLERY_VERSION}`) as {
        properties: { storageProfile: { osDiskImage: { source: { uri: string } } } };
      };
      stored.properties.storageProfile.osDiskImage.source.uri = `${evil.url}/vhds/evil.vhd`;
      const armFrom = local.arm.requests.length;

      const { results } = await activitiesInWorker({ ...process.env, BASM_ADOPT_UNTAGGED: 'true' }, [
        ['adoptImageVersion', REF],
      ]);

      const outcome = results[0]?.outcome as StepOutcome<unknown>;
      assert.equal(outcome.ok, false);
      assert.match(
        (outcome as { error: string }).error,
        /is untagged and its source blob .* is not in a storage account of this cloud .*refusing to send the mirror's credential there/,
      );
      assert.deepEqual(evil.requests, []);
      assert.deepEqual(versionWrites(p, GALLERY_VERSION, armFrom), []);
      assert.deepEqual(await versionTags(p, GALLERY_VERSION), {});
    } finally {
      await withoutVersion(p);
      await evil.stop();
    }
  });

  test('fault: getImageVersionState answers the configured poll interval and deadline, whatever the input says', async () => {
    const config = loadConfig(process.env);
    if (!(await p.gallery.getImageVersion(p.definitionName, GALLERY_VERSION))) {
      await existingVersion(p, GALLERY_VERSION, mirrorTags(p));
    }

    const { outcome } = await activity('getImageVersionState', {
      ...REF,
      definitionName: p.definitionName,
      monitor: { pollIntervalSeconds: 0.001, deadlineMinutes: 100_000 },
    });

    assert.deepEqual(valueOf<StepOutputs['getImageVersionState']>(outcome).monitor, {
      pollIntervalSeconds: config.versionPollIntervalSeconds,
      deadlineMinutes: config.versionReadyTimeoutMinutes,
    });
  });
});

test('fault: a director creates the version between the mirror’s look and its PUT: never overwritten, adopted instead', async () => {
  const p = await prepared();
  await withoutVersion(p);
  const director = `bosh-stemcell-${randomUUID()}`;
  const cpiTags: Record<string, string> = {
    ...mirrorTags(p),
    stemcell_references: director,
    stemcell_name: director,
  };
  delete cpiTags['stemcell_source_url'];
  local.arm.beforeNext('PUT', `/images/${p.definitionName}/versions/${GALLERY_VERSION}`, () =>
    existingVersion(p, GALLERY_VERSION, cpiTags),
  );

  const { outcome } = await activity('createImageVersion', REF);

  assert.deepEqual(valueOf(outcome), {
    outcome: 'started',
    provisioningState: 'Succeeded',
    definitionName: p.definitionName,
  });
  const tags = await versionTags(p, GALLERY_VERSION);
  assert.equal(tags['stemcell_name'], director);
  assert.equal(tags['stemcell_source_url'], undefined);
  assert.deepEqual(
    tags['stemcell_references']?.split(',').sort(),
    [director, MIRROR_STEMCELL_REFERENCE].sort(),
  );
});

test('fault: the version is created by someone else before each of the mirror’s two PUTs: a transient error, retried later', async () => {
  const p = await prepared();
  await withoutVersion(p);
  const versionPath = `/images/${p.definitionName}/versions/${GALLERY_VERSION}`;
  const director = `bosh-stemcell-${randomUUID()}`;
  const cpiTags: Record<string, string> = { ...mirrorTags(p), stemcell_references: director };
  // Created before the first PUT, deleted before the second look, created again before the second PUT.
  local.arm.beforeNext('PUT', versionPath, async () => {
    await existingVersion(p, GALLERY_VERSION, cpiTags);
    local.arm.beforeNext('GET', versionPath, async () => {
      await p.gallery.deleteImageVersion(p.definitionName, GALLERY_VERSION);
      local.arm.beforeNext('PUT', versionPath, () => existingVersion(p, GALLERY_VERSION, cpiTags));
    });
  });

  await assert.rejects(activity('createImageVersion', REF), /keeps being created by someone else/);
  assert.equal((await versionTags(p, GALLERY_VERSION))['stemcell_references'], director);
});
