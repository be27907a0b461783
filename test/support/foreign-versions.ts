/**
 * Image versions the mirror did not make, as the end-to-end stories set them up: what a director's
 * `bosh upload-stemcell` or the original mirror leaves in the gallery, made through the same local ARM fake and
 * Azurite the command line talks to.
 */

import assert from 'node:assert/strict';
import { ManagedIdentityCredential } from '@azure/identity';
import type { ContainerClient } from '@azure/storage-blob';
import { ComputeGallery } from '../../src/gallery.js';
import {
  TEST_GALLERY,
  TEST_REGION,
  TEST_RESOURCE_GROUP,
  TEST_SUBSCRIPTION,
  type LocalAzure,
} from './local-azure.js';

const galleries = new WeakMap<LocalAzure, ComputeGallery>();

/** The gallery as another party (a director's CPI, the original mirror) sees it: the same ARM, the identity endpoint's token. */
export function foreignGallery(local: LocalAzure): ComputeGallery {
  let gallery = galleries.get(local);
  if (gallery === undefined) {
    // The credential reads these once per process; no other token is asked for in this process.
    Object.assign(process.env, local.identity.env());
    gallery = new ComputeGallery({
      subscriptionId: TEST_SUBSCRIPTION,
      resourceGroup: TEST_RESOURCE_GROUP,
      galleryName: TEST_GALLERY,
      region: TEST_REGION,
      resourceManagerEndpoint: local.arm.url,
      storageAccountId: `/subscriptions/${TEST_SUBSCRIPTION}/resourceGroups/${TEST_RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/${local.azurite.accountName}`,
      credential: new ManagedIdentityCredential(),
      pollIntervalMs: 20,
    });
    galleries.set(local, gallery);
  }
  return gallery;
}

/** The whole VHD (zeros included) as a page blob named `name`, as other tools upload it. Returns its URL. */
export async function wholeVhdPageBlob(
  container: ContainerClient,
  name: string,
  vhd: Buffer,
): Promise<string> {
  const blob = container.getPageBlobClient(name);
  await blob.create(vhd.length);
  const chunk = 4 * 1024 * 1024;
  for (let offset = 0; offset < vhd.length; offset += chunk) {
    const length = Math.min(chunk, vhd.length - offset);
    await blob.uploadPages(vhd.subarray(offset, offset + length), offset, length);
  }
  return blob.url;
}

/** Starts the version and reads it until it Succeeded; `setup` names the step in the failure. */
export async function succeededVersion(
  gallery: ComputeGallery,
  version: { definitionName: string; versionName: string; blobUrl: string; tags: Record<string, string> },
  setup: string,
): Promise<void> {
  await gallery.startImageVersion(version);
  for (let polls = 0; ; polls++) {
    const state = await gallery.getImageVersion(version.definitionName, version.versionName);
    if (state?.provisioningState === 'Succeeded') return;
    assert.ok(polls < 200 && state?.provisioningState !== 'Failed', `${setup}: ${state?.provisioningState}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}
