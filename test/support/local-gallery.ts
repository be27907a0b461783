/**
 * A compute gallery on 127.0.0.1 for the gallery client's tests: the managed-identity endpoint, Azurite with a
 * `vhds` container for the versions' page blobs, and the ARM fake serving the gallery with infra's roles.
 */

import { ManagedIdentityCredential } from '@azure/identity';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { ComputeGallery, type VersionPublishing } from '../../src/gallery.js';
import type { CloudProperties, StemcellManifest } from '../../src/manifest.js';
import { startAzurite, type AzuriteBlob } from './azurite.js';
import { startFakeArm, type FakeArm, type FakeArmOptions } from './fake-arm/index.js';
import { startIdentityEndpoint, type IdentityEndpoint } from './identity.js';
import { fixedVhdFooter } from './stemcell-fixture.js';

const MIB = 1024 * 1024;

export interface LocalGalleryOptions {
  subscriptionId: string;
  resourceGroup: string;
  galleryName: string;
  region: string;
  /** See FakeArmOptions.replicationReadsUntilDone. */
  replicationReadsUntilDone?: number;
}

export interface LocalGallery {
  identity: IdentityEndpoint;
  azurite: AzuriteBlob;
  arm: FakeArm;
  /** The `vhds` container, created. */
  container: ContainerClient;
  /** ARM id of the Azurite account, as the gallery client is configured with it. */
  storageAccountId: string;
  /** A gallery client with the app's identity, polling every 20 ms. */
  gallery(publishing?: VersionPublishing): ComputeGallery;
  /** Another ARM fake of the same gallery, over the same Azurite and identity, with `extra` options; the caller stops it. */
  startArm(extra?: Partial<FakeArmOptions>): Promise<FakeArm>;
  stop(): Promise<void>;
}

export async function startLocalGallery(options: LocalGalleryOptions): Promise<LocalGallery> {
  const { subscriptionId, resourceGroup, galleryName, region } = options;
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const each of stops.reverse()) await each().catch(() => undefined);
  };
  try {
    // The credential reads these once per process (msal caches the source), so they are set before any token.
    const identity = await startIdentityEndpoint();
    stops.push(() => identity.stop());
    Object.assign(process.env, identity.env());
    const azurite = await startAzurite();
    stops.push(() => azurite.stop());
    const startArm = (extra: Partial<FakeArmOptions> = {}) =>
      startFakeArm({
        subscriptionId,
        resourceGroup,
        galleryName,
        location: region,
        storage: {
          blobEndpoint: azurite.blobEndpoint,
          accountName: azurite.accountName,
          sharedKeyCredential: azurite.sharedKeyCredential,
        },
        appPrincipalId: identity.principalId,
        ...extra,
      });
    const arm = await startArm(
      options.replicationReadsUntilDone !== undefined
        ? { replicationReadsUntilDone: options.replicationReadsUntilDone }
        : {},
    );
    stops.push(() => arm.stop());
    const storageAccountId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Storage/storageAccounts/${azurite.accountName}`;
    const container = new BlobServiceClient(
      azurite.blobEndpoint,
      azurite.sharedKeyCredential,
    ).getContainerClient('vhds');
    await container.create();
    const gallery = (publishing?: VersionPublishing) =>
      new ComputeGallery({
        subscriptionId,
        resourceGroup,
        galleryName,
        region,
        ...(publishing !== undefined ? { publishing } : {}),
        resourceManagerEndpoint: arm.url,
        storageAccountId,
        credential: new ManagedIdentityCredential(),
        pollIntervalMs: 20,
      });
    return { identity, azurite, arm, container, storageAccountId, gallery, startArm, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A valid fixed VHD page blob in `container`: 1 MiB of (zero) disk plus its footer. Returns its URL. */
export async function vhdPageBlob(container: ContainerClient, name: string): Promise<string> {
  const blob = container.getPageBlobClient(name);
  await blob.create(MIB + 512);
  const footer = fixedVhdFooter(MIB);
  await blob.uploadPages(footer, MIB, footer.length);
  return blob.url;
}

/** The manifest of an Azure Hyper-V stemcell of `series`, as the CPI reads it; `cloud` overrides its properties. */
export function stemcellManifest(
  series: string,
  cloud: Partial<CloudProperties> = {},
  version = '1.1364',
): StemcellManifest {
  return {
    name: series,
    version,
    sha1: 'b'.repeat(40),
    operatingSystem: 'ubuntu-jammy',
    stemcellFormats: ['azure-vhd'],
    cloudProperties: {
      name: series,
      version,
      infrastructure: 'azure',
      osType: 'linux',
      architecture: 'x86_64',
      raw: { name: series, version, infrastructure: 'azure', os_type: 'linux', architecture: 'x86_64' },
      ...cloud,
    },
  };
}
