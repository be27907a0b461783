/**
 * Storage reached as the mirror reaches it: a local managed-identity endpoint in the environment and
 * Azurite over HTTPS, started before a test file's tests and stopped after them; optionally behind the
 * storage proxy (test/support/storage-proxy.ts) that logs blob requests and fails Put Pages on demand.
 */

import { after, before } from 'node:test';
import { BlobServiceClient, ContainerClient, type PageBlobClient } from '@azure/storage-blob';
import { createAzureCredential } from '../../src/credentials.js';
import { startAzurite, type AzuriteBlob } from './azurite.js';
import { startIdentityEndpoint, type IdentityEndpoint } from './identity.js';
import { startStorageProxy, type StorageProxy } from './storage-proxy.js';

export interface IdentityStorage {
  /** Azurite itself: its endpoint, and its shared key for what an administrator sees. */
  readonly azurite: AzuriteBlob;
  /** A fresh container `<prefix>-N`, reached with a managed-identity token. */
  newContainer: (prefix: string) => ContainerClient;
  /** A fresh container name `<prefix>-N` (usable before the services start). */
  newContainerName: (prefix: string) => string;
  /** A page blob as an administrator sees it: straight to Azurite, with the shared key. */
  stored: (containerName: string, blobName: string) => PageBlobClient;
}

export interface ProxiedIdentityStorage extends IdentityStorage {
  readonly proxy: StorageProxy;
  /**
   * The product's client of a container (managed identity) through the proxy, with short retry delays so a
   * fault scenario takes seconds, not the minute the SDK's default delays add up to.
   */
  proxiedContainer: (containerName: string) => ContainerClient;
}

/** Registers the file's before and after hooks: call it once, at the top level of a test file. */
export function identityStorage(): IdentityStorage {
  return storageWith();
}

/** What else a file starts in front of Azurite, in the same hooks (top-level hooks do not wait for each other). */
interface AlongsideAzurite {
  start(azurite: AzuriteBlob): Promise<void>;
  stop(): Promise<void>;
}

function storageWith(alongside?: AlongsideAzurite): IdentityStorage {
  let identity: IdentityEndpoint | undefined;
  let azurite: AzuriteBlob | undefined;
  let containers = 0;

  before(async () => {
    identity = await startIdentityEndpoint();
    Object.assign(process.env, identity.env());
    azurite = await startAzurite();
    await alongside?.start(azurite);
  });
  after(async () => {
    await alongside?.stop();
    await azurite?.stop();
    await identity?.stop();
    delete process.env.IDENTITY_ENDPOINT;
    delete process.env.IDENTITY_HEADER;
  });

  const started = (): AzuriteBlob => {
    if (azurite === undefined) throw new Error('Azurite is not started yet: use it inside a test or hook');
    return azurite;
  };
  const newContainerName = (prefix: string): string => `${prefix}-${++containers}`;
  return {
    get azurite() {
      return started();
    },
    newContainerName,
    newContainer(prefix) {
      return new ContainerClient(
        `${started().blobEndpoint}/${newContainerName(prefix)}`,
        createAzureCredential(),
      );
    },
    stored(containerName, blobName) {
      const { blobEndpoint, sharedKeyCredential } = started();
      return new BlobServiceClient(blobEndpoint, sharedKeyCredential)
        .getContainerClient(containerName)
        .getPageBlobClient(blobName);
    },
  };
}

/** identityStorage() with the storage proxy in front of Azurite: call it once, at the top level of a test file. */
export function proxiedIdentityStorage(): ProxiedIdentityStorage {
  let proxy: StorageProxy | undefined;
  const storage = storageWith({
    async start(azurite) {
      proxy = await startStorageProxy(azurite.blobEndpoint);
    },
    async stop() {
      await proxy?.stop();
    },
  });
  const started = (): StorageProxy => {
    if (proxy === undefined)
      throw new Error('the storage proxy is not started yet: use it inside a test or hook');
    return proxy;
  };
  return {
    get azurite() {
      return storage.azurite;
    },
    newContainer: storage.newContainer,
    newContainerName: storage.newContainerName,
    stored: storage.stored,
    get proxy() {
      return started();
    },
    proxiedContainer(containerName) {
      return new ContainerClient(`${started().blobEndpoint}/${containerName}`, createAzureCredential(), {
        retryOptions: { retryDelayInMs: 20, maxRetryDelayInMs: 100 },
      });
    },
  };
}
