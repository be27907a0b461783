/**
 * Fixture: the role assignments that infra/modules/role-assignments.bicep makes, and the definitions of the roles
 * they assign, so the ARM fake authorizes the app's identity exactly as Azure would after `azd up`.
 *
 * Sources: each built-in role is the JSON block Azure publishes for it in MicrosoftDocs/azure-docs,
 * articles/role-based-access-control/built-in-roles/{compute,storage,security,monitor}.md (the generated
 * "Azure built-in roles" pages, https://learn.microsoft.com/azure/role-based-access-control/built-in-roles);
 * the custom role is the `vhdSourceRole` definition of the Bicep itself.
 * test/infra/role-fixture.test.ts keeps this file and the Bicep in step, both ways.
 */

export interface Permission {
  actions: string[];
  notActions: string[];
  dataActions: string[];
  notDataActions: string[];
}

export interface RoleDefinition {
  /** The built-in role's GUID, or the Bicep symbol of a custom role definition. */
  id: string;
  roleName: string;
  source: string;
  permissions: Permission[];
}

/** A Bicep `existing` resource a role assignment is scoped to, by symbol, with its resource type. */
export interface InfraScope {
  symbol: string;
  type: string;
}

export interface InfraRoleAssignment {
  /** The Bicep symbol of the assignment. */
  name: string;
  /** The Bicep parameter holding the principal: the app's identity or whoever runs azd. */
  principal: 'identityPrincipalId' | 'principalId';
  roleId: string;
  scope: InfraScope;
}

const builtInRoles = 'MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles';

export const roleDefinitions: RoleDefinition[] = [
  {
    id: '85a2d0d9-2eba-4c9c-b355-11c2cc0788ab',
    roleName: 'Compute Gallery Artifacts Publisher',
    source: `${builtInRoles}/compute.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Compute/galleries/*',
          'Microsoft.Compute/locations/capsOperations/read',
          'Microsoft.Compute/locations/communityGalleries/*',
          'Microsoft.Compute/locations/sharedGalleries/*',
          'Microsoft.Compute/images/*',
          'Microsoft.Compute/virtualMachines/write',
          'Microsoft.Compute/disks/write',
          'Microsoft.Authorization/*/read',
          'Microsoft.Insights/alertRules/*',
          'Microsoft.Resources/deployments/*',
          'Microsoft.Resources/subscriptions/resourceGroups/read',
        ],
        notActions: ['Microsoft.Compute/galleries/share/action'],
        dataActions: [],
        notDataActions: [],
      },
    ],
  },
  {
    id: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
    roleName: 'Storage Blob Data Owner',
    source: `${builtInRoles}/storage.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/*',
          'Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action',
        ],
        notActions: [],
        dataActions: ['Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*'],
        notDataActions: [],
      },
    ],
  },
  {
    id: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
    roleName: 'Storage Blob Data Contributor',
    source: `${builtInRoles}/storage.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/delete',
          'Microsoft.Storage/storageAccounts/blobServices/containers/read',
          'Microsoft.Storage/storageAccounts/blobServices/containers/write',
          'Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action',
        ],
        notActions: [],
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete',
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read',
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action',
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write',
        ],
        notDataActions: [],
      },
    ],
  },
  {
    id: '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
    roleName: 'Storage Queue Data Contributor',
    source: `${builtInRoles}/storage.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/queueServices/queues/delete',
          'Microsoft.Storage/storageAccounts/queueServices/queues/read',
          'Microsoft.Storage/storageAccounts/queueServices/queues/write',
        ],
        notActions: [],
        dataActions: [
          'Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete',
          'Microsoft.Storage/storageAccounts/queueServices/queues/messages/read',
          'Microsoft.Storage/storageAccounts/queueServices/queues/messages/write',
          'Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action',
        ],
        notDataActions: [],
      },
    ],
  },
  {
    id: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
    roleName: 'Storage Table Data Contributor',
    source: `${builtInRoles}/storage.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/tableServices/tables/read',
          'Microsoft.Storage/storageAccounts/tableServices/tables/write',
          'Microsoft.Storage/storageAccounts/tableServices/tables/delete',
        ],
        notActions: [],
        dataActions: [
          'Microsoft.Storage/storageAccounts/tableServices/tables/entities/read',
          'Microsoft.Storage/storageAccounts/tableServices/tables/entities/write',
          'Microsoft.Storage/storageAccounts/tableServices/tables/entities/delete',
          'Microsoft.Storage/storageAccounts/tableServices/tables/entities/add/action',
          'Microsoft.Storage/storageAccounts/tableServices/tables/entities/update/action',
        ],
        notDataActions: [],
      },
    ],
  },
  {
    id: '4633458b-17de-408a-b874-0445c86b69e6',
    roleName: 'Key Vault Secrets User',
    source: `${builtInRoles}/security.md`,
    permissions: [
      {
        actions: [],
        notActions: [],
        dataActions: [
          'Microsoft.KeyVault/vaults/secrets/getSecret/action',
          'Microsoft.KeyVault/vaults/secrets/readMetadata/action',
        ],
        notDataActions: [],
      },
    ],
  },
  {
    id: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7',
    roleName: 'Key Vault Secrets Officer',
    source: `${builtInRoles}/security.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Authorization/*/read',
          'Microsoft.Insights/alertRules/*',
          'Microsoft.Resources/deployments/*',
          'Microsoft.Resources/subscriptions/resourceGroups/read',
          'Microsoft.Support/*',
          'Microsoft.KeyVault/checkNameAvailability/read',
          'Microsoft.KeyVault/deletedVaults/read',
          'Microsoft.KeyVault/locations/*/read',
          'Microsoft.KeyVault/vaults/*/read',
          'Microsoft.KeyVault/operations/read',
        ],
        notActions: [],
        dataActions: ['Microsoft.KeyVault/vaults/secrets/*'],
        notDataActions: [],
      },
    ],
  },
  {
    id: '3913510d-42f4-4e42-8a64-420c390055eb',
    roleName: 'Monitoring Metrics Publisher',
    source: `${builtInRoles}/monitor.md`,
    permissions: [
      {
        actions: [
          'Microsoft.Insights/Register/Action',
          'Microsoft.Support/*',
          'Microsoft.Resources/subscriptions/resourceGroups/read',
        ],
        notActions: [],
        dataActions: ['Microsoft.Insights/Metrics/Write', 'Microsoft.Insights/Telemetry/Write'],
        notDataActions: [],
      },
    ],
  },
  {
    id: 'vhdSourceRole',
    roleName: 'Stemcell mirror VHD image source',
    source: 'infra/modules/role-assignments.bicep (custom role definition)',
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read',
          'Microsoft.Storage/storageAccounts/write',
          'Microsoft.Storage/storageAccounts/listKeys/action',
        ],
        notActions: [],
        dataActions: [],
        notDataActions: [],
      },
    ],
  },
];

const runtimeStorage = { symbol: 'runtimeStorage', type: 'Microsoft.Storage/storageAccounts' };
const packageContainer = {
  symbol: 'runtimeStorage::blobService::packageContainer',
  type: 'Microsoft.Storage/storageAccounts/blobServices/containers',
};
const vhdStorage = { symbol: 'vhdStorage', type: 'Microsoft.Storage/storageAccounts' };
const gallery = { symbol: 'gallery', type: 'Microsoft.Compute/galleries' };
const keyVault = { symbol: 'keyVault', type: 'Microsoft.KeyVault/vaults' };
const applicationInsights = { symbol: 'applicationInsights', type: 'Microsoft.Insights/components' };

export const infraRoleAssignments: InfraRoleAssignment[] = [
  {
    name: 'appRuntimeBlob',
    principal: 'identityPrincipalId',
    roleId: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
    scope: runtimeStorage,
  },
  {
    name: 'appRuntimeQueue',
    principal: 'identityPrincipalId',
    roleId: '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
    scope: runtimeStorage,
  },
  {
    name: 'appRuntimeTable',
    principal: 'identityPrincipalId',
    roleId: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
    scope: runtimeStorage,
  },
  {
    name: 'appVhdBlob',
    principal: 'identityPrincipalId',
    roleId: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
    scope: vhdStorage,
  },
  { name: 'appVhdSource', principal: 'identityPrincipalId', roleId: 'vhdSourceRole', scope: vhdStorage },
  {
    name: 'appGallery',
    principal: 'identityPrincipalId',
    roleId: '85a2d0d9-2eba-4c9c-b355-11c2cc0788ab',
    scope: gallery,
  },
  {
    name: 'appKeyVault',
    principal: 'identityPrincipalId',
    roleId: '4633458b-17de-408a-b874-0445c86b69e6',
    scope: keyVault,
  },
  {
    name: 'appTelemetry',
    principal: 'identityPrincipalId',
    roleId: '3913510d-42f4-4e42-8a64-420c390055eb',
    scope: applicationInsights,
  },
  {
    name: 'deployerPackage',
    principal: 'principalId',
    roleId: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
    scope: packageContainer,
  },
  {
    name: 'deployerKeyVault',
    principal: 'principalId',
    roleId: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7',
    scope: keyVault,
  },
  {
    name: 'deployerVhdBlob',
    principal: 'principalId',
    roleId: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
    scope: vhdStorage,
  },
];
