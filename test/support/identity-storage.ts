/**
 * Storage reached as the mirror reaches it: a local managed-identity endpoint in the environment and
 * Azurite over HTTPS, started before a test file's tests and stopped after them.
 */

import { after, before } from 'node:test';
import { ContainerClient } from '@azure/storage-blob';
import { createAzureCredential } from '../../src/credentials.js';
import { startAzurite, type AzuriteBlob } from './azurite.js';
import { startIdentityEndpoint, type IdentityEndpoint } from './identity.js';

export interface IdentityStorage {
  /** Azurite itself: its endpoint, and its shared key for what an administrator sees. */
  readonly azurite: AzuriteBlob;
  /** A fresh container `<prefix>-N`, reached with a managed-identity token. */
  newContainer(prefix: string): ContainerClient;
}

/** Registers the file's before and after hooks: call it once, at the top level of a test file. */
export function identityStorage(): IdentityStorage {
  let identity: IdentityEndpoint | undefined;
  let azurite: AzuriteBlob | undefined;
  let containers = 0;

  before(async () => {
    identity = await startIdentityEndpoint();
    Object.assign(process.env, identity.env());
    azurite = await startAzurite();
  });
  after(async () => {
    await azurite?.stop();
    await identity?.stop();
    delete process.env.IDENTITY_ENDPOINT;
    delete process.env.IDENTITY_HEADER;
  });

  const started = (): AzuriteBlob => {
    if (azurite === undefined) throw new Error('Azurite is not started yet: use it inside a test or hook');
    return azurite;
  };
  return {
    get azurite() {
      return started();
    },
    newContainer(prefix) {
      containers += 1;
      return new ContainerClient(
        `${started().blobEndpoint}/${prefix}-${containers}`,
        createAzureCredential(),
      );
    },
  };
}
