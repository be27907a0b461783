import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import { ComputeManagementClient } from '@azure/arm-compute';
import type { GalleryImage, GalleryImageVersion } from '@azure/arm-compute';
import { ManagedIdentityCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';
import type { ContainerClient } from '@azure/storage-blob';
import { startAzurite } from '../support/azurite.js';
import type { AzuriteBlob } from '../support/azurite.js';
import { Authorization, OWNER, roleById } from '../support/fake-arm/authorization.js';
import type { RoleAssignment } from '../support/fake-arm/authorization.js';
import { infraRoleAssignments } from '../support/fake-arm/infra-roles.js';
import { startFakeArm } from '../support/fake-arm/index.js';
import type { FakeArm, FakeArmOptions } from '../support/fake-arm/index.js';
import { startIdentityEndpoint } from '../support/identity.js';
import type { IdentityEndpoint } from '../support/identity.js';
import { ensureTestCertificate } from '../support/tls.js';
import type { TestCertificate } from '../support/tls.js';

const subscriptionId = '00000000-1111-2222-3333-444444444444';
const resourceGroup = 'rg-stemcells';
const galleryName = 'bosh_stemcells';
const location = 'westeurope';
const mebibyte = 1024 * 1024;
// Polls answered quickly: core-lro ignores `Retry-After: 0` and would otherwise wait 2 s between polls.
const fast = { updateIntervalInMs: 5 };

let azurite: AzuriteBlob;
let identity: IdentityEndpoint;
let arm: FakeArm;
let client: ComputeManagementClient;
let container: ContainerClient;
let storageAccountId: string;

before(async () => {
  azurite = await startAzurite();
  identity = await startIdentityEndpoint();
  Object.assign(process.env, identity.env());
  arm = await startFakeArm({
    subscriptionId,
    resourceGroup,
    galleryName,
    location,
    storage: azurite,
    pollsUntilDone: 2,
    listPageSize: 2,
    tenantId: identity.tenantId,
    appPrincipalId: identity.principalId,
  });
  // These tests drive ARM's contracts through the SDK's own pollers, which read operation status: ARM allows that
  // only with a role at the resource group, which the app's identity never holds (see 'authorization' below).
  arm.roleAssignments.push(resourceGroupPublisher());
  client = new ComputeManagementClient(new ManagedIdentityCredential(), subscriptionId, {
    endpoint: arm.url,
    credentials: { scopes: [`${arm.url}/.default`] },
  });
  container = new BlobServiceClient(azurite.blobEndpoint, azurite.sharedKeyCredential).getContainerClient(
    'stemcells',
  );
  await container.create();
  storageAccountId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Storage/storageAccounts/${azurite.accountName}`;
});

after(async () => {
  await arm?.stop();
  await identity?.stop();
  await azurite?.stop();
});

// ---- fixtures ----

const COMPUTE_GALLERY_ARTIFACTS_PUBLISHER = '85a2d0d9-2eba-4c9c-b355-11c2cc0788ab';
const resourceGroupId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}`;

function resourceGroupPublisher(): RoleAssignment {
  return {
    principalId: identity.principalId,
    role: roleById(COMPUTE_GALLERY_ARTIFACTS_PUBLISHER),
    scope: resourceGroupId,
  };
}

/** Runs `body` with only the roles infra grants the app's identity, then restores this file's grant. */
async function withInfraRolesOnly(body: () => Promise<void>): Promise<void> {
  const extra = arm.roleAssignments.findIndex((assignment) => assignment.scope === resourceGroupId);
  const [removed] = arm.roleAssignments.splice(extra, 1);
  try {
    await body();
  } finally {
    if (removed !== undefined) arm.roleAssignments.push(removed);
  }
}

interface VhdShape {
  virtualSize: number;
  cookie?: string;
  diskType?: number;
}

/** A fixed-VHD footer as the VHD specification lays it out, checksum included. */
function vhdFooter({ virtualSize, cookie = 'conectix', diskType = 2 }: VhdShape): Buffer {
  const footer = Buffer.alloc(512);
  footer.write(cookie, 0, 8, 'latin1');
  footer.writeUInt32BE(2, 8); // features: reserved bit
  footer.writeUInt32BE(0x00010000, 12); // file format version
  footer.writeBigUInt64BE(0xffffffffffffffffn, 16); // data offset: none for a fixed disk
  footer.writeUInt32BE(Math.floor(Date.now() / 1000 - 946684800), 24); // seconds since 2000-01-01
  footer.write('basm', 28, 4, 'latin1');
  footer.writeUInt32BE(0x00010000, 32);
  footer.write('Wi2k', 36, 4, 'latin1');
  footer.writeBigUInt64BE(BigInt(virtualSize), 40);
  footer.writeBigUInt64BE(BigInt(virtualSize), 48);
  footer.writeUInt16BE(Math.max(1, Math.floor(virtualSize / 512 / 16 / 63)), 56); // cylinders
  footer.writeUInt8(16, 58); // heads
  footer.writeUInt8(63, 59); // sectors per track
  footer.writeUInt32BE(diskType, 60);
  randomBytes(16).copy(footer, 68); // unique id
  let sum = 0;
  for (const byte of footer) sum += byte;
  footer.writeUInt32BE(~sum >>> 0, 64);
  return footer;
}

/** Uploads a sparse VHD as a page blob: one sector of data at the start, zeros, then the footer. */
async function uploadVhdPageBlob(shape: VhdShape): Promise<string> {
  const blob = container.getPageBlobClient(`${randomUUID()}.vhd`);
  await blob.create(shape.virtualSize + 512);
  await blob.uploadPages(Buffer.alloc(512, 0xeb), 0, 512);
  await blob.uploadPages(vhdFooter(shape), shape.virtualSize, 512);
  return blob.url;
}

async function uploadVhdBlockBlob(shape: VhdShape): Promise<string> {
  const blob = container.getBlockBlobClient(`${randomUUID()}.vhd`);
  await blob.uploadData(Buffer.concat([Buffer.alloc(shape.virtualSize), vhdFooter(shape)]));
  return blob.url;
}

function definitionBody(name: string, overrides: Partial<GalleryImage> = {}): GalleryImage {
  return {
    location,
    osType: 'Linux',
    osState: 'Generalized',
    hyperVGeneration: 'V1',
    architecture: 'x64',
    identifier: { publisher: 'bosh', offer: name, sku: 'gen1' },
    ...overrides,
  };
}

function versionBody(uri: string, tags: Record<string, string> = {}): GalleryImageVersion {
  return {
    location,
    tags,
    storageProfile: { osDiskImage: { source: { storageAccountId, uri } } },
    publishingProfile: {
      targetRegions: [{ name: location, regionalReplicaCount: 1, storageAccountType: 'Standard_LRS' }],
    },
  };
}

/** The ARM JSON of a definition, for requests sent without the SDK. */
function definitionJson(name: string): Record<string, unknown> {
  const { location: region, ...properties } = definitionBody(name);
  return { location: region, properties };
}

async function createDefinition(name: string, overrides: Partial<GalleryImage> = {}): Promise<GalleryImage> {
  return client.galleryImages.createOrUpdate(
    resourceGroup,
    galleryName,
    name,
    definitionBody(name, overrides),
    fast,
  );
}

function createVersion(definition: string, version: string, body: GalleryImageVersion) {
  return client.galleryImageVersions.createOrUpdate(
    resourceGroup,
    galleryName,
    definition,
    version,
    body,
    fast,
  );
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Asserts an SDK RestError's status, ARM error code and message. */
function armError(statusCode: number, code: string, message: RegExp) {
  return (error: unknown): boolean => {
    const details = error as { statusCode?: number; code?: string; message?: string };
    assert.equal(details.statusCode, statusCode);
    assert.equal(details.code, code);
    assert.match(details.message ?? '', message);
    return true;
  };
}

function unsignedJwt(claims: Record<string, unknown>): string {
  const encode = (part: object) => Buffer.from(JSON.stringify(part)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims)}.`;
}

/** A token ARM would take (audience, issuer of the subscription's tenant, valid now), with `overrides` applied. */
function armToken(overrides: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    aud: arm.url,
    iss: `https://sts.windows.net/${identity.tenantId}/`,
    oid: identity.principalId,
    nbf: now - 300,
    exp: now + 600,
    ...overrides,
  };
  for (const [name, value] of Object.entries(overrides)) if (value === undefined) delete claims[name];
  return unsignedJwt(claims);
}

function errorCode(body: unknown): string | undefined {
  return (body as { error?: { code?: string } }).error?.code;
}

let certificate: TestCertificate | undefined;

async function rawRequest(
  path: string,
  headers: Record<string, string>,
  { method = 'GET', body, at = arm }: { method?: string; body?: unknown; at?: FakeArm } = {},
): Promise<{ status: number; body: unknown; headers: Record<string, string | string[] | undefined> }> {
  const { ca } = (certificate ??= ensureTestCertificate());
  const target = path.startsWith('https://') ? path : `${at.url}${path}`;
  return new Promise((resolve, reject) => {
    const request = https.request(target, { method, headers, ca }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: response.statusCode ?? 0,
          body: text === '' ? undefined : JSON.parse(text),
          headers: response.headers,
        });
      });
    });
    request.on('error', reject);
    request.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const galleryUrlPath = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/galleries/${galleryName}`;

// ---- image definitions ----

describe('image definitions', () => {
  test('a definition created through the SDK reads back with its properties and tags', async () => {
    const name = uniqueName('bosh-azure-hyperv-ubuntu-jammy-go_agent');
    await createDefinition(name, { tags: { series: 'jammy' } });

    const image = await client.galleryImages.get(resourceGroup, galleryName, name);

    assert.equal(image.name, name);
    assert.equal(image.id, `${galleryUrlPath}/images/${name}`);
    assert.equal(image.provisioningState, 'Succeeded');
    assert.deepEqual(image.identifier, { publisher: 'bosh', offer: name, sku: 'gen1' });
    assert.equal(image.hyperVGeneration, 'V1');
    assert.deepEqual(image.tags, { series: 'jammy' });
  });

  test('changing the hyperVGeneration of an existing definition is refused', async () => {
    const name = uniqueName('gen-change');
    await createDefinition(name);

    await assert.rejects(
      createDefinition(name, { hyperVGeneration: 'V2' }),
      armError(409, 'PropertyChangeNotAllowed', /hyperVGeneration/),
    );
    const stored = await client.galleryImages.get(resourceGroup, galleryName, name);
    assert.equal(stored.hyperVGeneration, 'V1');
  });

  test('Trusted Launch and confidential security types are refused on a generation 1 definition', async () => {
    for (const value of ['TrustedLaunch', 'TrustedLaunchSupported', 'ConfidentialVMSupported']) {
      await assert.rejects(
        createDefinition(uniqueName('gen1-tl'), { features: [{ name: 'SecurityType', value }] }),
        armError(400, 'InvalidParameter', new RegExp(`SecurityType' with value '${value}'.*'V1'`)),
      );
    }
  });

  test('an NVMe disk controller is refused on a generation 1 definition', async () => {
    await assert.rejects(
      createDefinition(uniqueName('gen1-nvme'), {
        features: [{ name: 'DiskControllerTypes', value: 'SCSI, NVMe' }],
      }),
      armError(400, 'InvalidParameter', /DiskControllerTypes.*NVMe.*'V1'/),
    );
  });

  test('a generation 1 definition takes the features no rule ties to generation 2', async () => {
    const name = uniqueName('gen1-features');
    const features = [
      { name: 'DiskControllerTypes', value: 'SCSI' },
      { name: 'IsAcceleratedNetworkSupported', value: 'True' },
      { name: 'IsHibernateSupported', value: 'False' },
      { name: 'SecurityType', value: 'Standard' },
    ];
    await createDefinition(name, { features });

    const image = await client.galleryImages.get(resourceGroup, galleryName, name);

    assert.deepEqual(
      image.features?.map(({ name: feature, value }) => ({ name: feature, value })),
      features,
    );
  });

  test('changing features needs allowUpdateImage, and then takes effect', async () => {
    const name = uniqueName('features-update');
    const gen2 = {
      hyperVGeneration: 'V2',
      identifier: { publisher: 'bosh', offer: name, sku: 'gen2' },
    } as const;
    await createDefinition(name, {
      ...gen2,
      features: [{ name: 'SecurityType', value: 'TrustedLaunchSupported' }],
    });
    const wanted = [{ name: 'SecurityType', value: 'TrustedLaunchAndConfidentialVmSupported' }];

    await assert.rejects(
      createDefinition(name, { ...gen2, features: wanted }),
      armError(409, 'PropertyChangeNotAllowed', /features.*allowUpdateImage/),
    );
    await createDefinition(name, { ...gen2, features: wanted, allowUpdateImage: true });

    const image = await client.galleryImages.get(resourceGroup, galleryName, name);
    assert.deepEqual(
      image.features?.map(({ name: feature, value }) => ({ name: feature, value })),
      wanted,
    );
    assert.equal(image.allowUpdateImage, undefined);
  });

  test('an api-version before 2024-03-03 cannot change features even with allowUpdateImage', async () => {
    const name = uniqueName('features-old-api');
    await createDefinition(name, { features: [{ name: 'IsAcceleratedNetworkSupported', value: 'False' }] });
    const body = {
      location,
      properties: {
        osType: 'Linux',
        osState: 'Generalized',
        hyperVGeneration: 'V1',
        identifier: { publisher: 'bosh', offer: name, sku: 'gen1' },
        features: [{ name: 'IsAcceleratedNetworkSupported', value: 'True' }],
        allowUpdateImage: true,
      },
    };

    const response = await rawRequest(
      `${galleryUrlPath}/images/${name}?api-version=2023-07-03`,
      { authorization: `Bearer ${armToken()}`, 'content-type': 'application/json' },
      { method: 'PUT', body },
    );

    assert.equal(response.status, 409);
    assert.equal(errorCode(response.body), 'PropertyChangeNotAllowed');
  });

  test('a generation 2 definition keeps its features in the order sent', async () => {
    const name = uniqueName('gen2');
    const features = [
      { name: 'SecurityType', value: 'TrustedLaunchSupported' },
      { name: 'IsAcceleratedNetworkSupported', value: 'True' },
    ];
    await createDefinition(name, {
      hyperVGeneration: 'V2',
      identifier: { publisher: 'bosh', offer: name, sku: 'gen2' },
      features,
    });

    const image = await client.galleryImages.get(resourceGroup, galleryName, name);

    assert.deepEqual(
      image.features?.map(({ name: feature, value }) => ({ name: feature, value })),
      features,
    );
  });

  test('a definition without an identifier sku is refused naming the property', async () => {
    const name = uniqueName('no-sku');
    await assert.rejects(
      createDefinition(name, { identifier: { publisher: 'bosh', offer: name, sku: '' } }),
      armError(400, 'InvalidParameter', /galleryImage\.properties\.identifier\.sku/),
    );
  });

  test('resource group and subscription are matched case-insensitively', async () => {
    const gallery = await client.galleries.get(resourceGroup.toUpperCase(), galleryName);

    assert.equal(gallery.name, galleryName);
  });

  test('an unknown gallery is ResourceNotFound', async () => {
    await assert.rejects(
      client.galleries.get(resourceGroup, 'other_gallery'),
      armError(404, 'ResourceNotFound', /other_gallery/),
    );
  });
});

// ---- image versions ----

describe('image versions', () => {
  let definition: string;

  before(async () => {
    definition = uniqueName('versions');
    await createDefinition(definition);
  });

  test('a version from a fixed VHD page blob ends Succeeded after polling the async operation', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const before = arm.requests.length;

    const version = await createVersion(definition, '1.1.0', versionBody(uri, { stemcell_name: 'jammy' }));

    assert.equal(version.provisioningState, 'Succeeded');
    assert.equal(version.storageProfile?.osDiskImage?.source?.uri, uri);
    assert.deepEqual(version.tags, { stemcell_name: 'jammy' });
    const polls = arm.requests.slice(before).filter((request) => request.path.includes('/capsOperations/'));
    assert.equal(polls.length, 3);
  });

  test('a version reads Creating while its operation is in progress', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const poller = createVersion(definition, '1.2.0', versionBody(uri));
    await poller.submitted();

    const during = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '1.2.0');
    await poller;

    assert.equal(during.provisioningState, 'Creating');
  });

  test('a version whose blob is a block blob ends Failed', async () => {
    const uri = await uploadVhdBlockBlob({ virtualSize: mebibyte });

    await assert.rejects(createVersion(definition, '2.1.0', versionBody(uri)), /BlockBlob.*only a page blob/);
    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '2.1.0');
    assert.equal(version.provisioningState, 'Failed');
  });

  test('a version whose blob does not exist ends Failed', async () => {
    const uri = `${container.url}/missing.vhd`;

    await assert.rejects(
      createVersion(definition, '2.2.0', versionBody(uri)),
      /missing\.vhd' does not exist/,
    );
  });

  test('a version whose virtual size is not a whole number of MiB ends Failed', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte + 512 });

    await assert.rejects(
      createVersion(definition, '2.3.0', versionBody(uri)),
      /unsupported virtual size of 1049088 bytes\. The size must be a whole number \(in MBs\)/,
    );
  });

  test('a version whose footer cookie is not conectix ends Failed', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte, cookie: 'notavhd!' });

    await assert.rejects(createVersion(definition, '2.4.0', versionBody(uri)), /cookie value 'conectix'/);
  });

  test('a version from a dynamic VHD ends Failed', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte, diskType: 3 });

    await assert.rejects(
      createVersion(definition, '2.5.0', versionBody(uri)),
      /type 'Dynamic'\. Only fixed VHDs/,
    );
  });

  test('failNextVersion makes the next creation of that version fail with the given error', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    arm.failNextVersion(definition, '2.6.0', {
      code: 'ReplicationFailed',
      message: 'replication to westeurope failed',
    });

    await assert.rejects(
      createVersion(definition, '2.6.0', versionBody(uri)),
      /ReplicationFailed\. replication to westeurope failed/,
    );
    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '2.6.0');
    assert.equal(version.provisioningState, 'Failed');
  });

  test('a version whose source has only an id is refused', async () => {
    const body: GalleryImageVersion = {
      location,
      storageProfile: {
        osDiskImage: {
          source: {
            id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/images/x`,
          },
        },
      },
    };

    await assert.rejects(
      createVersion(definition, '3.1.0', body),
      armError(400, 'InvalidParameter', /source\.uri/),
    );
    assert.equal(arm.imageVersions.has(`${definition}/3.1.0`), false);
  });

  test('a version whose storage account is not the configured one is refused', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const body: GalleryImageVersion = {
      location,
      storageProfile: {
        osDiskImage: {
          source: { storageAccountId: storageAccountId.replace(/devstoreaccount1$/, 'other'), uri },
        },
      },
    };

    await assert.rejects(
      createVersion(definition, '3.2.0', body),
      armError(400, 'InvalidParameter', /storage account .*other/),
    );
  });

  test('a version name that is not Major.Minor.Patch is refused', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });

    await assert.rejects(
      createVersion(definition, '1.1364', versionBody(uri)),
      armError(400, 'InvalidParameter', /Major\(int32\)/),
    );
  });

  test('changing the source of an existing version is refused', async () => {
    const first = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const second = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '4.1.0', versionBody(first));

    await assert.rejects(
      createVersion(definition, '4.1.0', versionBody(second)),
      armError(409, 'PropertyChangeNotAllowed', /source\.uri/),
    );
  });

  test('a tags-only update of an existing version succeeds and keeps the tags exactly', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '4.2.0', versionBody(uri, { a: '1' }));

    const updated = await createVersion(
      definition,
      '4.2.0',
      versionBody(uri, { a: '1', stemcell_references: 'x,y' }),
    );

    assert.equal(updated.provisioningState, 'Succeeded');
    assert.deepEqual(updated.tags, { a: '1', stemcell_references: 'x,y' });
  });

  test('a PATCH of the tags of a version replaces its tags and keeps its source', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '4.3.0', versionBody(uri, { a: '1' }));

    const updated = await client.galleryImageVersions.update(
      resourceGroup,
      galleryName,
      definition,
      '4.3.0',
      { tags: { b: '2' } },
      fast,
    );

    assert.deepEqual(updated.tags, { b: '2' });
    assert.equal(updated.storageProfile?.osDiskImage?.source?.uri, uri);
  });

  test('deleting a version removes it once the operation completes', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '5.1.0', versionBody(uri));

    await client.galleryImageVersions.delete(resourceGroup, galleryName, definition, '5.1.0', fast);

    await assert.rejects(
      client.galleryImageVersions.get(resourceGroup, galleryName, definition, '5.1.0'),
      armError(404, 'ResourceNotFound', /versions\/5\.1\.0/),
    );
  });

  test('expanding ReplicationStatus reports the state of each target region', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '6.1.0', versionBody(uri));

    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '6.1.0', {
      expand: 'ReplicationStatus',
    });

    assert.equal(version.replicationStatus?.aggregatedState, 'Completed');
    assert.deepEqual(
      version.replicationStatus?.summary?.map((region) => [region.region, region.state]),
      [[location, 'Completed']],
    );
  });

  test('tags within ARM limits are kept: 50 tags, a 512-character name, a 256-character value', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const tags: Record<string, string> = { ['n'.repeat(512)]: 'v'.repeat(256) };
    for (let i = 1; i < 50; i++) tags[`tag_${i}`] = 'x';

    const version = await createVersion(definition, '7.1.0', versionBody(uri, tags));

    assert.deepEqual(version.tags, tags);
  });

  test('tags beyond ARM limits are refused with ARM codes before anything is stored', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const tooMany: Record<string, string> = {};
    for (let i = 0; i < 51; i++) tooMany[`tag_${i}`] = 'x';
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [tooMany, 'InvalidTags', /Requested tag count - '51'\. Maximum number of tags allowed - '50'/],
      [{ ['n'.repeat(513)]: 'x' }, 'InvalidTagName', /Maximum allowed length for tag name - '512'/],
      [{ name: 'v'.repeat(257) }, 'InvalidTagValueLength', /Maximum allowed length for tag value - '256'/],
      [{ '': 'x' }, 'InvalidTagName', /non-empty/],
    ];
    for (const name of ['a/b', 'a<b', 'a>b', 'a%b', 'a&b', 'a\\b', 'a?b', 'a\u0001b']) {
      cases.push([{ [name]: 'x' }, 'InvalidTagNameCharacters', /reserved characters/]);
    }

    for (const [tags, code, message] of cases) {
      await assert.rejects(
        createVersion(definition, '7.2.0', versionBody(uri, tags)),
        armError(400, code, message),
      );
    }
    assert.equal(arm.imageVersions.has(`${definition}/7.2.0`), false);
  });

  test('a PATCH whose tags break ARM limits is refused and leaves the tags', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '7.3.0', versionBody(uri, { a: '1' }));

    await assert.rejects(
      client.galleryImageVersions.update(
        resourceGroup,
        galleryName,
        definition,
        '7.3.0',
        { tags: { 'x?y': '1' } },
        fast,
      ),
      armError(400, 'InvalidTagNameCharacters', /'x\?y'/),
    );
    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '7.3.0');
    assert.deepEqual(version.tags, { a: '1' });
  });

  test('a definition with a reserved character in a tag name is refused', async () => {
    await assert.rejects(
      createDefinition(uniqueName('tags'), { tags: { 'k8s.io/role': 'x' } }),
      armError(400, 'InvalidTagNameCharacters', /k8s\.io\/role/),
    );
  });

  test('a failed version carries the reason in its replication status', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    arm.failNextVersion(definition, '6.2.0', {
      code: 'ReplicationFailed',
      message: 'Failed with internal server error.',
    });
    await assert.rejects(createVersion(definition, '6.2.0', versionBody(uri)), /internal server error/);

    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '6.2.0', {
      expand: 'ReplicationStatus',
    });

    assert.equal(version.provisioningState, 'Failed');
    assert.equal(version.replicationStatus?.aggregatedState, 'Failed');
    assert.deepEqual(
      version.replicationStatus?.summary?.map((region) => [region.region, region.state, region.details]),
      [[location, 'Failed', 'Failed with internal server error.']],
    );
  });

  test('recreating a failed version clears the old reason', async () => {
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    arm.failNextVersion(definition, '6.3.0', { code: 'ReplicationFailed', message: 'first attempt failed' });
    await assert.rejects(createVersion(definition, '6.3.0', versionBody(uri)), /first attempt failed/);

    await createVersion(definition, '6.3.0', versionBody(uri));
    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '6.3.0', {
      expand: 'ReplicationStatus',
    });

    assert.equal(version.replicationStatus?.aggregatedState, 'Completed');
    assert.deepEqual(
      version.replicationStatus?.summary?.map((region) => region.details),
      [''],
    );
  });

  test('a version under a missing definition is ParentResourceNotFound', async () => {
    await assert.rejects(
      client.galleryImageVersions.get(resourceGroup, galleryName, 'no-such-definition', '1.0.0'),
      armError(404, 'ParentResourceNotFound', /no-such-definition/),
    );
  });

  test('a missing version of an existing definition is ResourceNotFound', async () => {
    await assert.rejects(
      client.galleryImageVersions.get(resourceGroup, galleryName, definition, '9.9.9'),
      armError(404, 'ResourceNotFound', /9\.9\.9/),
    );
  });
});

describe('listing', () => {
  test('listing versions follows nextLink across pages', async () => {
    const definition = uniqueName('listing');
    await createDefinition(definition);
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    for (const version of ['1.0.0', '1.0.1', '1.0.2'])
      await createVersion(definition, version, versionBody(uri));
    const before = arm.requests.length;

    const names: string[] = [];
    for await (const version of client.galleryImageVersions.listByGalleryImage(
      resourceGroup,
      galleryName,
      definition,
    )) {
      names.push(version.name ?? '');
    }

    assert.deepEqual(names, ['1.0.0', '1.0.1', '1.0.2']);
    assert.equal(
      arm.requests.slice(before).filter((request) => request.path.endsWith('/versions')).length,
      2,
    );
  });
});

// ---- the ARM front door ----

describe('authentication and api-version', () => {
  const path = `${galleryUrlPath}?api-version=2025-12-03`;

  test('a request without a bearer token gets 401 AuthenticationFailed', async () => {
    const response = await rawRequest(path, {});

    assert.equal(response.status, 401);
    assert.equal((response.body as { error: { code: string } }).error.code, 'AuthenticationFailed');
  });

  test('a canned throttle answers only an authenticated caller: no token is 401 and the 429 stays pending', async () => {
    arm.answerNext('GET', `/galleries/${galleryName}`, { status: 429, code: 'TooManyRequests' });
    try {
      const response = await rawRequest(path, {});

      assert.equal(response.status, 401);
      assert.equal(errorCode(response.body), 'AuthenticationFailed');
      assert.equal(arm.pendingAnswers(), 1);
    } finally {
      arm.clearAnswers();
    }
  });

  test('a token issued for another audience gets 401', async () => {
    const token = unsignedJwt({ aud: 'https://storage.azure.com', exp: Math.floor(Date.now() / 1000) + 600 });

    const response = await rawRequest(path, { authorization: `Bearer ${token}` });

    assert.equal(response.status, 401);
    assert.equal(
      (response.body as { error: { code: string } }).error.code,
      'InvalidAuthenticationTokenAudience',
    );
  });

  test('a token for https://management.azure.com/ is accepted', async () => {
    const token = armToken({ aud: 'https://management.azure.com/' });

    const response = await rawRequest(path, { authorization: `Bearer ${token}` });

    assert.equal(response.status, 200);
  });

  test('a token issued by another tenant gets 401 InvalidAuthenticationTokenTenant', async () => {
    const other = randomUUID();
    const token = armToken({ iss: `https://sts.windows.net/${other}/` });

    const response = await rawRequest(path, { authorization: `Bearer ${token}` });

    assert.equal(response.status, 401);
    assert.equal(errorCode(response.body), 'InvalidAuthenticationTokenTenant');
    assert.match(
      (response.body as { error: { message: string } }).error.message,
      new RegExp(
        `wrong issuer 'https://sts.windows.net/${other}/'.*tenant 'https://sts.windows.net/${identity.tenantId}/'`,
      ),
    );
  });

  test('a token without an Azure AD issuer gets 401 InvalidAuthenticationToken', async () => {
    for (const iss of [
      undefined,
      'https://login.example.com/',
      `https://sts.windows.net/${identity.tenantId}`,
    ]) {
      const response = await rawRequest(path, { authorization: `Bearer ${armToken({ iss })}` });

      assert.equal(response.status, 401, String(iss));
      assert.equal(errorCode(response.body), 'InvalidAuthenticationToken');
    }
  });

  test('a token without exp or nbf gets 401 InvalidAuthenticationToken', async () => {
    for (const missing of ['exp', 'nbf']) {
      const response = await rawRequest(path, {
        authorization: `Bearer ${armToken({ [missing]: undefined })}`,
      });

      assert.equal(response.status, 401, missing);
      assert.equal(errorCode(response.body), 'InvalidAuthenticationToken');
      assert.match(
        (response.body as { error: { message: string } }).error.message,
        new RegExp(`'${missing}'`),
      );
    }
  });

  test('an expired token gets 401 ExpiredAuthenticationToken', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = armToken({ nbf: now - 7200, exp: now - 3600 });

    const response = await rawRequest(path, { authorization: `Bearer ${token}` });

    assert.equal(response.status, 401);
    assert.equal(errorCode(response.body), 'ExpiredAuthenticationToken');
  });

  test('a token that is not valid yet gets 401 InvalidAuthenticationToken', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = armToken({ nbf: now + 3600, exp: now + 7200 });

    const response = await rawRequest(path, { authorization: `Bearer ${token}` });

    assert.equal(response.status, 401);
    assert.equal(errorCode(response.body), 'InvalidAuthenticationToken');
    assert.match((response.body as { error: { message: string } }).error.message, /not valid yet/);
  });

  test('a request without api-version gets 400 MissingApiVersionParameter', async () => {
    const response = await rawRequest(galleryUrlPath, { authorization: `Bearer ${armToken()}` });

    assert.equal(response.status, 400);
    assert.equal(errorCode(response.body), 'MissingApiVersionParameter');
  });

  test('an unsupported api-version gets 400 InvalidApiVersionParameter', async () => {
    const response = await rawRequest(`${galleryUrlPath}?api-version=2017-01-01`, {
      authorization: `Bearer ${armToken()}`,
    });

    assert.equal(response.status, 400);
    assert.equal(errorCode(response.body), 'InvalidApiVersionParameter');
  });

  test('the tenant is the configured one', () => {
    assert.equal(arm.tenantId, identity.tenantId);
  });

  test('the SDK authenticates with a managed identity token for the configured scope', () => {
    assert.ok(identity.requests.some((request) => request.resource === arm.url));
  });
});

// ---- authorization ----

describe('authorization as ARM evaluates role assignments', () => {
  const definitionPath = (name: string) => `${galleryUrlPath}/images/${name}?api-version=2025-12-03`;

  test('the app identity with infra roles alone reads and writes the gallery', async () => {
    await withInfraRolesOnly(async () => {
      const name = uniqueName('infra-only');
      const token = armToken();

      const created = await rawRequest(
        definitionPath(name),
        { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        { method: 'PUT', body: definitionJson(name) },
      );
      const gallery = await rawRequest(`${galleryUrlPath}?api-version=2025-12-03`, {
        authorization: `Bearer ${token}`,
      });

      assert.deepEqual([created.status, gallery.status], [201, 200]);
    });
  });

  test('fault: polling the operation status URL of a gallery write is 403 for the app identity with infra roles', async () => {
    await withInfraRolesOnly(async () => {
      const name = uniqueName('no-status');

      const error = await createDefinition(name).then(
        () => undefined,
        (caught: unknown) => caught as { statusCode?: number; code?: string; message?: string },
      );

      assert.equal(error?.statusCode, 403);
      assert.equal(error?.code, 'AuthorizationFailed');
      assert.match(
        error?.message ?? '',
        new RegExp(
          `The client '${identity.principalId}' with object id '${identity.principalId}' does not have authorization to perform action 'Microsoft\\.Compute/locations/capsOperations/read' over scope '/subscriptions/${subscriptionId}/providers/Microsoft\\.Compute/locations/westeurope/capsOperations/[0-9a-f-]+' or the scope is invalid\\.`,
        ),
      );
      // The write itself was accepted: only tracking it needs more than the gallery.
      const definition = await client.galleryImages.get(resourceGroup, galleryName, name);
      assert.equal(definition.name, name);
    });
  });

  test('fault: the Location monitor of a gallery write is 403 for the app identity with infra roles', async () => {
    await withInfraRolesOnly(async () => {
      const name = uniqueName('no-monitor');
      const token = armToken();
      const created = await rawRequest(
        definitionPath(name),
        { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        { method: 'PUT', body: definitionJson(name) },
      );

      const monitor = await rawRequest(String(created.headers['location']), {
        authorization: `Bearer ${token}`,
      });

      assert.match(String(created.headers['location']), /\/capsOperations\/[0-9a-f-]+\?monitor=true/);
      assert.deepEqual([monitor.status, errorCode(monitor.body)], [403, 'AuthorizationFailed']);
    });
  });

  test('a request outside the gallery is 403 AuthorizationFailed for the app identity, not 404', async () => {
    await withInfraRolesOnly(async () => {
      const path = `${resourceGroupId}/providers/Microsoft.Compute/galleries/other_gallery?api-version=2025-12-03`;

      const response = await rawRequest(path, { authorization: `Bearer ${armToken()}` });

      assert.deepEqual([response.status, errorCode(response.body)], [403, 'AuthorizationFailed']);
      assert.match(
        (response.body as { error: { message: string } }).error.message,
        /perform action 'Microsoft\.Compute\/galleries\/read' over scope '.*\/galleries\/other_gallery'/,
      );
    });
  });

  test('a caller holding no role at all is refused even inside the gallery', async () => {
    const stranger = randomUUID();

    const response = await rawRequest(`${galleryUrlPath}?api-version=2025-12-03`, {
      authorization: `Bearer ${armToken({ oid: stranger })}`,
    });

    assert.deepEqual([response.status, errorCode(response.body)], [403, 'AuthorizationFailed']);
    assert.match((response.body as { error: { message: string } }).error.message, new RegExp(stranger));
  });

  test('fault: creating a version without listKeys and write on the VHD account is 403 LinkedAuthorizationFailed', async () => {
    const definition = uniqueName('linked');
    await createDefinition(definition);
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    const source = arm.roleAssignments.findIndex(
      (assignment) => assignment.role.id === 'vhdSourceRole' && assignment.scope === arm.storageAccountId,
    );
    const [vhdSource] = arm.roleAssignments.splice(source, 1);
    try {
      await assert.rejects(
        createVersion(definition, '1.0.0', versionBody(uri)),
        armError(
          403,
          'LinkedAuthorizationFailed',
          /does not have permission to perform action\(s\) 'Microsoft\.Storage\/storageAccounts\/listKeys\/action','Microsoft\.Storage\/storageAccounts\/write' on the linked scope\(s\) '.*\/storageAccounts\/devstoreaccount1'/,
        ),
      );
      assert.equal(arm.imageVersions.has(`${definition}/1.0.0`), false);
    } finally {
      if (vhdSource !== undefined) arm.roleAssignments.push(vhdSource);
    }
  });

  test("by default the app's identity holds exactly infra's assignments to it, at the fake's resources", async () => {
    const fresh = await startFakeArm({
      subscriptionId,
      resourceGroup,
      galleryName,
      location,
      storage: azurite,
      appPrincipalId: identity.principalId,
    });
    try {
      const held = fresh.roleAssignments.map(({ principalId, role, scope }) => [
        principalId,
        role.roleName,
        scope,
      ]);
      const gallery = (scope: string) => scope === fresh.galleryId;
      const vhdAccount = (scope: string) => scope === fresh.storageAccountId;

      assert.equal(
        held.length,
        infraRoleAssignments.filter((assignment) => assignment.principal === 'identityPrincipalId').length,
      );
      assert.ok(held.every(([principal]) => principal === identity.principalId));
      assert.deepEqual(
        held.filter(([, , scope]) => gallery(scope as string)).map(([, role]) => role),
        ['Compute Gallery Artifacts Publisher'],
      );
      assert.deepEqual(
        held
          .filter(([, , scope]) => vhdAccount(scope as string))
          .map(([, role]) => role)
          .sort(),
        ['Stemcell mirror VHD image source', 'Storage Blob Data Contributor'],
      );
      assert.ok(held.every(([, , scope]) => (scope as string).startsWith(`${resourceGroupId}/providers/`)));
    } finally {
      await fresh.stop();
    }
  });

  test('wildcards match any run of characters, notActions take away, scopes cover what lies below them', () => {
    const principal = randomUUID();
    const authorization = new Authorization(() => [
      {
        principalId: principal,
        role: roleById(COMPUTE_GALLERY_ARTIFACTS_PUBLISHER),
        scope: `${galleryUrlPath.toUpperCase()}`,
      },
    ]);
    const version = `${galleryUrlPath}/images/a/versions/1.0.0`;

    assert.equal(
      authorization.isGranted(principal, 'Microsoft.Compute/galleries/images/versions/write', version),
      true,
    );
    assert.equal(
      authorization.isGranted(principal, 'Microsoft.Compute/galleries/share/action', galleryUrlPath),
      false,
    );
    assert.equal(
      authorization.isGranted(principal, 'Microsoft.Compute/galleries/read', `${galleryUrlPath}2`),
      false,
    );
    assert.equal(
      authorization.isGranted(randomUUID(), 'Microsoft.Compute/galleries/read', galleryUrlPath),
      false,
    );
    assert.equal(
      new Authorization(() => [{ principalId: principal, role: OWNER, scope: '/' }]).isGranted(
        principal,
        'Microsoft.Compute/locations/capsOperations/read',
        `/subscriptions/${subscriptionId}/providers/Microsoft.Compute/locations/westeurope/capsOperations/x`,
      ),
      true,
    );
  });
});

// ---- long-running operations as the spec declares them ----

describe('long-running operation headers per GalleryRP operation', () => {
  const variants: Array<NonNullable<FakeArmOptions['statusLinks']>> = [
    'both',
    'location',
    'azure-async-operation',
  ];

  for (const statusLinks of variants) {
    test(`status links '${statusLinks}': PUT 201, PATCH 200 and DELETE 202 carry them with Retry-After`, async () => {
      const variant = await startFakeArm({
        subscriptionId,
        resourceGroup,
        galleryName,
        location,
        storage: azurite,
        tenantId: identity.tenantId,
        appPrincipalId: identity.principalId,
        statusLinks,
        retryAfterSeconds: 7,
        pollsUntilDone: 0,
      });
      try {
        const name = uniqueName('links');
        const path = `${galleryUrlPath}/images/${name}?api-version=2025-12-03`;
        const headers = {
          authorization: `Bearer ${armToken({ aud: variant.url })}`,
          'content-type': 'application/json',
        };
        const put = await rawRequest(path, headers, {
          method: 'PUT',
          body: definitionJson(name),
          at: variant,
        });
        // Reading the resource lets its operation end, so the next write is not refused as concurrent.
        await rawRequest(path, headers, { at: variant });
        const patch = await rawRequest(path, headers, {
          method: 'PATCH',
          body: { tags: { a: 'b' } },
          at: variant,
        });
        await rawRequest(path, headers, { at: variant });
        const removal = await rawRequest(path, headers, { method: 'DELETE', at: variant });

        const links = (response: { headers: Record<string, unknown> }) => [
          response.headers['azure-asyncoperation'] !== undefined,
          response.headers['location'] !== undefined,
          response.headers['retry-after'],
        ];
        const expected = [statusLinks !== 'location', statusLinks !== 'azure-async-operation', '7'];
        assert.deepEqual([put.status, patch.status, removal.status], [201, 200, 202]);
        assert.deepEqual([links(put), links(patch), links(removal)], [expected, expected, expected]);
      } finally {
        await variant.stop();
      }
    });
  }

  test('the Location monitor answers 202 while the operation runs, then the resource', async () => {
    const variant = await startFakeArm({
      subscriptionId,
      resourceGroup,
      galleryName,
      location,
      storage: azurite,
      tenantId: identity.tenantId,
      appPrincipalId: identity.principalId,
      statusLinks: 'location',
      pollsUntilDone: 1,
    });
    variant.roleAssignments.push(resourceGroupPublisher());
    try {
      const name = uniqueName('monitor');
      const headers = {
        authorization: `Bearer ${armToken({ aud: variant.url })}`,
        'content-type': 'application/json',
      };
      const put = await rawRequest(`${galleryUrlPath}/images/${name}?api-version=2025-12-03`, headers, {
        method: 'PUT',
        body: definitionJson(name),
        at: variant,
      });
      const monitor = String(put.headers['location']);

      const first = await rawRequest(monitor, headers);
      const second = await rawRequest(monitor, headers);

      assert.deepEqual([first.status, first.body], [202, undefined]);
      assert.equal(second.status, 200);
      assert.equal((second.body as { name: string }).name, name);
    } finally {
      await variant.stop();
    }
  });
});

describe('If-None-Match: * on PUT', () => {
  test('fault: a PUT with If-None-Match: * of a version that exists is 412 PreconditionFailed and changes nothing', async () => {
    const definition = uniqueName('conditional');
    await createDefinition(definition);
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });
    await createVersion(definition, '1.0.0', versionBody(uri, { owner: 'director' }));

    await assert.rejects(
      client.galleryImageVersions.createOrUpdate(
        resourceGroup,
        galleryName,
        definition,
        '1.0.0',
        versionBody(uri, { owner: 'mirror' }),
        { ...fast, requestOptions: { headers: { 'if-none-match': '*' } } },
      ),
      armError(412, 'PreconditionFailed', /already exists/),
    );
    const version = await client.galleryImageVersions.get(resourceGroup, galleryName, definition, '1.0.0');
    assert.deepEqual(version.tags, { owner: 'director' });
  });

  test('a PUT with If-None-Match: * of a new version creates it', async () => {
    const definition = uniqueName('conditional');
    await createDefinition(definition);
    const uri = await uploadVhdPageBlob({ virtualSize: mebibyte });

    const version = await client.galleryImageVersions.createOrUpdate(
      resourceGroup,
      galleryName,
      definition,
      '1.0.0',
      versionBody(uri),
      { ...fast, requestOptions: { headers: { 'if-none-match': '*' } } },
    );

    assert.equal(version.provisioningState, 'Succeeded');
  });
});
