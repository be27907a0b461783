/** App settings valid enough for the starters (which read the series). */
export const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
export const NOBLE = 'bosh-azure-hyperv-ubuntu-noble';

export function starterSettings(series: string): Record<string, string> {
  return {
    AZURE_SUBSCRIPTION_ID: '00000000-0000-4000-8000-000000000001',
    AZURE_RESOURCE_GROUP: 'rg-stemcells',
    AZURE_REGION: 'westeurope',
    AZURE_STORAGE_ACCOUNT_NAME: 'stemcellstore',
    AZURE_GALLERY_NAME: 'stemcells',
    BASM_STEMCELL_SERIES: series,
    BASM_VERSION_POLL_INTERVAL_SECONDS: '45',
    BASM_VERSION_READY_TIMEOUT_MINUTES: '90',
    BASM_SERIES_LOCK_WAIT_SECONDS: '300',
  };
}
