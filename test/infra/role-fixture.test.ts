/**
 * The ARM fake authorizes with a fixture of infra's role assignments (test/support/fake-arm/infra-roles.ts). These
 * tests keep that fixture and infra/modules/role-assignments.bicep in step, both ways: every assignment of the
 * Bicep is in the fixture with the same principal, role and scope, and the fixture holds nothing the Bicep does not
 * grant; built-in roles are named by the Bicep's variable as Azure names them; custom roles hold the same actions.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { property, resources, stringArray, stringVariables } from '../support/bicep-text.js';
import type { BicepResource } from '../support/bicep-text.js';
import { infraRoleAssignments, roleDefinitions } from '../support/fake-arm/infra-roles.js';

const bicepPath = fileURLToPath(new URL('../../../infra/modules/role-assignments.bicep', import.meta.url));
const bicep = readFileSync(bicepPath, 'utf8');
const declared = resources(bicep);
const variables = stringVariables(bicep);

interface BicepAssignment {
  name: string;
  principal: string;
  roleId: string;
  scope: { symbol: string; type: string };
}

/** The resource type a (possibly nested, `a::b::c`) symbol stands for. */
function typeOf(symbol: string): string {
  return symbol
    .split('::')
    .map((part) => declared.find((resource) => resource.symbol === part)?.type ?? `(undeclared ${part})`)
    .join('/');
}

function roleIdOf(assignment: BicepResource): string {
  const expression = property(assignment.block, 'roleDefinitionId') ?? '';
  const byId =
    /^subscriptionResourceId\('Microsoft\.Authorization\/roleDefinitions',\s*(\w+)(\.name)?\)$/.exec(
      expression,
    );
  // A custom role of the same file is named by its symbol (`role.name`, or `role.id` below); a built-in by a var.
  if (byId?.[2] !== undefined) return byId[1] ?? '';
  if (byId !== null) return variables.get(byId[1] ?? '') ?? `(no var ${byId[1]})`;
  const custom = /^(\w+)\.id$/.exec(expression);
  if (custom !== null) return custom[1] ?? '';
  return `(unreadable roleDefinitionId ${expression})`;
}

function bicepAssignments(): BicepAssignment[] {
  return declared
    .filter((resource) => resource.type === 'Microsoft.Authorization/roleAssignments')
    .map((resource) => {
      const scope = property(resource.block, 'scope') ?? '(no scope)';
      return {
        name: resource.symbol,
        principal: property(resource.block, 'principalId') ?? '(no principalId)',
        roleId: roleIdOf(resource),
        scope: { symbol: scope, type: typeOf(scope) },
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

test('the fixture holds exactly the role assignments of infra/modules/role-assignments.bicep', () => {
  const fromBicep = bicepAssignments();
  const fromFixture = infraRoleAssignments
    .map(({ name, principal, roleId, scope }) => ({ name, principal, roleId, scope: { ...scope } }))
    .sort((a, b) => a.name.localeCompare(b.name));

  assert.ok(fromBicep.length >= 8, `expected the Bicep's role assignments, found ${fromBicep.length}`);
  assert.deepEqual(fromFixture, fromBicep);
});

test('every role the Bicep assigns has a definition in the fixture, and the fixture defines no other role', () => {
  const assigned = new Set(bicepAssignments().map((assignment) => assignment.roleId));

  assert.deepEqual(new Set(roleDefinitions.map((role) => role.id)), assigned);
});

test("each built-in role is the one the Bicep's variable names (Azure's role name, camel-cased)", () => {
  for (const [name, id] of variables) {
    if (!/^[0-9a-f-]{36}$/.test(id)) continue;
    const role = roleDefinitions.find((candidate) => candidate.id === id);
    assert.ok(role, `var ${name} = '${id}' has no role definition in the fixture`);
    const camel = role.roleName
      .split(' ')
      .map((word, index) => (index === 0 ? word.toLowerCase() : `${word[0]?.toUpperCase()}${word.slice(1)}`))
      .join('');
    assert.equal(name, camel, `var ${name} holds the id of '${role.roleName}'`);
    assert.match(role.source, /MicrosoftDocs\/azure-docs .*built-in-roles\/\w+\.md$/);
  }
});

test('each custom role of the Bicep holds exactly the permissions of its fixture definition', () => {
  const custom = declared.filter((resource) => resource.type === 'Microsoft.Authorization/roleDefinitions');
  assert.ok(custom.length > 0, 'expected the custom VHD source role');
  for (const definition of custom) {
    const fixture = roleDefinitions.find((role) => role.id === definition.symbol);
    assert.ok(fixture, `custom role ${definition.symbol} is missing from the fixture`);
    assert.equal(fixture.permissions.length, 1);
    const [permission] = fixture.permissions;
    for (const key of ['actions', 'notActions', 'dataActions', 'notDataActions'] as const) {
      assert.deepEqual(permission?.[key], stringArray(definition.block, key), `${definition.symbol}.${key}`);
    }
  }
});
