/**
 * The gallery client's target regions against the ARM fake: the publishing profile a new version carries
 * (regions, replicas, storage type, end of life), replication per region as Azure reports it under
 * `$expand=ReplicationStatus`, a region that fails, and the extension of an existing version (an update of its
 * target regions, never a recreation, never a removal). The fake refuses what GalleryRP refuses.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ComputeManagementClient } from '@azure/arm-compute';
import { ManagedIdentityCredential } from '@azure/identity';
import type { ContainerClient } from '@azure/storage-blob';
import { imageDefinitionFor, imageVersionTags } from '../../src/cpi.js';
import type { ImageDefinitionSpec } from '../../src/cpi.js';
import type { ComputeGallery, ImageVersionState, VersionPublishing } from '../../src/gallery.js';
import type { FakeArm } from '../support/fake-arm/index.js';
import { startLocalGallery, stemcellManifest, vhdPageBlob } from '../support/local-gallery.js';
import type { LocalGallery } from '../support/local-gallery.js';

const subscriptionId = '00000000-0000-4000-8000-0000000000e8';
const resourceGroup = 'rg-regions-test';
const galleryName = 'stemcells';
const region = 'westeurope';
const DAY_MS = 86_400_000;
/** Reads of a version after it Succeeded until a region other than the gallery's has its replicas. */
const READS_UNTIL_REPLICATED = 2;

let local: LocalGallery;
let arm: FakeArm;
let container: ContainerClient;
let storageAccountId: string;

before(async () => {
  local = await startLocalGallery({
    subscriptionId,
    resourceGroup,
    galleryName,
    region,
    replicationReadsUntilDone: READS_UNTIL_REPLICATED,
  });
  ({ arm, container, storageAccountId } = local);
});

after(async () => {
  await local?.stop();
});

function galleryWith(publishing?: VersionPublishing): ComputeGallery {
  return local.gallery(publishing);
}

const twoRegions: VersionPublishing = {
  targetRegions: [
    { name: 'westeurope', regionalReplicaCount: 2 },
    { name: 'eastus', regionalReplicaCount: 1 },
  ],
  storageAccountType: 'Standard_ZRS',
};

/** A definition and a valid VHD page blob for a version of `series`. */
async function prepared(series: string): Promise<{ spec: ImageDefinitionSpec; blobUrl: string }> {
  const spec = imageDefinitionFor(stemcellManifest(series), { publisher: 'bosh' });
  await galleryWith().ensureImageDefinition(spec);
  return { spec, blobUrl: await vhdPageBlob(container, `${series}.vhd`) };
}

async function started(series: string, gallery: ComputeGallery): Promise<ImageDefinitionSpec> {
  const { spec, blobUrl } = await prepared(series);
  const tags = imageVersionTags({
    manifest: stemcellManifest(series),
    imageSha256: 'c'.repeat(64),
    galleryName,
    definitionName: spec.name,
  });
  await gallery.startImageVersion({ definitionName: spec.name, versionName: '1.1364.0', blobUrl, tags });
  return spec;
}

/** Reads the version (as the monitor loop does) until `done` says so; every read is returned. */
async function readUntil(
  gallery: ComputeGallery,
  definitionName: string,
  done: (state: ImageVersionState) => boolean,
): Promise<ImageVersionState[]> {
  const reads: ImageVersionState[] = [];
  for (let attempt = 0; attempt < 200; attempt++) {
    const state = await gallery.getImageVersion(definitionName, '1.1364.0');
    assert.ok(state !== undefined);
    reads.push(state);
    if (done(state)) return reads;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${definitionName}/1.1364.0 never got there`);
}

const everyRegionCompleted = (state: ImageVersionState): boolean =>
  (state.regions ?? []).length > 0 && (state.regions ?? []).every((r) => r.state === 'Completed');

function sent(method: string, definitionName: string): Array<Record<string, unknown>> {
  return arm.requests
    .filter((r) => r.method === method && r.path.endsWith(`/images/${definitionName}/versions/1.1364.0`))
    .map((r) => (r.body as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});
}

function stored(definitionName: string): Record<string, unknown> {
  const version = arm.imageVersions.get(`${definitionName}/1.1364.0`);
  return (version?.['properties'] ?? {}) as Record<string, unknown>;
}

test('a new version carries every target region with its replicas, the storage type and the end of life', async () => {
  const gallery = galleryWith({ ...twoRegions, endOfLifeDays: 30 });
  const before = Date.now();
  const spec = await started('regions-body', gallery);
  const [put] = sent('PUT', spec.name);
  const profile = put?.['publishingProfile'] as Record<string, unknown>;
  assert.deepEqual(profile['targetRegions'], [
    { name: 'westeurope', regionalReplicaCount: 2, storageAccountType: 'Standard_ZRS' },
    { name: 'eastus', regionalReplicaCount: 1, storageAccountType: 'Standard_ZRS' },
  ]);
  assert.equal(profile['storageAccountType'], 'Standard_ZRS');
  const endOfLife = Date.parse(String(profile['endOfLifeDate']));
  assert.ok(endOfLife >= before + 30 * DAY_MS && endOfLife <= Date.now() + 30 * DAY_MS, String(endOfLife));
});

test('replication is reported per region: Succeeded while eastus still replicates, then Completed everywhere', async () => {
  const gallery = galleryWith(twoRegions);
  const spec = await started('regions-progress', gallery);
  const reads = await readUntil(gallery, spec.name, everyRegionCompleted);
  const succeededEarly = reads.find(
    (s) => s.provisioningState === 'Succeeded' && s.regions?.some((r) => r.state === 'Replicating'),
  );
  assert.deepEqual(succeededEarly?.regions, [
    { name: 'westeurope', state: 'Completed' },
    { name: 'eastus', state: 'Replicating', progress: 40 },
  ]);
  assert.equal(reads.at(-1)?.provisioningState, 'Succeeded');
});

test("fault: replication failing in one region reports that region Failed with Azure's details", async () => {
  const gallery = galleryWith(twoRegions);
  const { spec, blobUrl } = await prepared('regions-fail');
  arm.failNextReplication(spec.name, '1.1364.0', 'eastus', {
    code: 'ReplicationJobsNotCompleted',
    message: 'Replication job not completed at region: eastus. Quota exceeded.',
  });
  await gallery.startImageVersion({ definitionName: spec.name, versionName: '1.1364.0', blobUrl, tags: {} });
  const reads = await readUntil(gallery, spec.name, (s) => s.provisioningState === 'Failed');
  assert.deepEqual(reads.at(-1)?.regions, [
    { name: 'westeurope', state: 'Completed' },
    {
      name: 'eastus',
      state: 'Failed',
      details: 'Replication job not completed at region: eastus. Quota exceeded.',
    },
  ]);
});

test('extending adds the missing region and raises replicas by an update that keeps the source', async () => {
  const spec = await started('regions-extend', galleryWith());
  await readUntil(galleryWith(), spec.name, everyRegionCompleted);
  const source = JSON.stringify(
    (stored(spec.name)['storageProfile'] as Record<string, unknown>)['osDiskImage'],
  );
  const gallery = galleryWith(twoRegions);

  const change = await gallery.extendImageVersion(spec.name, '1.1364.0');

  assert.deepEqual(change, { added: ['eastus'], raised: [{ name: 'westeurope', from: 1, to: 2 }] });
  const [patch, ...more] = sent('PATCH', spec.name);
  assert.equal(more.length, 0);
  // The existing region keeps its storage type (not updatable); the new one gets the configured one.
  assert.deepEqual((patch?.['publishingProfile'] as Record<string, unknown>)['targetRegions'], [
    { name: 'westeurope', regionalReplicaCount: 2, storageAccountType: 'Standard_LRS' },
    { name: 'eastus', regionalReplicaCount: 1, storageAccountType: 'Standard_ZRS' },
  ]);
  assert.equal(sent('PUT', spec.name).length, 1, 'never recreated');
  const reads = await readUntil(
    gallery,
    spec.name,
    (s) => s.provisioningState === 'Succeeded' && everyRegionCompleted(s),
  );
  assert.ok(reads.some((s) => s.regions?.some((r) => r.name === 'eastus' && r.state === 'Replicating')));
  assert.equal(
    JSON.stringify((stored(spec.name)['storageProfile'] as Record<string, unknown>)['osDiskImage']),
    source,
  );
});

test('extending a version that has every region sends nothing, and never removes a region', async () => {
  const spec = await started('regions-idempotent', galleryWith(twoRegions));
  await readUntil(galleryWith(), spec.name, everyRegionCompleted);
  // The settings now name only the gallery's region: eastus stays (a director may use it).
  const change = await galleryWith().extendImageVersion(spec.name, '1.1364.0');
  assert.deepEqual(change, { added: [], raised: [] });
  assert.deepEqual(sent('PATCH', spec.name), []);
  const regions = (stored(spec.name)['publishingProfile'] as Record<string, unknown>)[
    'targetRegions'
  ] as unknown[];
  assert.equal(regions.length, 2);
});

test('fault: extending a version Azure is still creating is a transient error, and sends nothing', async () => {
  const spec = await started('regions-busy', galleryWith());
  await assert.rejects(
    galleryWith(twoRegions).extendImageVersion(spec.name, '1.1364.0'),
    (error: unknown) => {
      assert.equal((error as { transient?: boolean }).transient, true);
      assert.match(String(error), /is Creating/);
      return true;
    },
  );
  assert.deepEqual(sent('PATCH', spec.name), []);
});

/** GalleryRP's own checks, seen through the SDK as any client would meet them. */
function armClient(): ComputeManagementClient {
  return new ComputeManagementClient(new ManagedIdentityCredential(), subscriptionId, {
    endpoint: arm.url,
    credentials: { scopes: [`${arm.url}/.default`] },
  });
}

async function refusal(
  write: Promise<unknown>,
): Promise<{ statusCode?: number; code?: string; message: string }> {
  try {
    await write;
  } catch (error) {
    return error as { statusCode?: number; code?: string; message: string };
  }
  throw new Error('the fake accepted it');
}

test('the fake refuses what GalleryRP refuses: a past end of life, too many replicas, a region twice, no gallery region', async () => {
  const { spec, blobUrl } = await prepared('regions-refused');
  const client = armClient();
  const put = (publishingProfile: Record<string, unknown>) =>
    client.galleryImageVersions.createOrUpdate(resourceGroup, galleryName, spec.name, '1.1364.0', {
      location: region,
      publishingProfile,
      storageProfile: { osDiskImage: { source: { storageAccountId, uri: blobUrl } } },
    });
  const past = await refusal(put({ endOfLifeDate: new Date(Date.now() - DAY_MS) }));
  assert.equal(past.statusCode, 400);
  assert.match(past.message, /must be in the future/);
  const tooMany = await refusal(put({ targetRegions: [{ name: region, regionalReplicaCount: 101 }] }));
  assert.match(tooMany.message, /regionalReplicaCount' must be an integer from 1 to 100/);
  const twice = await refusal(put({ targetRegions: [{ name: region }, { name: 'West Europe' }] }));
  assert.match(twice.message, /more than once/);
  const noHome = await refusal(put({ targetRegions: [{ name: 'eastus' }] }));
  assert.match(noHome.message, /must include the source region/);
  assert.equal(arm.imageVersions.has(`${spec.name}/1.1364.0`), false);
});

test("the fake refuses an update that changes a region's storage type, or drops a region the safety profile keeps", async () => {
  const spec = await started('regions-update-refused', galleryWith(twoRegions));
  await readUntil(galleryWith(), spec.name, everyRegionCompleted);
  const client = armClient();
  const update = (targetRegions: Array<Record<string, unknown>>) =>
    client.galleryImageVersions.update(resourceGroup, galleryName, spec.name, '1.1364.0', {
      publishingProfile: { targetRegions: targetRegions as never },
    });
  const retyped = await refusal(
    update([
      { name: 'westeurope', regionalReplicaCount: 2, storageAccountType: 'Standard_LRS' },
      { name: 'eastus', regionalReplicaCount: 1, storageAccountType: 'Standard_ZRS' },
    ]),
  );
  assert.equal(retyped.code, 'PropertyChangeNotAllowed');
  const properties = stored(spec.name);
  (properties['safetyProfile'] as Record<string, unknown>)['allowDeletionOfReplicatedLocations'] = false;
  const dropped = await refusal(
    update([{ name: 'westeurope', regionalReplicaCount: 2, storageAccountType: 'Standard_ZRS' }]),
  );
  assert.equal(dropped.statusCode, 409);
  assert.match(dropped.message, /Removing replicated region 'eastus' is not allowed/);
});
