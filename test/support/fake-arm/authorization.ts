import { ArmError } from './arm-http.js';
import { infraRoleAssignments, roleDefinitions } from './infra-roles.js';
import type { InfraScope, Permission, RoleDefinition } from './infra-roles.js';

/** One role held by one principal at one scope (an ARM resource id, or `/` for everything). */
export interface RoleAssignment {
  principalId: string;
  role: RoleDefinition;
  scope: string;
}

/** Where the infra's `existing` resources live, so their symbols can be resolved to resource ids. */
export interface InfraResourceIds {
  subscriptionId: string;
  resourceGroup: string;
  /** Names by Bicep symbol; a symbol not named here gets a name of its own (the fake serves no such resource). */
  names: Record<string, string>;
}

/** The test-only grant of everything, for the few tests about ARM contracts rather than permissions. */
export const OWNER: RoleDefinition = {
  id: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635',
  roleName: 'Owner',
  source: 'MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles/privileged.md',
  permissions: [{ actions: ['*'], notActions: [], dataActions: [], notDataActions: [] }],
};

/** The assignments infra/modules/role-assignments.bicep makes to the app's identity (the Function App's). */
export function infraAssignmentsOf(appPrincipalId: string, ids: InfraResourceIds): RoleAssignment[] {
  return infraRoleAssignments
    .filter((assignment) => assignment.principal === 'identityPrincipalId')
    .map((assignment) => ({
      principalId: appPrincipalId,
      role: roleById(assignment.roleId),
      scope: resourceIdOf(assignment.scope, ids),
    }));
}

/**
 * ARM's role-based access check: an action is granted when some role assigned to the principal at the request's
 * scope or above it has a permission whose actions match it and whose notActions do not (wildcards `*` match any
 * run of characters, case-insensitively); data actions are matched the same way against dataActions.
 */
export class Authorization {
  constructor(private readonly assignments: () => readonly RoleAssignment[]) {}

  isGranted(principalId: string, action: string, scope: string, data = false): boolean {
    return this.assignments().some(
      (assignment) =>
        assignment.principalId.toLowerCase() === principalId.toLowerCase() &&
        covers(assignment.scope, scope) &&
        assignment.role.permissions.some((permission) => permits(permission, action, data)),
    );
  }

  /**
   * 403 AuthorizationFailed, as ARM answers a request the caller's roles do not allow. `checkedAt` is the scope
   * whose assignments count when it differs from the request's (an operation status URL, see index.ts).
   */
  authorize(principalId: string, action: string, scope: string, checkedAt = scope): void {
    if (this.isGranted(principalId, action, checkedAt)) return;
    throw new ArmError(
      403,
      'AuthorizationFailed',
      `The client '${principalId}' with object id '${principalId}' does not have authorization to perform action '${action}' over scope '${scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
    );
  }

  /**
   * 403 LinkedAuthorizationFailed: a request that names another resource (a VHD source's storage account) needs
   * these actions on it too, checked by ARM before the resource provider sees the request.
   */
  authorizeLinked(
    principalId: string,
    granted: { action: string; scope: string },
    linked: { actions: string[]; scope: string },
  ): void {
    const missing = linked.actions.filter((action) => !this.isGranted(principalId, action, linked.scope));
    if (missing.length === 0) return;
    throw new ArmError(
      403,
      'LinkedAuthorizationFailed',
      `The client '${principalId}' with object id '${principalId}' has permission to perform action '${granted.action}' on scope '${granted.scope}'; however, it does not have permission to perform action(s) '${missing.join("','")}' on the linked scope(s) '${linked.scope}' (respectively) or the linked scope(s) are invalid.`,
    );
  }
}

/**
 * The action ARM checks for a request: the resource provider namespace, the resource types of the path and the
 * verb (`Microsoft.Compute/galleries/images/versions/write`); a path outside any provider is a resource group or
 * subscription (`Microsoft.Resources/subscriptions/resourceGroups/read`).
 */
export function actionOf(method: string, pathname: string): string {
  const segments = pathname.split('/').filter((segment) => segment !== '');
  const verb =
    method === 'GET' || method === 'HEAD'
      ? 'read'
      : method === 'DELETE'
        ? 'delete'
        : method === 'POST'
          ? 'action'
          : 'write';
  const providers = segments.findIndex((segment) => segment.toLowerCase() === 'providers');
  if (providers < 0) {
    const types = ['subscriptions', 'resourceGroups'].slice(0, segments.length > 2 ? 2 : 1);
    return `Microsoft.Resources/${types.join('/')}/${verb}`;
  }
  const namespace = segments[providers + 1] ?? '';
  const rest = segments.slice(providers + 2);
  const types = rest.filter((_, index) => index % 2 === 0);
  // A POST names its action in its last segment (`.../listKeys` is `.../listKeys/action`).
  if (verb === 'action' && rest.length % 2 === 1) return `${namespace}/${types.join('/')}/action`;
  return `${namespace}/${[...types, verb].join('/')}`;
}

export function roleById(id: string): RoleDefinition {
  const role = roleDefinitions.find((candidate) => candidate.id === id);
  if (role === undefined) throw new Error(`no role definition ${id} in test/support/fake-arm/infra-roles.ts`);
  return role;
}

function resourceIdOf(scope: InfraScope, ids: InfraResourceIds): string {
  // Nested symbols (`a::b::c`) are child resources: each level adds its type's last segment and a name.
  const symbols = scope.symbol.split('::');
  const typeParts = scope.type.split('/');
  const namespace = typeParts[0] ?? '';
  const types = typeParts.slice(1);
  const path = types
    .map((type, index) => {
      const symbol = symbols[index] ?? type;
      const name = ids.names[symbol] ?? (symbol === 'blobService' ? 'default' : symbol.toLowerCase());
      return `${type}/${name}`;
    })
    .join('/');
  return `/subscriptions/${ids.subscriptionId}/resourceGroups/${ids.resourceGroup}/providers/${namespace}/${path}`;
}

function covers(assignmentScope: string, scope: string): boolean {
  const outer = assignmentScope.replace(/\/+$/, '').toLowerCase();
  const inner = scope.replace(/\/+$/, '').toLowerCase();
  return outer === '' || inner === outer || inner.startsWith(`${outer}/`);
}

function permits(permission: Permission, action: string, data: boolean): boolean {
  const allowed = data ? permission.dataActions : permission.actions;
  const denied = data ? permission.notDataActions : permission.notActions;
  return (
    allowed.some((pattern) => matches(pattern, action)) && !denied.some((pattern) => matches(pattern, action))
  );
}

function matches(pattern: string, action: string): boolean {
  const regex = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${regex}$`, 'i').test(action);
}
