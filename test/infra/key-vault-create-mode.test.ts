import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { keyVaultCreateMode, listAll, type DeletedVault } from '../../infra/scripts/key-vault-create-mode.js';

const SUBSCRIPTION = '11111111-2222-4333-8444-555555555555';
const HOME = { subscriptionId: SUBSCRIPTION, resourceGroup: 'rg-stemcells', location: 'westeurope' };

/** As the Key Vault REST API lists a soft-deleted vault. */
function deletedVault(resourceGroup: string, location = 'westeurope'): DeletedVault {
  return {
    name: 'kv-abcdefghijklm',
    properties: {
      vaultId: `/subscriptions/${SUBSCRIPTION}/resourceGroups/${resourceGroup}/providers/Microsoft.KeyVault/vaults/kv-abcdefghijklm`,
      location,
      scheduledPurgeDate: '2026-12-09T08:00:00Z',
    },
  };
}

test('a vault that azd down left soft-deleted in this environment is recovered', () => {
  assert.equal(keyVaultCreateMode([deletedVault('rg-stemcells')], HOME), 'recover');
  // ARM ids and region names compare without case.
  assert.equal(keyVaultCreateMode([deletedVault('RG-Stemcells', 'West Europe')], HOME), 'recover');
});

test('without a deleted vault of this environment the vault is created (or updated) as usual', () => {
  assert.equal(keyVaultCreateMode([], HOME), 'default');
  assert.equal(keyVaultCreateMode([deletedVault('rg-other')], HOME), 'default');
  assert.equal(keyVaultCreateMode([deletedVault('rg-stemcells-2')], HOME), 'default');
  assert.equal(keyVaultCreateMode([deletedVault('rg-stemcells', 'northeurope')], HOME), 'default');
});

test('every page of the deleted vaults list is read', async () => {
  const pages: Record<string, unknown> = {
    'https://arm/first': { value: [deletedVault('rg-other')], nextLink: 'https://arm/second' },
    'https://arm/second': { value: [deletedVault('rg-stemcells')] },
  };
  const vaults = await listAll<DeletedVault>('https://arm/first', (url) => Promise.resolve(pages[url]));
  assert.equal(keyVaultCreateMode(vaults, HOME), 'recover');
});

test('the hook looks in the resource group main.bicep deploys to, and azd passes its answer on', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  assert.match(readFileSync(`${root}infra/main.bicep`, 'utf8'), /name: 'rg-\$\{environmentName\}'/);
  const azure = readFileSync(`${root}azure.yaml`, 'utf8');
  assert.match(azure, /preprovision:\n\s+posix:\n\s+shell: sh\n\s+run: npm run azd:preprovision\n/);
  const scripts = (
    JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> }
  ).scripts;
  assert.match(scripts['azd:preprovision'] ?? '', /node dist\/infra\/scripts\/key-vault-create-mode\.js$/);
});
