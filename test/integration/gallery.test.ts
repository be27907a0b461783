/**
 * ComputeGallery against the ARM fake, Azurite and a managed-identity endpoint: the real SDK, the real
 * credential code and Azure's long-running-operation contract, on 127.0.0.1.
 * Run with NODE_EXTRA_CA_CERTS=.tmp/tls/ca.pem (after `node dist/test/support/tls.js`).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ManagedIdentityCredential } from '@azure/identity';
import type { ContainerClient } from '@azure/storage-blob';
import type { GalleryNaming } from '../../src/config.js';
import {
  MIRROR_STEMCELL_REFERENCE,
  imageDefinitionFor,
  imageVersionTags,
  isAdoptableByCpi,
  stemcellReferencesWith,
} from '../../src/cpi.js';
import type { ImageDefinitionSpec } from '../../src/cpi.js';
import { ComputeGallery } from '../../src/gallery.js';
import type { ImageVersionState } from '../../src/gallery.js';
import { GalleryError } from '../../src/gallery-error.js';
import type { CloudProperties } from '../../src/manifest.js';
import type { AzuriteBlob } from '../support/azurite.js';
import type { FakeArm } from '../support/fake-arm/index.js';
import type { IdentityEndpoint } from '../support/identity.js';
import { startHttpsServer } from '../support/https-server.js';
import { fixedVhdFooter } from '../support/stemcell-fixture.js';
import { startLocalGallery, stemcellManifest, vhdPageBlob } from '../support/local-gallery.js';
import type { LocalGallery } from '../support/local-gallery.js';

const subscriptionId = '00000000-0000-4000-8000-0000000000e5';
const resourceGroup = 'rg-gallery-test';
const galleryName = 'stemcells';
const region = 'westeurope';
const naming: GalleryNaming = { publisher: 'bosh' };
const MIB = 1024 * 1024;

let local: LocalGallery;
let azurite: AzuriteBlob;
let identity: IdentityEndpoint;
let arm: FakeArm;
let gallery: ComputeGallery;
let container: ContainerClient;
let storageAccountId: string;

before(async () => {
  local = await startLocalGallery({ subscriptionId, resourceGroup, galleryName, region });
  ({ azurite, identity, arm, container, storageAccountId } = local);
  gallery = local.gallery();
});

after(async () => {
  await local?.stop();
});

/** A definition that exists in the fake, for tests about versions. */
async function existingDefinition(
  series: string,
  cloud: Partial<CloudProperties> = {},
): Promise<ImageDefinitionSpec> {
  const spec = imageDefinitionFor(stemcellManifest(series, cloud), naming);
  await gallery.ensureImageDefinition(spec);
  return spec;
}

function tagsFor(series: string, definitionName: string): Record<string, string> {
  return imageVersionTags({
    manifest: stemcellManifest(series),
    imageSha256: 'c'.repeat(64),
    galleryName,
    definitionName,
  });
}

async function waitForState(
  definitionName: string,
  versionName: string,
  wanted: string[],
): Promise<ImageVersionState> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const state = await gallery.getImageVersion(definitionName, versionName);
    if (state !== undefined && wanted.includes(state.provisioningState)) return state;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`${definitionName}/${versionName} never reached ${wanted.join(' or ')}`);
}

function storedState(definitionName: string, versionName: string): unknown {
  const stored = arm.imageVersions.get(`${definitionName}/${versionName}`);
  return (stored?.['properties'] as { provisioningState?: unknown } | undefined)?.provisioningState;
}

test('ensureImageDefinition creates a missing definition as the CPI would', async () => {
  const spec = imageDefinitionFor(
    stemcellManifest('def-create', { generation: 'gen2', acceleratedNetworking: true }),
    naming,
  );
  assert.equal(await gallery.ensureImageDefinition(spec), 'created');
  const stored = arm.imageDefinitions.get('def-create-gen2')?.['properties'] as
    Record<string, unknown> | undefined;
  assert.deepEqual(
    [
      stored?.['provisioningState'],
      stored?.['hyperVGeneration'],
      stored?.['identifier'],
      stored?.['features'],
    ],
    [
      'Succeeded',
      'V2',
      { publisher: 'bosh', offer: 'def-create-gen2', sku: 'gen2' },
      [{ name: 'IsAcceleratedNetworkSupported', value: 'True' }],
    ],
  );
});

test('ensureImageDefinition reports a matching existing definition as exists', async () => {
  const spec = imageDefinitionFor(stemcellManifest('def-exists'), naming);
  await gallery.ensureImageDefinition(spec);
  assert.equal(await gallery.ensureImageDefinition(spec), 'exists');
});

test('ensureImageDefinition refuses an existing definition of another generation, naming both', async () => {
  const gen1 = imageDefinitionFor(stemcellManifest('def-conflict'), naming);
  await gallery.ensureImageDefinition(gen1);
  const gen2: ImageDefinitionSpec = { ...gen1, hyperVGeneration: 'V2' };
  await assert.rejects(gallery.ensureImageDefinition(gen2), (error: unknown) => {
    assert.ok(error instanceof GalleryError);
    assert.equal(error.transient, false);
    assert.match(error.message, /def-conflict/);
    assert.match(error.message, /hyperVGeneration is V1 there but the stemcell needs V2/);
    return true;
  });
});

test('ensureImageDefinition leaves a contradicting definition unmodified', async () => {
  const x64 = imageDefinitionFor(stemcellManifest('def-untouched', { generation: 'gen2' }), naming);
  await gallery.ensureImageDefinition(x64);
  const before = JSON.stringify(arm.imageDefinitions.get(x64.name));
  await assert.rejects(gallery.ensureImageDefinition({ ...x64, architecture: 'Arm64' }), GalleryError);
  assert.equal(JSON.stringify(arm.imageDefinitions.get(x64.name)), before);
});

test('startImageVersion returns while Azure is still creating the version', async () => {
  const spec = await existingDefinition('ver-start');
  const blobUrl = await vhdPageBlob(container, 'ver-start.vhd');
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.1364.0',
    blobUrl,
    tags: tagsFor('ver-start', spec.name),
  });
  assert.equal(storedState(spec.name, '1.1364.0'), 'Creating');
});

test('a started version eventually reports Succeeded with its source and tags', async () => {
  const spec = await existingDefinition('ver-succeed');
  const blobUrl = await vhdPageBlob(container, 'ver-succeed.vhd');
  const tags = tagsFor('ver-succeed', spec.name);
  await gallery.startImageVersion({ definitionName: spec.name, versionName: '1.1364.0', blobUrl, tags });
  const state = await waitForState(spec.name, '1.1364.0', ['Succeeded', 'Failed']);
  assert.deepEqual(state, {
    name: '1.1364.0',
    provisioningState: 'Succeeded',
    tags,
    sourceUri: blobUrl,
    targetRegions: [{ name: region, regionalReplicaCount: 1, storageAccountType: 'Standard_LRS' }],
    // Its one target region, replicated: what `status` shows per region.
    regions: [{ name: region, state: 'Completed' }],
  });
});

test('the version request carries the CPI-shaped source and a single-region publishing profile', async () => {
  const spec = await existingDefinition('ver-body');
  const blobUrl = await vhdPageBlob(container, 'ver-body.vhd');
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '2.0.0',
    blobUrl,
    tags: tagsFor('ver-body', spec.name),
  });
  const put = arm.requests.find(
    (request) => request.method === 'PUT' && request.path.endsWith(`/images/${spec.name}/versions/2.0.0`),
  );
  const properties = (put?.body as { properties?: Record<string, unknown> } | undefined)?.properties;
  assert.deepEqual(
    { storageProfile: properties?.['storageProfile'], publishingProfile: properties?.['publishingProfile'] },
    {
      storageProfile: { osDiskImage: { source: { storageAccountId, uri: blobUrl } } },
      publishingProfile: {
        targetRegions: [{ name: region, regionalReplicaCount: 1, storageAccountType: 'Standard_LRS' }],
        replicaCount: 1,
        excludeFromLatest: false,
        // No BASM_END_OF_LIFE_DAYS: no endOfLifeDate.
        storageAccountType: 'Standard_LRS',
      },
    },
  );
});

test("fault: a failed provisioning is reported with Azure's message", async () => {
  const spec = await existingDefinition('ver-fail');
  const blobUrl = await vhdPageBlob(container, 'ver-fail.vhd');
  arm.failNextVersion(spec.name, '1.1364.0', {
    code: 'ReplicationJobFailed',
    message: 'Replication to westeurope failed: disk copy timed out.',
  });
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.1364.0',
    blobUrl,
    tags: tagsFor('ver-fail', spec.name),
  });
  const state = await waitForState(spec.name, '1.1364.0', ['Succeeded', 'Failed']);
  assert.equal(state.provisioningState, 'Failed');
  // Azure's reason as the version's replication status carries it: the message, without the code.
  assert.match(state.errorMessage ?? '', /Replication to westeurope failed: disk copy timed out\./);
});

test("fault: a failed version's reason reaches a ComputeGallery that did not start it (another worker)", async () => {
  const spec = await existingDefinition('ver-fail-elsewhere');
  const blobUrl = await vhdPageBlob(container, 'ver-fail-elsewhere.vhd');
  arm.failNextVersion(spec.name, '1.1364.0', {
    code: 'ReplicationJobFailed',
    message: 'Replication to westeurope failed: the source blob could not be read.',
  });
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.1364.0',
    blobUrl,
    tags: tagsFor('ver-fail-elsewhere', spec.name),
  });
  // A Functions activity on another worker: a new instance, with no poller of the PUT.
  const elsewhere = galleryAt(arm.url);
  let state: ImageVersionState | undefined;
  for (let attempt = 0; attempt < 200; attempt++) {
    state = await elsewhere.getImageVersion(spec.name, '1.1364.0');
    if (state?.provisioningState === 'Succeeded' || state?.provisioningState === 'Failed') break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.equal(state?.provisioningState, 'Failed');
  assert.equal(state?.errorMessage, 'Replication to westeurope failed: the source blob could not be read.');
});

test("fault: a block blob source fails with Azure's page-blob validation message", async () => {
  const spec = await existingDefinition('ver-blockblob');
  const blob = container.getBlockBlobClient('ver-blockblob.vhd');
  const content = Buffer.concat([Buffer.alloc(MIB), fixedVhdFooter(MIB)]);
  await blob.upload(content, content.length);
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.0.0',
    blobUrl: blob.url,
    tags: tagsFor('ver-blockblob', spec.name),
  });
  const state = await waitForState(spec.name, '1.0.0', ['Succeeded', 'Failed']);
  assert.equal(state.provisioningState, 'Failed');
  assert.match(state.errorMessage ?? '', /only a page blob can be the VHD source/);
});

test('fault: a request Azure refuses outright is a permanent GalleryError with its status and code', async () => {
  const spec = await existingDefinition('ver-refused');
  const blobUrl = await vhdPageBlob(container, 'ver-refused.vhd');
  await assert.rejects(
    gallery.startImageVersion({ definitionName: spec.name, versionName: 'latest', blobUrl, tags: {} }),
    (error: unknown) => {
      assert.ok(error instanceof GalleryError);
      assert.deepEqual([error.statusCode, error.code, error.transient], [400, 'InvalidParameter', false]);
      assert.match(error.message, /ver-refused\/latest/);
      return true;
    },
  );
});

test('getImageVersion is undefined for a version that does not exist', async () => {
  const spec = await existingDefinition('get-missing');
  assert.equal(await gallery.getImageVersion(spec.name, '9.9.9'), undefined);
});

test('getImageVersion is undefined when the definition does not exist either', async () => {
  assert.equal(await gallery.getImageVersion('no-such-definition', '1.0.0'), undefined);
});

test('deleteImageVersion removes the version and waits for it', async () => {
  const spec = await existingDefinition('ver-delete');
  const blobUrl = await vhdPageBlob(container, 'ver-delete.vhd');
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.0.0',
    blobUrl,
    tags: tagsFor('ver-delete', spec.name),
  });
  await waitForState(spec.name, '1.0.0', ['Succeeded']);
  await gallery.deleteImageVersion(spec.name, '1.0.0');
  assert.deepEqual(
    [arm.imageVersions.has(`${spec.name}/1.0.0`), await gallery.getImageVersion(spec.name, '1.0.0')],
    [false, undefined],
  );
});

test('deleteImageVersion of a missing version succeeds', async () => {
  const spec = await existingDefinition('del-missing');
  await gallery.deleteImageVersion(spec.name, '3.0.0');
  assert.equal(arm.imageVersions.has(`${spec.name}/3.0.0`), false);
});

test('listSeriesVersions finds the versions of every definition of the series and nothing else', async () => {
  const series = 'list-series';
  const gen1 = await existingDefinition(series);
  const gen2 = await existingDefinition(series, { generation: 'gen2' });
  const other = await existingDefinition('list-series-other');
  const starts: Array<[ImageDefinitionSpec, string]> = [
    [gen1, '1.1.0'],
    [gen1, '1.2.0'],
    [gen2, '1.2.0'],
    [other, '1.3.0'],
  ];
  for (const [spec, version] of starts) {
    const blobUrl = await vhdPageBlob(container, `${spec.name}-${version}.vhd`);
    await gallery.startImageVersion({
      definitionName: spec.name,
      versionName: version,
      blobUrl,
      tags: tagsFor(series, spec.name),
    });
  }
  const found = await gallery.listSeriesVersions(series, naming);
  assert.deepEqual(found.map((v) => `${v.definitionName}:${v.name}`).sort(), [
    'list-series-gen2:1.2.0',
    'list-series:1.1.0',
    'list-series:1.2.0',
  ]);
});

test('listSeriesVersions is empty when the series has no definition', async () => {
  assert.deepEqual(await gallery.listSeriesVersions('list-nothing', naming), []);
});

test('tokens are requested for the configured Resource Manager endpoint', () => {
  assert.ok(identity.requests.some((request) => request.resource === arm.url));
});

test('without a configured tenant the fake ARM takes the tenant of the managed identity tokens', () => {
  assert.equal(arm.tenantId, identity.tenantId);
});

function galleryAt(endpoint: string, extra: Partial<ConstructorParameters<typeof ComputeGallery>[0]> = {}) {
  return new ComputeGallery({
    subscriptionId,
    resourceGroup,
    galleryName,
    region,
    resourceManagerEndpoint: endpoint,
    storageAccountId,
    credential: new ManagedIdentityCredential(),
    pollIntervalMs: 20,
    ...extra,
  });
}

async function succeededVersion(
  series: string,
  versionName: string,
  tags?: Record<string, string>,
): Promise<{ spec: ImageDefinitionSpec; tags: Record<string, string> }> {
  const spec = await existingDefinition(series);
  const blobUrl = await vhdPageBlob(container, `${series}-${versionName}.vhd`);
  const versionTags = tags ?? tagsFor(series, spec.name);
  await gallery.startImageVersion({ definitionName: spec.name, versionName, blobUrl, tags: versionTags });
  await waitForState(spec.name, versionName, ['Succeeded']);
  return { spec, tags: versionTags };
}

function patchesOf(definitionName: string, versionName: string) {
  return arm.requests.filter(
    (request) =>
      request.method === 'PATCH' &&
      request.path.endsWith(`/images/${definitionName}/versions/${versionName}`),
  );
}

async function rejectsWithin(
  promise: Promise<unknown>,
  ms: number,
  check: (error: GalleryError) => void,
): Promise<void> {
  const started = Date.now();
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof GalleryError, `expected a GalleryError, got ${String(error)}`);
    check(error);
    return true;
  });
  assert.ok(Date.now() - started < ms, `took ${Date.now() - started} ms`);
}

test(
  'fault: every ARM call to an endpoint that never answers fails in time as a transient GalleryError',
  { timeout: 20_000 },
  async () => {
    const silent = await startHttpsServer(() => new Promise<void>(() => {}));
    try {
      const mute = galleryAt(silent.url, { requestTimeoutMs: 150 });
      const spec = imageDefinitionFor(stemcellManifest('timeout-series'), naming);
      const calls: Array<[string, () => Promise<unknown>, RegExp]> = [
        ['list', () => mute.listSeriesVersions('timeout-series', naming), /Listing the image versions/],
        [
          'get',
          () => mute.getImageVersion(spec.name, '1.0.0'),
          /Reading image version timeout-series\/1\.0\.0/,
        ],
        ['define', () => mute.ensureImageDefinition(spec), /Reading image definition timeout-series/],
        [
          'start',
          () =>
            mute.startImageVersion({
              definitionName: spec.name,
              versionName: '1.0.0',
              blobUrl: `${azurite.blobEndpoint}/vhds/never.vhd`,
              tags: {},
            }),
          /Starting image version timeout-series\/1\.0\.0/,
        ],
        ['delete', () => mute.deleteImageVersion(spec.name, '1.0.0'), /Deleting image version/],
        ['tag', () => mute.tagImageVersion(spec.name, '1.0.0', { a: 'b' }), /Tagging image version/],
      ];
      for (const [, call, operation] of calls) {
        await rejectsWithin(call(), 5_000, (error) => {
          assert.deepEqual([error.transient, error.code], [true, 'RequestTimeout']);
          assert.match(error.message, operation);
          assert.match(error.message, /within 150 ms/);
        });
      }
    } finally {
      await silent.stop();
    }
  },
);

test(
  'fault: a long-running operation that does not end in time is a transient GalleryError saying it still runs',
  { timeout: 20_000 },
  async () => {
    const slowArm = await local.startArm({ pollsUntilDone: 1_000_000 });
    try {
      const slow = galleryAt(slowArm.url, { operationTimeoutMs: 300 });
      const spec = imageDefinitionFor(stemcellManifest('slow-series'), naming);
      await rejectsWithin(slow.ensureImageDefinition(spec), 5_000, (error) => {
        assert.deepEqual([error.transient, error.code], [true, 'OperationTimeout']);
        assert.match(error.message, /Creating image definition slow-series .* is still running after 300 ms/);
      });
      await slow.startImageVersion({
        definitionName: spec.name,
        versionName: '1.0.0',
        blobUrl: `${azurite.blobEndpoint}/vhds/slow.vhd`,
        tags: {},
      });
      await rejectsWithin(slow.deleteImageVersion(spec.name, '1.0.0'), 5_000, (error) => {
        assert.deepEqual([error.transient, error.code], [true, 'OperationTimeout']);
        assert.match(
          error.message,
          /Deleting image version slow-series\/1\.0\.0 .* is still running after 300 ms/,
        );
      });
    } finally {
      await slowArm.stop();
    }
  },
);

test('tagImageVersion merges into the current tags with one tags-only PATCH and waits for it', async () => {
  const { spec, tags } = await succeededVersion('tag-merge', '1.0.0');
  const merged = await gallery.tagImageVersion(spec.name, '1.0.0', {
    mirror_notified: '2026-05-01T00:00:00Z',
  });
  assert.deepEqual(merged, { ...tags, mirror_notified: '2026-05-01T00:00:00Z' });
  assert.deepEqual(
    patchesOf(spec.name, '1.0.0').map((request) => request.body),
    [{ tags: merged }],
  );
  assert.equal(storedState(spec.name, '1.0.0'), 'Succeeded');
  assert.deepEqual(arm.imageVersions.get(`${spec.name}/1.0.0`)?.['tags'], merged);
  assert.deepEqual((await gallery.getImageVersion(spec.name, '1.0.0'))?.tags, merged);
});

test('tagImageVersion sends nothing when every tag already has its value', async () => {
  const { spec, tags } = await succeededVersion('tag-same', '1.0.0');
  assert.deepEqual(await gallery.tagImageVersion(spec.name, '1.0.0', { name: tags['name'] ?? '' }), tags);
  assert.equal(patchesOf(spec.name, '1.0.0').length, 0);
});

test("tagImageVersion adds the mirror's reference to a version the BOSH CPI created", async () => {
  const cpiTags = { ...tagsFor('tag-cpi', 'tag-cpi'), stemcell_references: 'bosh-stemcell-3f1c' };
  const { spec } = await succeededVersion('tag-cpi', '1.0.0', cpiTags);
  const current = (await gallery.getImageVersion(spec.name, '1.0.0'))?.tags ?? {};
  assert.equal(isAdoptableByCpi(current), true);
  const references = stemcellReferencesWith(current);
  assert.equal(references, `bosh-stemcell-3f1c,${MIRROR_STEMCELL_REFERENCE}`);
  const merged = await gallery.tagImageVersion(spec.name, '1.0.0', { stemcell_references: references ?? '' });
  assert.deepEqual(merged, { ...cpiTags, stemcell_references: references });
  assert.equal(stemcellReferencesWith(merged), undefined);
});

test('tagImageVersion refuses a merge beyond 50 tags or a value beyond 256 characters, sending nothing', async () => {
  const { spec, tags } = await succeededVersion('tag-limits', '1.0.0');
  const extra: Record<string, string> = {};
  for (let i = 0; Object.keys(tags).length + Object.keys(extra).length <= 50; i++) extra[`extra_${i}`] = 'x';
  await assert.rejects(gallery.tagImageVersion(spec.name, '1.0.0', extra), (error: unknown) => {
    assert.ok(error instanceof GalleryError);
    assert.deepEqual([error.transient, error.code], [false, 'TooManyTags']);
    assert.match(error.message, /merge would make 51; Azure allows 50/);
    return true;
  });
  await assert.rejects(
    gallery.tagImageVersion(spec.name, '1.0.0', { mirror_notified: 'v'.repeat(257) }),
    (error: unknown) => {
      assert.ok(error instanceof GalleryError);
      assert.equal(error.transient, false);
      assert.match(error.message, /mirror_notified has a value of 257 characters \(at most 256\)/);
      return true;
    },
  );
  assert.equal(patchesOf(spec.name, '1.0.0').length, 0);
});

test('fault: tagImageVersion of a version Azure is still creating is transient; of a missing one permanent 404', async () => {
  const spec = await existingDefinition('tag-busy');
  const blobUrl = await vhdPageBlob(container, 'tag-busy.vhd');
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.0.0',
    blobUrl,
    tags: tagsFor('tag-busy', spec.name),
  });
  await assert.rejects(gallery.tagImageVersion(spec.name, '1.0.0', { a: 'b' }), (error: unknown) => {
    assert.ok(error instanceof GalleryError);
    assert.deepEqual([error.transient, error.code], [true, 'VersionBusy']);
    assert.match(error.message, /is Creating/);
    return true;
  });
  await assert.rejects(gallery.tagImageVersion(spec.name, '9.0.0', { a: 'b' }), (error: unknown) => {
    assert.ok(error instanceof GalleryError);
    assert.deepEqual([error.transient, error.statusCode], [false, 404]);
    return true;
  });
});

test('getImageVersion and listSeriesVersions report Deleting and Migrating as Azure says them', async () => {
  const { spec } = await succeededVersion('state-passthrough', '1.0.0');
  const properties = arm.imageVersions.get(`${spec.name}/1.0.0`)?.['properties'] as Record<string, unknown>;
  for (const state of ['Deleting', 'Migrating']) {
    properties['provisioningState'] = state;
    assert.equal((await gallery.getImageVersion(spec.name, '1.0.0'))?.provisioningState, state);
    const listed = await gallery.listSeriesVersions('state-passthrough', naming);
    assert.deepEqual(
      listed.map((version) => version.provisioningState),
      [state],
    );
  }
  properties['provisioningState'] = 'Succeeded';
});

// ---- waiting with the roles infra grants, whatever status links ARM sends ----

test('fault: with the gallery role only, creating, re-tagging and deleting never read an operation status URL', async () => {
  const before = arm.requests.length;
  const { spec } = await succeededVersion('least-privilege', '1.0.0');
  await gallery.tagImageVersion(spec.name, '1.0.0', { mirror_notified: 'now' });
  await gallery.deleteImageVersion(spec.name, '1.0.0');

  const requests = arm.requests.slice(before);
  assert.deepEqual(
    requests.filter((request) => request.path.toLowerCase().includes('/capsoperations/')),
    [],
  );
  assert.ok(
    requests.some((request) => request.method === 'PUT' && request.path.endsWith(`/images/${spec.name}`)),
  );
  assert.equal(await gallery.getImageVersion(spec.name, '1.0.0'), undefined);
});

for (const statusLinks of ['both', 'location', 'azure-async-operation'] as const) {
  test(`status links '${statusLinks}': each wait reads the resource every Retry-After, and ends`, async () => {
    const variant = await local.startArm({ statusLinks, retryAfterSeconds: 3 });
    const waits: number[] = [];
    try {
      const client = galleryAt(variant.url, {
        sleep: (ms) => {
          waits.push(ms);
          return Promise.resolve();
        },
      });
      const spec = imageDefinitionFor(stemcellManifest(`links-${statusLinks}`), naming);
      assert.equal(await client.ensureImageDefinition(spec), 'created');
      const blobUrl = await vhdPageBlob(container, `links-${statusLinks}.vhd`);
      await client.startImageVersion({ definitionName: spec.name, versionName: '1.0.0', blobUrl, tags: {} });
      for (let read = 0; read < 10; read++) {
        if ((await client.getImageVersion(spec.name, '1.0.0'))?.provisioningState === 'Succeeded') break;
      }
      await client.tagImageVersion(spec.name, '1.0.0', { mirror_notified: 'now' });
      await client.deleteImageVersion(spec.name, '1.0.0');

      assert.equal(await client.getImageVersion(spec.name, '1.0.0'), undefined);
      assert.ok(waits.length >= 3, `expected waits, got ${waits.length}`);
      assert.deepEqual(new Set(waits), new Set([3000]));
    } finally {
      await variant.stop();
    }
  });
}

test('without Retry-After (or with 0) a wait reads the resource every pollIntervalMs', async () => {
  const waits: number[] = [];
  const client = galleryAt(arm.url, {
    pollIntervalMs: 40,
    sleep: (ms) => {
      waits.push(ms);
      return Promise.resolve();
    },
  });

  await client.ensureImageDefinition(imageDefinitionFor(stemcellManifest('no-retry-after'), naming));

  assert.ok(waits.length > 0);
  assert.deepEqual(new Set(waits), new Set([40]));
});

test('fault: a version created by someone else between the look and the PUT is never overwritten (412, VersionExists)', async () => {
  const spec = await existingDefinition('if-none-match');
  const blobUrl = await vhdPageBlob(container, 'if-none-match.vhd');
  const director = { ...tagsFor('if-none-match', spec.name), stemcell_references: 'bosh-director-1' };
  await gallery.startImageVersion({
    definitionName: spec.name,
    versionName: '1.0.0',
    blobUrl,
    tags: director,
  });

  await rejectsWithin(
    gallery.startImageVersion({
      definitionName: spec.name,
      versionName: '1.0.0',
      blobUrl,
      tags: tagsFor('if-none-match', spec.name),
    }),
    5_000,
    (error) => {
      assert.deepEqual([error.code, error.statusCode, error.transient], ['VersionExists', 412, false]);
    },
  );
  assert.deepEqual(arm.imageVersions.get(`${spec.name}/1.0.0`)?.['tags'], director);
});

test('fault: ARM answers 429 and then 503 to the first try of every call: each call is retried and the whole cycle succeeds', async () => {
  const series = 'throttled';
  const spec = imageDefinitionFor(stemcellManifest(series), naming);
  const version = `/images/${spec.name}/versions/1.0.0`;
  const calls: Array<[string, string]> = [
    ['GET', '/images'],
    ['GET', `/images/${spec.name}`],
    ['PUT', `/images/${spec.name}`],
    ['PUT', version],
    ['GET', version],
    ['PATCH', version],
    ['DELETE', version],
    ['GET', `/images/${spec.name}/versions`],
  ];
  for (const [method, path] of calls) {
    arm.answerNext(method, path, { status: 429, code: 'TooManyRequests' });
    arm.answerNext(method, path, { status: 503, code: 'ServiceUnavailable' });
  }

  await gallery.listSeriesVersions(series, naming);
  assert.equal(await gallery.ensureImageDefinition(spec), 'created');
  const blobUrl = await vhdPageBlob(container, 'throttled.vhd');
  await gallery.startImageVersion({ definitionName: spec.name, versionName: '1.0.0', blobUrl, tags: {} });
  await waitForState(spec.name, '1.0.0', ['Succeeded']);
  await gallery.listSeriesVersions(series, naming);
  await gallery.tagImageVersion(spec.name, '1.0.0', { mirror_notified: 'now' });
  await gallery.deleteImageVersion(spec.name, '1.0.0');

  assert.equal(arm.pendingAnswers(), 0);
  assert.equal(await gallery.getImageVersion(spec.name, '1.0.0'), undefined);
});

test('fault: ARM keeps answering 503 to a call: a transient GalleryError once the retries are spent', async () => {
  const spec = imageDefinitionFor(stemcellManifest('unavailable'), naming);
  arm.answerNext('GET', `/images/${spec.name}`, { status: 503, code: 'ServiceUnavailable', times: 10 });
  try {
    await rejectsWithin(gallery.ensureImageDefinition(spec), 10_000, (error) => {
      assert.equal(error.transient, true);
      assert.equal(error.statusCode, 503);
      assert.match(error.message, /ServiceUnavailable/);
    });
  } finally {
    arm.clearAnswers();
  }
});

test('fault: without listKeys and write on the VHD account, starting a version is a permanent 403 naming the role to check', async () => {
  const spec = await existingDefinition('no-vhd-source');
  const blobUrl = await vhdPageBlob(container, 'no-vhd-source.vhd');
  const index = arm.roleAssignments.findIndex((assignment) => assignment.role.id === 'vhdSourceRole');
  const [vhdSource] = arm.roleAssignments.splice(index, 1);
  try {
    await rejectsWithin(
      gallery.startImageVersion({ definitionName: spec.name, versionName: '1.0.0', blobUrl, tags: {} }),
      5_000,
      (error) => {
        assert.deepEqual(
          [error.statusCode, error.code, error.transient],
          [403, 'LinkedAuthorizationFailed', false],
        );
        assert.match(error.message, /listKeys\/action/);
        assert.match(error.message, /role assignments of the managed identity/);
      },
    );
    assert.equal(arm.imageVersions.has(`${spec.name}/1.0.0`), false);
  } finally {
    if (vhdSource !== undefined) arm.roleAssignments.push(vhdSource);
  }
});
