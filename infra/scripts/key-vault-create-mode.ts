/**
 * azd preprovision hook: decides the Key Vault's createMode (infra/main.bicep `keyVaultCreateMode`).
 *
 * `azd down` without --purge only soft-deletes the vault. Its name derives from the environment, so the
 * next `azd up` asks for the same name, and Azure refuses to create a vault whose name a soft-deleted
 * vault still holds (for its 7-day retention). When this environment's resource group held a vault that
 * is now soft-deleted, this sets AZURE_KEY_VAULT_CREATE_MODE=recover, and the deployment brings the vault
 * back with its secrets (the GitHub token); otherwise `default`. Signed in as whoever ran `azd auth login`;
 * reads azd's AZURE_SUBSCRIPTION_ID, AZURE_ENV_NAME, AZURE_LOCATION and, when set, AZURE_TENANT_ID and
 * AZURE_RESOURCE_MANAGER_ENDPOINT.
 */
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { AzureDeveloperCliCredential } from '@azure/identity';

export type KeyVaultCreateMode = 'default' | 'recover';

/** An entry of `GET /subscriptions/{id}/providers/Microsoft.KeyVault/deletedVaults` (Key Vault REST API). */
export interface DeletedVault {
  name: string;
  properties: { vaultId: string; location: string; scheduledPurgeDate?: string };
}

export interface VaultHome {
  subscriptionId: string;
  /** infra/main.bicep: `rg-${environmentName}`. */
  resourceGroup: string;
  location: string;
}

// A deleted vault's list has been stable since 2018; any version the service still serves will do.
const KEY_VAULT_API_VERSION = '2023-07-01';

/** Azure's region names compare without case and spaces ("West Europe" = "westeurope"). */
function region(name: string): string {
  return name.replace(/\s+/g, '').toLowerCase();
}

/** `recover` when a vault of this environment's resource group waits soft-deleted in its region. */
export function keyVaultCreateMode(deleted: readonly DeletedVault[], home: VaultHome): KeyVaultCreateMode {
  const prefix =
    `/subscriptions/${home.subscriptionId}/resourceGroups/${home.resourceGroup}` +
    '/providers/Microsoft.KeyVault/vaults/';
  const ours = deleted.some(
    (vault) =>
      vault.properties.vaultId.toLowerCase().startsWith(prefix.toLowerCase()) &&
      region(vault.properties.location) === region(home.location),
  );
  return ours ? 'recover' : 'default';
}

/** Every page of an ARM list (`value` plus `nextLink`). */
export async function listAll<T>(firstUrl: string, get: (url: string) => Promise<unknown>): Promise<T[]> {
  const items: T[] = [];
  for (let url: string | undefined = firstUrl; url !== undefined;) {
    const page = (await get(url)) as { value?: T[]; nextLink?: string | null };
    items.push(...(page.value ?? []));
    url = page.nextLink ?? undefined;
  }
  return items;
}

function setAzdValue(name: string, value: string): void {
  const result = spawnSync('azd', ['env', 'set', name, value], {
    stdio: 'inherit',
    shell: process.platform === 'win32',
  });
  if (result.status !== 0)
    throw new Error(`azd env set ${name} ${value} failed (exit ${String(result.status)}).`);
}

async function main(): Promise<void> {
  const env = (name: string): string | undefined => process.env[name]?.trim() || undefined;
  const subscriptionId = env('AZURE_SUBSCRIPTION_ID');
  const environmentName = env('AZURE_ENV_NAME');
  const location = env('AZURE_LOCATION');
  if (subscriptionId === undefined || environmentName === undefined || location === undefined) {
    // The first `azd up` of an environment: nothing can have been deleted yet.
    setAzdValue('AZURE_KEY_VAULT_CREATE_MODE', 'default');
    return;
  }
  const endpoint = (env('AZURE_RESOURCE_MANAGER_ENDPOINT') ?? 'https://management.azure.com').replace(
    /\/+$/,
    '',
  );
  const tenantId = env('AZURE_TENANT_ID');
  const credential = new AzureDeveloperCliCredential(tenantId === undefined ? {} : { tenantId });
  const get = async (url: string): Promise<unknown> => {
    const token = await credential.getToken(`${endpoint}/.default`);
    const response = await fetch(url, { headers: { authorization: `Bearer ${token.token}` } });
    if (!response.ok) {
      throw new Error(`GET ${url} answered ${response.status}: ${(await response.text()).slice(0, 500)}`);
    }
    return response.json();
  };
  const deleted = await listAll<DeletedVault>(
    `${endpoint}/subscriptions/${subscriptionId}/providers/Microsoft.KeyVault/deletedVaults?api-version=${KEY_VAULT_API_VERSION}`,
    get,
  );
  const mode = keyVaultCreateMode(deleted, {
    subscriptionId,
    resourceGroup: `rg-${environmentName}`,
    location,
  });
  if (mode === 'recover') {
    console.error(
      `The Key Vault of rg-${environmentName} is soft-deleted (azd down): this provisioning recovers it.`,
    );
  }
  setAzdValue('AZURE_KEY_VAULT_CREATE_MODE', mode);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
