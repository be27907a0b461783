// `azd up` entry point: one resource group holding the mirror (Function App on an Elastic Premium
// plan) and everything it needs. Names follow the azd templates: an abbreviation plus resourceToken.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name and the resource group name.')
param environmentName string

@minLength(1)
@description('Azure region of every resource; also the region the gallery image versions are created in.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person or service principal running azd (azd sets AZURE_PRINCIPAL_ID). Gets the data roles to publish the app package, set the GitHub token and run the CLI. Empty: none.')
param principalId string = ''

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
@description('Elastic Premium plan size.')
param planSku string = 'EP1'

@description('BASM_TIMER_SCHEDULE: NCRONTAB schedule of the timer trigger (six fields, UTC).')
param timerSchedule string = '0 0 6 * * *'

@description('BASM_STEMCELL_SERIES: bosh.io stemcell series to mirror, comma-separated.')
param stemcellSeries string = 'bosh-azure-hyperv-ubuntu-jammy-go_agent'

@description('BASM_GALLERY_PUBLISHER: image definition identifier publisher.')
param galleryPublisher string = 'bosh'

@description('BASM_GALLERY_OFFER: image definition identifier offer. Empty: derived as the BOSH Azure CPI does.')
param galleryOffer string = ''

@description('BASM_GALLERY_SKU: image definition identifier SKU. Empty: derived as the BOSH Azure CPI does.')
param gallerySku string = ''

@description('BASM_GALLERY_IMAGE_NAME: image definition name (one series only). Empty: derived as the BOSH Azure CPI does.')
param galleryImageName string = ''

@description('BASM_MOUNTED_DIRECTORY: absolute path for the temporary root.vhd. Empty: the OS temp directory.')
param mountedDirectory string = ''

@minValue(1)
@maxValue(50)
@description('BASM_MAX_VERSIONS_PER_RUN: most versions of one series mirrored in one run.')
param maxVersionsPerRun int = 3

@description('BASM_TARGET_REGIONS: regions each image version is replicated to, comma-separated, each with an optional replica count (westeurope=2,eastus); must include location. Empty: location, one replica.')
param targetRegions string = ''

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Premium_LRS'
])
@description('BASM_STORAGE_ACCOUNT_TYPE: storage of the image version replicas.')
param storageAccountType string = 'Standard_LRS'

@minValue(0)
@maxValue(36500)
@description('BASM_END_OF_LIFE_DAYS: a new image version\'s endOfLifeDate is its creation plus this many days. 0: none.')
param endOfLifeDays int = 0

@description('BASM_ADOPT_UNTAGGED: verify and adopt the untagged image versions another tool (the original mirror) made, instead of reporting them.')
@allowed([
  'true'
  'false'
])
param adoptUntagged string = 'false'

@description('BASM_SKIP_VERSIONS: comma-separated bosh.io versions never mirrored (e.g. 1.918,1.926). Empty: none.')
param skipVersions string = ''

@minValue(0)
@maxValue(1000)
@description('BASM_KEEP_VERSIONS: newest versions the mirror made that retention keeps per series; older ones no director uses are deleted. 0: keep all.')
param keepVersions int = 0

@description('BASM_DELETE_SOURCE_BLOB: delete a version\'s source page blob once the version is Succeeded.')
@allowed([
  'true'
  'false'
])
param deleteSourceBlob string = 'false'

@description('BASM_BOSHIO_URL: bosh.io base URL.')
param boshioUrl string = 'https://bosh.io'

@minValue(1)
@maxValue(64)
@description('BASM_UPLOAD_CONCURRENCY: parallel page writes per VHD upload.')
param uploadConcurrency int = 8

@minValue(1)
@maxValue(3600)
@description('BASM_HTTP_TIMEOUT_SECONDS: give up on a bosh.io request after this long without progress.')
param httpTimeoutSeconds int = 60

@minValue(1)
@maxValue(3600)
@description('BASM_VERSION_POLL_INTERVAL_SECONDS: how often an image version\'s provisioning state is polled.')
param versionPollIntervalSeconds int = 30

@minValue(1)
@maxValue(1440)
@description('BASM_VERSION_READY_TIMEOUT_MINUTES: give up waiting for an image version after this long.')
param versionReadyTimeoutMinutes int = 120

@minValue(1)
@maxValue(86400)
@description('BASM_SERIES_LOCK_STALE_SECONDS: a run holding a series that shows no sign of life this long is taken over.')
param seriesLockStaleSeconds int = 900

@minValue(0)
@maxValue(86400)
@description('BASM_SERIES_LOCK_WAIT_SECONDS: how long a run waits for a series another run holds.')
param seriesLockWaitSeconds int = 1200

@description('BASM_NOTIFY_GITHUB_API_URL: GitHub API base URL (GitHub Enterprise Server: https://<host>/api/v3).')
param notifyGithubApiUrl string = 'https://api.github.com'

@description('BASM_NOTIFY_GITHUB_OWNER: owner of the repository whose workflow is dispatched. Empty (with repo or workflow empty): notifications off.')
param notifyGithubOwner string = ''

@description('BASM_NOTIFY_GITHUB_REPO: repository whose workflow is dispatched.')
param notifyGithubRepo string = ''

@description('BASM_NOTIFY_GITHUB_WORKFLOW: workflow file name (e.g. stemcell-mirrored.yml) or numeric id.')
param notifyGithubWorkflow string = ''

@description('BASM_NOTIFY_GITHUB_REF: branch or tag the workflow runs on.')
param notifyGithubRef string = 'main'

@allowed([
  'default'
  'recover'
])
@description('Set by the preprovision hook: recover when `azd down` left this environment\'s Key Vault soft-deleted, default otherwise.')
param keyVaultCreateMode string = 'default'

@description('BASM_ALERT_EMAIL: e-mail address that receives the alerts (a failed run; a series not checked for too long). Empty: no alerts are deployed.')
param alertEmail string = ''

@minValue(1)
@maxValue(46)
@description('BASM_ALERT_CHECK_INTERVAL_HOURS: hours between two runs of the timer (24 for a daily BASM_TIMER_SCHEDULE, 1 for hourly). The dead man\'s switch alerts after this plus 2 hours without a successful check of a series.')
param alertCheckIntervalHours int = 24

@allowed([
  'none'
  'groups'
  'community'
])
@description('BASM_GALLERY_SHARING: share the gallery: none (private), groups (directly with BASM_GALLERY_SHARE_SUBSCRIPTIONS and BASM_GALLERY_SHARE_TENANTS) or community (an Azure community gallery, public). The postprovision hook adds the groups or enables the community gallery.')
param gallerySharing string = 'none'

@description('BASM_GALLERY_COMMUNITY_PUBLISHER_URI: community gallery: the publisher\'s web site, shown to everyone.')
param galleryCommunityPublisherUri string = ''

@description('BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT: community gallery: the publisher\'s support e-mail, shown to everyone.')
param galleryCommunityPublisherContact string = ''

@description('BASM_GALLERY_COMMUNITY_EULA: community gallery: the end-user license agreement of its images (a link or text).')
param galleryCommunityEula string = ''

@description('BASM_GALLERY_COMMUNITY_PUBLIC_NAME_PREFIX: community gallery: the prefix of its public name.')
param galleryCommunityPublicNamePrefix string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var githubTokenSecretName = 'github-token'
// The token setting is a Key Vault reference only when the dispatch target is complete: a token
// without owner/repo/workflow is a configuration error, so without a target the setting stays empty.
var notifyTargetComplete = !empty(notifyGithubOwner) && !empty(notifyGithubRepo) && !empty(notifyGithubWorkflow)

resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'modules/resources.bicep' = {
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    principalId: principalId
    planSku: planSku
    githubTokenSecretName: githubTokenSecretName
    mirrorSettings: {
      AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
      AZURE_RESOURCE_GROUP: rg.name
      AZURE_REGION: location
      AZURE_RESOURCE_MANAGER_ENDPOINT: environment().resourceManager
      BASM_TIMER_SCHEDULE: timerSchedule
      BASM_STEMCELL_SERIES: stemcellSeries
      BASM_GALLERY_PUBLISHER: galleryPublisher
      BASM_GALLERY_OFFER: galleryOffer
      BASM_GALLERY_SKU: gallerySku
      BASM_GALLERY_IMAGE_NAME: galleryImageName
      BASM_MOUNTED_DIRECTORY: mountedDirectory
      BASM_MAX_VERSIONS_PER_RUN: string(maxVersionsPerRun)
      BASM_ADOPT_UNTAGGED: adoptUntagged
      BASM_SKIP_VERSIONS: skipVersions
      BASM_KEEP_VERSIONS: string(keepVersions)
      BASM_DELETE_SOURCE_BLOB: deleteSourceBlob
      BASM_BOSHIO_URL: boshioUrl
      BASM_UPLOAD_CONCURRENCY: string(uploadConcurrency)
      BASM_HTTP_TIMEOUT_SECONDS: string(httpTimeoutSeconds)
      BASM_VERSION_POLL_INTERVAL_SECONDS: string(versionPollIntervalSeconds)
      BASM_TARGET_REGIONS: targetRegions
      BASM_STORAGE_ACCOUNT_TYPE: storageAccountType
      BASM_END_OF_LIFE_DAYS: endOfLifeDays == 0 ? '' : string(endOfLifeDays)
      BASM_VERSION_READY_TIMEOUT_MINUTES: string(versionReadyTimeoutMinutes)
      BASM_SERIES_LOCK_STALE_SECONDS: string(seriesLockStaleSeconds)
      BASM_SERIES_LOCK_WAIT_SECONDS: string(seriesLockWaitSeconds)
      BASM_NOTIFY_GITHUB_API_URL: notifyGithubApiUrl
      BASM_NOTIFY_GITHUB_OWNER: notifyGithubOwner
      BASM_NOTIFY_GITHUB_REPO: notifyGithubRepo
      BASM_NOTIFY_GITHUB_WORKFLOW: notifyGithubWorkflow
      BASM_NOTIFY_GITHUB_REF: notifyGithubRef
    }
    notifyTargetComplete: notifyTargetComplete
    keyVaultCreateMode: keyVaultCreateMode
    gallerySharing: gallerySharing
    galleryCommunityInfo: {
      publisherUri: galleryCommunityPublisherUri
      publisherContact: galleryCommunityPublisherContact
      eula: galleryCommunityEula
      publicNamePrefix: galleryCommunityPublicNamePrefix
    }
  }
}

module alerts 'modules/alerts.bicep' = if (!empty(alertEmail)) {
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsName: resources.outputs.applicationInsightsName
    alertEmail: alertEmail
    stemcellSeries: filter(map(split(stemcellSeries, ','), series => trim(series)), series => !empty(series))
    checkIntervalHours: alertCheckIntervalHours
  }
}

// azd writes these to .azure/<env>/.env. The names the mirror reads are kept, so
// `azd env get-values` also configures the CLI on a workstation (AZURE_MANAGED_IDENTITY_ID is
// deliberately absent: there the CLI uses your own login through DefaultAzureCredential).
@description('Resource group holding everything.')
output AZURE_RESOURCE_GROUP string = rg.name
@description('Region of every resource and of the mirrored image versions.')
output AZURE_REGION string = location
@description('Name of the Function App.')
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
@description('Name of the Compute Gallery.')
output AZURE_GALLERY_NAME string = resources.outputs.galleryName
@description('Key Vault holding the GitHub token (secret github-token).')
output AZURE_KEY_VAULT_NAME string = resources.outputs.keyVaultName
@description('Storage account of the VHDs.')
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.vhdStorageAccountName
@description('Blob endpoint of the VHD storage account.')
output AZURE_STORAGE_BLOB_ENDPOINT string = resources.outputs.vhdStorageBlobEndpoint
@description('Application Insights component of the app.')
output AZURE_APPLICATION_INSIGHTS_NAME string = resources.outputs.applicationInsightsName
@description('Resource Manager endpoint of this cloud.')
output AZURE_RESOURCE_MANAGER_ENDPOINT string = environment().resourceManager
@description('Tenant of the subscription.')
output AZURE_TENANT_ID string = tenant().tenantId
// Where azure.yaml's postprovision hook uploads the app package.
@description('Blob URL of the app package.')
output AZURE_FUNCTION_PACKAGE_URL string = resources.outputs.functionPackageUrl
