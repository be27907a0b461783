// Everything inside the resource group. Role assignments live in role-assignments.bicep, one place
// to review every privilege; the one exception is the alert rules' read access to Application
// Insights, beside the optional rules in alerts.bicep.

@description('Azure region of every resource.')
param location string
@description('Tags of every resource (azd-env-name).')
param tags { *: string }
@minLength(13)
@maxLength(13)
@description('toLower(uniqueString(subscription, environment, location)): 13 characters, [a-z0-9].')
param resourceToken string
@description('Object id of whoever runs azd; empty: no role assignments for them.')
param principalId string
@description('Elastic Premium plan size (EP1, EP2, EP3).')
param planSku string
@description('Name of the Key Vault secret holding the GitHub token.')
param githubTokenSecretName string
@description('The mirror\'s own app settings (docs/configuration.md) that need no resource of this group.')
param mirrorSettings { *: string }
@description('Whether the GitHub dispatch target (owner, repo, workflow) is complete, so the token setting is a Key Vault reference.')
param notifyTargetComplete bool
@allowed([
  'default'
  'recover'
])
@description('default: create or update the Key Vault; recover: bring back the soft-deleted vault of the same name (infra/scripts/key-vault-create-mode.ts decides).')
param keyVaultCreateMode string

@allowed([
  'none'
  'groups'
  'community'
])
@description('Who may use the gallery: none, the groups the postprovision hook adds, or the community.')
param gallerySharing string

@description('The community gallery\'s publisher fields (used when gallerySharing is community).')
param galleryCommunityInfo {
  publisherUri: string
  publisherContact: string
  eula: string
  publicNamePrefix: string
}

// Names: abbreviation + resourceToken keeps each within its limit (storage 3-24 [a-z0-9], Key Vault
// 3-24, gallery 1-80 [A-Za-z0-9._], function app 2-60 and globally unique as a host name).
var functionAppName = 'func-${resourceToken}'
var runtimeStorageName = 'st${resourceToken}'
var vhdStorageName = 'stvhd${resourceToken}'
var galleryName = 'gal_stemcells_${resourceToken}'
var keyVaultName = 'kv-${resourceToken}'
var packageContainerName = 'app-package'
var packageBlobName = 'stemcell-mirror.zip'
// The container name the mirror writes VHDs to (src/config.ts VHD_CONTAINER).
var vhdContainerName = 'stemcell'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2026-03-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Telemetry is accepted only with an Entra token (Monitoring Metrics Publisher), never with the
    // instrumentation key alone.
    DisableLocalAuth: true
  }
}

// The Functions runtime's own account: host state, Durable Functions task hub (blobs, queues,
// tables) and the deployment package. Entra ID only: no account keys anywhere.
resource runtimeStorage 'Microsoft.Storage/storageAccounts@2026-09-01' = {
  name: runtimeStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource runtimeBlobService 'Microsoft.Storage/storageAccounts/blobServices@2026-09-01' = {
  parent: runtimeStorage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-09-01' = {
  parent: runtimeBlobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

// A separate account for the stemcell VHDs. Azure Compute Gallery imports a VHD by reading it with
// the account's keys, fetched with the caller's listKeys permission (hence the custom VHD source
// role in role-assignments.bicep), so shared-key access must stay enabled here; keeping the VHDs
// apart lets the runtime account above forbid keys entirely. The mirror itself uses Entra tokens only.
resource vhdStorage 'Microsoft.Storage/storageAccounts@2026-09-01' = {
  name: vhdStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource vhdBlobService 'Microsoft.Storage/storageAccounts/blobServices@2026-09-01' = {
  parent: vhdStorage
  name: 'default'
}

resource vhdContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-09-01' = {
  parent: vhdBlobService
  name: vhdContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource gallery 'Microsoft.Compute/galleries@2026-03-03' = {
  name: galleryName
  location: location
  tags: tags
  properties: {
    description: 'BOSH stemcells mirrored from bosh.io'
    // The permission only: groups are added, and a community gallery enabled, by the `share` action
    // (GalleryRP's sharingProfile.groups is read-only), which the postprovision hook calls.
    sharingProfile: gallerySharing == 'none'
      ? null
      : {
          permissions: gallerySharing == 'groups' ? 'Groups' : 'Community'
          communityGalleryInfo: gallerySharing == 'community' ? galleryCommunityInfo : null
        }
  }
}

// RBAC mode: the app reads the token with Key Vault Secrets User; no access policies. The secret
// itself is not created here: notifications stay off until an operator sets it.
// `azd down` without --purge only soft-deletes the vault, and Azure refuses a new vault of that name
// until the deleted one is purged (7 days): the preprovision hook then asks for 'recover', which brings
// it back with the operator's secret.
resource keyVault 'Microsoft.KeyVault/vaults@2026-05-15' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    createMode: keyVaultCreateMode
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: planSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true // Linux
    maximumElasticWorkerCount: 1
  }
}

module roles 'role-assignments.bicep' = {
  params: {
    identityPrincipalId: identity.properties.principalId
    principalId: principalId
    runtimeStorageName: runtimeStorage.name
    packageContainerName: packageContainer.name
    vhdStorageName: vhdStorage.name
    galleryName: gallery.name
    keyVaultName: keyVault.name
    applicationInsightsName: applicationInsights.name
  }
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (it has no system identity).
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      linuxFxVersion: 'Node|22'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // One always-ready instance, never more: a run is a few long activities whose bulky files stay
      // on the instance's disk; a second instance would only download and extract again.
      minimumElasticInstanceCount: 1
      functionAppScaleLimit: 1
    }
  }
}

// No publishing with user names and passwords: the package goes to blob storage with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

var packageUrl = '${runtimeStorage.properties.primaryEndpoints.blob}${packageContainerName}/${packageBlobName}'

// What the Functions host needs, identity-based throughout.
var runtimeSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'node'
  // The Node worker's V8 flags, the same as the CLI's npm script: a young generation of 1 MiB semi-spaces
  // collects the extraction's spent 1 MiB buffers sooner, which keeps the peak RSS of a 5 GiB stemcell
  // under 256 MiB (docs/performance.md).
  languageWorkers__node__arguments: '--max-semi-space-size=1'
  // AzureWebJobsStorage without a connection string: service URIs + the user-assigned identity.
  // Durable Functions (Azure Storage backend) uses the same connection for its task hub.
  AzureWebJobsStorage__blobServiceUri: runtimeStorage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: runtimeStorage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: runtimeStorage.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  // Run from the package blob, fetched with the identity (no SAS). No WEBSITE_CONTENTAZUREFILECONNECTIONSTRING:
  // an Azure Files content share would need account keys.
  WEBSITE_RUN_FROM_PACKAGE: packageUrl
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identity.id
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
}

var githubTokenReference = '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${githubTokenSecretName})'

// The mirror's settings that name resources of this group.
var resourceSettings = {
  AZURE_STORAGE_ACCOUNT_NAME: vhdStorage.name
  AZURE_STORAGE_BLOB_ENDPOINT: vhdStorage.properties.primaryEndpoints.blob
  AZURE_GALLERY_NAME: gallery.name
  AZURE_MANAGED_IDENTITY_ID: identity.properties.clientId
  // No version: the latest secret version. While the secret is absent App Service passes this text
  // through unresolved, which the mirror treats as "not set" (notifications off).
  BASM_NOTIFY_GITHUB_TOKEN: notifyTargetComplete ? githubTokenReference : ''
}

resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(runtimeSettings, mirrorSettings, resourceSettings)
  // Settings last, once the identity may read storage and the vault, so the first start works.
  dependsOn: [
    roles
  ]
}

@description('Name of the Function App.')
output functionAppName string = functionApp.name
@description('Name of the Compute Gallery the mirror keeps in step with bosh.io.')
output galleryName string = gallery.name
@description('Name of the Key Vault holding the GitHub token.')
output keyVaultName string = keyVault.name
@description('Name of the storage account the VHDs are uploaded to.')
output vhdStorageAccountName string = vhdStorage.name
@description('Blob endpoint of the VHD storage account.')
output vhdStorageBlobEndpoint string = vhdStorage.properties.primaryEndpoints.blob
@description('Name of the Application Insights component.')
output applicationInsightsName string = applicationInsights.name
@description('Blob URL of the app package the Function App runs from.')
output functionPackageUrl string = packageUrl
