// Every privilege of the deployment, each with the reason it is needed. The app's identity gets
// data roles on exactly the resources it touches, Compute Gallery Artifacts Publisher on the gallery,
// and one narrow custom control-plane role on the VHD account; nothing on the resource group (no
// Contributor). The person running azd (principalId) gets only the data roles azd's hook and the
// docs' commands use. Creating the custom role definition needs Owner or User Access Administrator
// (Role Based Access Control Administrator may assign roles but not define them).

@description('Principal (object) id of the app\'s user-assigned identity.')
param identityPrincipalId string
@description('Object id of whoever runs azd; empty: no assignments for them.')
param principalId string
@description('The Functions runtime storage account.')
param runtimeStorageName string
@description('The container of the app package in the runtime storage account.')
param packageContainerName string
@description('The storage account of the stemcell VHDs.')
param vhdStorageName string
@description('The Compute Gallery.')
param galleryName string
@description('The Key Vault holding the GitHub token.')
param keyVaultName string
@description('The Application Insights component.')
param applicationInsightsName string

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var computeGalleryArtifactsPublisher = '85a2d0d9-2eba-4c9c-b355-11c2cc0788ab'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource runtimeStorage 'Microsoft.Storage/storageAccounts@2026-09-01' existing = {
  name: runtimeStorageName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource packageContainer 'containers' existing = {
      name: packageContainerName
    }
  }
}

resource vhdStorage 'Microsoft.Storage/storageAccounts@2026-09-01' existing = {
  name: vhdStorageName
}

resource gallery 'Microsoft.Compute/galleries@2026-03-03' existing = {
  name: galleryName
}

resource keyVault 'Microsoft.KeyVault/vaults@2026-05-15' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ---- The Function App's user-assigned identity ----

// Functions host storage (AzureWebJobsStorage): keys, timer schedule state and singleton leases in
// blobs, creating its containers; the Functions identity-connection docs require Blob Data Owner.
// Also lets the app read its run-from-package zip in the app-package container.
resource appRuntimeBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(runtimeStorage.id, identityPrincipalId, storageBlobDataOwner)
  scope: runtimeStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Durable Functions task hub (Azure Storage backend): control and work-item queues.
resource appRuntimeQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(runtimeStorage.id, identityPrincipalId, storageQueueDataContributor)
  scope: runtimeStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Durable Functions task hub: the History and Instances tables.
resource appRuntimeTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(runtimeStorage.id, identityPrincipalId, storageTableDataContributor)
  scope: runtimeStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The mirror writes the VHD page blobs (and their checksum metadata) in the `stemcell` container,
// reads them back to resume, and deletes incomplete ones. Beside them it keeps one small blob per
// series, `locks/<series>`, whose lease is the lock every runner shares, and `notified/...` records;
// leases and metadata are blob writes, which this role covers. The account holds nothing else.
resource appVhdBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vhdStorage.id, identityPrincipalId, storageBlobDataContributor)
  scope: vhdStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Creating a gallery image version from a VHD requires the caller to hold read, write and listKeys
// on the source storage account (Compute Gallery docs, "VHD as source": the service reads the blob
// with the account's keys, fetched on the caller's behalf). The BOSH Azure CPI documents Storage
// Account Contributor for this, but that role (Microsoft.Storage/storageAccounts/*) also lets its
// holder delete the account and manage every sub-resource (containers, file shares, private
// endpoint connections, ...), and no narrower built-in role has these three actions. So this
// custom role holds exactly them (`write` still allows changing the account's own properties:
// Azure requires it). Its GUID and name derive from the resource group, so every provisioning of
// this group updates the same definition; role names must be unique in the tenant, hence the hash.
// It is assignable only inside this group. `azd down` does not delete it (a role definition is not
// a resource of the group): `az role definition delete` does.
resource vhdSourceRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'bosh-azure-stemcell-mirror', 'vhd-image-source')
  properties: {
    roleName: 'Stemcell mirror VHD image source (${resourceGroup().name}, ${uniqueString(resourceGroup().id)})'
    description: 'Read, write and list the keys of a storage account holding VHDs that Azure Compute Gallery imports as image versions.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read'
          'Microsoft.Storage/storageAccounts/write'
          'Microsoft.Storage/storageAccounts/listKeys/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// The gallery imports each mirrored VHD from this account when the app creates an image version:
// the custom role above (read, write, listKeys), scoped to the VHD account only. Deployments made
// before this role existed also hold Storage Account Contributor there, which an incremental
// deployment does not remove: `az role assignment delete --role "Storage Account Contributor"
// --scope <VHD account id>` does.
resource appVhdSource 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vhdStorage.id, identityPrincipalId, vhdSourceRole.id)
  scope: vhdStorage
  properties: {
    // A role definition id is subscription-level (/subscriptions/{id}/providers/...); the symbol's
    // .id would be the resource group's path, which role assignments do not accept.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', vhdSourceRole.name)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
  // The definition is created in this deployment: assign it only once ARM has it. Bicep orders by
  // the symbol reference above, so the compiled template already depends on the definition
  // (test/infra/bicep.test.ts checks it; an explicit entry here is refused by no-unnecessary-dependson).
}

// Read the gallery's versions, create image definitions and versions, delete a version Azure
// reports Failed. Scoped to this gallery, not its resource group.
resource appGallery 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(gallery.id, identityPrincipalId, computeGalleryArtifactsPublisher)
  scope: gallery
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', computeGalleryArtifactsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// App Service resolves the BASM_NOTIFY_GITHUB_TOKEN Key Vault reference with this identity (read
// secret values only; it cannot list, set or delete them).
resource appKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identityPrincipalId, keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights has local (key) authentication disabled: the host sends telemetry with an
// Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), which needs this role on the component.
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- Whoever runs azd (principalType left out: a user or, in CI, a service principal) ----

// azd's postprovision hook uploads the app package zip to this one container.
resource deployerPackage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(runtimeStorage::blobService::packageContainer.id, principalId, storageBlobDataContributor)
  scope: runtimeStorage::blobService::packageContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
  }
}

// `az keyvault secret set ... --name github-token` (README "Deploy"): an RBAC-mode vault grants no
// data access to subscription Owners, so setting the token needs this role.
resource deployerKeyVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(keyVault.id, principalId, keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: principalId
  }
}

// Running the CLI from a workstation (`npm run stemcell-mirror -- mirror`) uploads VHDs as you.
resource deployerVhdBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vhdStorage.id, principalId, storageBlobDataContributor)
  scope: vhdStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
  }
}
