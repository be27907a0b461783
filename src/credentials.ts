/**
 * Credentials: the one place that decides how the mirror authenticates to Azure.
 * Identity-based only: no account keys or connection strings.
 */
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';
import type { TokenCredential } from '@azure/identity';

/**
 * A user-assigned managed identity when its client id is given (`AZURE_MANAGED_IDENTITY_ID`),
 * otherwise DefaultAzureCredential (system-assigned identity in Azure, az login on a workstation).
 */
export function createAzureCredential(managedIdentityClientId?: string): TokenCredential {
  // An empty app setting means "not configured", not "a client id that is empty".
  if (managedIdentityClientId !== undefined && managedIdentityClientId.trim() !== '') {
    return new ManagedIdentityCredential({ clientId: managedIdentityClientId.trim() });
  }
  return new DefaultAzureCredential();
}
