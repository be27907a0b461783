/**
 * infra/ through the real Bicep compiler: `bicep build` and `bicep lint` with infra/bicepconfig.json must
 * report nothing at all (the compiler exits 0 on warnings, so its diagnostics are read), and the compiled
 * ARM template is checked where Azure would refuse or race at deployment time.
 *
 * The compiler is BICEP_PATH, else `bicep` on PATH, else `az bicep`. Without one the whole suite is
 * skipped with one line, unless BASM_REQUIRE_BICEP=1 (set by .ci/run, which installs it from NuGet):
 * then a missing compiler is a failure, so CI never passes without compiling.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/infra/: the repository root is three levels up.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const mainBicep = join(root, 'infra', 'main.bicep');
const bicepConfig = join(root, 'infra', 'bicepconfig.json');
const HOW_TO_GET_ONE =
  'set BICEP_PATH to a bicep executable, put bicep on PATH, or run `az bicep install` ' +
  '(`bash .ci/run` installs it from NuGet on Linux x64)';

interface Compiler {
  /** What ran, for the test log. */
  version: string;
  build(file: string): Run;
  lint(file: string): Run;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `file(line,col) : Level code: message [link]`, the compiler's default diagnostics format. */
const DIAGNOSTIC = /^(.+)\((\d+),(\d+)\) : (Error|Warning|Info) ([\w-]+): (.*?)(?: \[https?:\/\/\S+\])?$/;

interface Diagnostic {
  file: string;
  line: number;
  level: string;
  code: string;
  message: string;
}

function diagnosticsIn(output: string): Diagnostic[] {
  return output.split(/\r?\n/).flatMap((line) => {
    const match = DIAGNOSTIC.exec(line.trim());
    if (!match) return [];
    const [, file, lineNo, , level, code, message] = match;
    return [{ file: file!, line: Number(lineNo), level: level!, code: code!, message: message! }];
  });
}

function shown(diagnostics: Diagnostic[]): string {
  return diagnostics
    .map((d) => `${d.file.replace(root, '')}:${d.line} ${d.level} ${d.code}: ${d.message}`)
    .join('\n');
}

function execute(command: string, args: string[]): Run {
  // az is a .cmd script on Windows, which only a shell runs.
  const shell = process.platform === 'win32' && command === 'az';
  const result = spawnSync(command, args, { encoding: 'utf8', shell, timeout: 300_000 });
  if (result.error) return { status: null, stdout: '', stderr: result.error.message };
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function bicepExecutable(path: string): Compiler {
  return {
    version: execute(path, ['--version']).stdout.trim(),
    build: (file) => execute(path, ['build', file, '--stdout']),
    lint: (file) => execute(path, ['lint', file]),
  };
}

/** The compiler to use, or why there is none. */
function findCompiler(): Compiler | string {
  const configured = process.env.BICEP_PATH?.trim();
  if (configured) {
    const version = execute(configured, ['--version']);
    // Set but broken is never "no compiler": whoever set it expects it to run.
    if (version.status !== 0) throw new Error(`BICEP_PATH=${configured} does not run: ${version.stderr}`);
    return bicepExecutable(configured);
  }
  if (execute('bicep', ['--version']).status === 0) return bicepExecutable('bicep');
  const az = execute('az', ['bicep', 'version']);
  if (az.status === 0) {
    return {
      version: `az bicep: ${az.stdout.trim()}`,
      build: (file) => execute('az', ['bicep', 'build', '--file', file, '--stdout']),
      lint: (file) => execute('az', ['bicep', 'lint', '--file', file]),
    };
  }
  return `no Bicep compiler found, so infra/ was not compiled: ${HOW_TO_GET_ONE}`;
}

type Template = {
  resources?: TemplateResource[] | Record<string, TemplateResource>;
  parameters?: Record<string, { allowedValues?: unknown[] }>;
};
interface TemplateResource {
  type: string;
  name: string;
  properties?: Record<string, unknown> & { template?: Template };
  dependsOn?: string[];
}

/** Every template of the compiled file: the top level and each module's nested template. */
function templatesIn(template: Template): Template[] {
  const nested = resourcesOf(template)
    .filter((resource) => resource.type === 'Microsoft.Resources/deployments')
    .flatMap((resource) => (resource.properties?.template ? templatesIn(resource.properties.template) : []));
  return [template, ...nested];
}

/** A template's resources: an array, or (languageVersion 2.0) an object keyed by symbolic name. */
function resourcesOf(template: Template): TemplateResource[] {
  const resources = template.resources ?? [];
  return Array.isArray(resources) ? resources : Object.values(resources);
}

function symbolicNameOf(template: Template, resource: TemplateResource): string | undefined {
  const resources = template.resources ?? [];
  if (Array.isArray(resources)) return undefined;
  return Object.entries(resources).find(([, candidate]) => candidate === resource)?.[0];
}

/** `[expr]` -> `expr`: the ARM expression inside a template string. */
function expression(value: unknown): string {
  const text = String(value);
  return text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
}

const ROLE_ASSIGNMENT = /^Microsoft\.Authorization\/roleAssignments$/i;
const ROLE_DEFINITION = /^Microsoft\.Authorization\/roleDefinitions$/i;

function roleAssignmentsOf(template: Template): TemplateResource[] {
  return resourcesOf(template).filter((resource) => ROLE_ASSIGNMENT.test(resource.type));
}

const found = findCompiler();
const required = process.env.BASM_REQUIRE_BICEP === '1';
const skip = typeof found === 'string' && !required ? found : false;

test('infra/ with the real Bicep compiler', { skip }, async (t) => {
  if (typeof found === 'string') assert.fail(`BASM_REQUIRE_BICEP=1 but ${found}`);
  const compiler = found;
  t.diagnostic(`compiler: ${compiler.version}`);

  const build = compiler.build(mainBicep);
  const compiled = JSON.parse(build.stdout || '{}') as Template;
  const templates = templatesIn(compiled);

  await t.test('bicep build compiles infra/main.bicep with no error and no warning', () => {
    const diagnostics = diagnosticsIn(build.stderr);
    assert.deepEqual(shown(diagnostics), '', 'the compiler reported these');
    assert.equal(build.status, 0, `bicep build failed:\n${build.stderr}`);
    assert.ok(resourcesOf(compiled).length > 0, 'expected an ARM template on stdout');
  });

  await t.test('bicep lint finds nothing with the rules of infra/bicepconfig.json', () => {
    const lint = compiler.lint(mainBicep);
    assert.deepEqual(shown(diagnosticsIn(lint.stdout + lint.stderr)), '', 'the linter reported these');
    assert.equal(lint.status, 0, `bicep lint failed:\n${lint.stderr}`);
  });

  await t.test('a warning the compiler exits 0 on is still found and fails the check', () => {
    // Guards the diagnostics reader above: an unknown API version is only a warning (BCP081).
    const dir = mkdtempSync(join(tmpdir(), 'bicep-check-'));
    try {
      copyFileSync(bicepConfig, join(dir, 'bicepconfig.json'));
      const file = join(dir, 'main.bicep');
      writeFileSync(
        file,
        [
          "@description('Region.')",
          'param location string',
          "resource account 'Microsoft.Storage/storageAccounts@2099-01-01' = {",
          "  name: 'stbicepcheck'",
          '  location: location',
          "  kind: 'StorageV2'",
          "  sku: { name: 'Standard_LRS' }",
          '}',
          '',
        ].join('\n'),
      );
      const codes = diagnosticsIn(compiler.build(file).stderr).map((d) => d.code);
      assert.ok(
        codes.includes('BCP081'),
        `expected BCP081 for an unknown API version, got ${codes.join(', ')}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  await t.test('role assignments name their role by its subscription-level definition id', () => {
    // A role definition lives at /subscriptions/{id}/providers/...; resourceId() inside a resource group
    // module would put the resource group in the path, which Azure does not accept as a role.
    let count = 0;
    for (const template of templates) {
      for (const assignment of roleAssignmentsOf(template)) {
        count++;
        assert.match(
          expression(assignment.properties?.roleDefinitionId),
          /^subscriptionResourceId\('Microsoft\.Authorization\/roleDefinitions', /,
          `role assignment ${assignment.name}`,
        );
      }
    }
    assert.ok(count >= 8, `expected the role assignments of infra/, found ${count}`);
  });

  await t.test('an assignment of a role defined in the same deployment waits for the definition', () => {
    let count = 0;
    for (const template of templates) {
      for (const definition of resourcesOf(template).filter((r) => ROLE_DEFINITION.test(r.type))) {
        const name = expression(definition.name);
        const symbol = symbolicNameOf(template, definition);
        const users = roleAssignmentsOf(template).filter((assignment) =>
          expression(assignment.properties?.roleDefinitionId).includes(name),
        );
        assert.ok(users.length > 0, `role definition ${name} is assigned nowhere`);
        for (const assignment of users) {
          count++;
          const waits = (assignment.dependsOn ?? []).some(
            (entry) =>
              entry === symbol || (ROLE_DEFINITION.test(entry.split("'")[1] ?? '') && entry.includes(name)),
          );
          assert.ok(waits, `role assignment ${assignment.name} does not depend on role definition ${name}`);
        }
      }
    }
    assert.ok(count > 0, 'expected the custom VHD source role to be defined and assigned');
  });

  await t.test('every assignment to the app identity says it is a service principal', () => {
    // Without principalType, ARM looks the new identity up in Entra ID, which may not have it yet
    // (PrincipalNotFound right after creation).
    let count = 0;
    for (const template of templates) {
      for (const assignment of roleAssignmentsOf(template)) {
        if (expression(assignment.properties?.principalId) !== "parameters('identityPrincipalId')") continue;
        count++;
        assert.equal(
          assignment.properties?.principalType,
          'ServicePrincipal',
          `role assignment ${assignment.name}`,
        );
      }
    }
    assert.ok(count >= 5, `expected the app identity's role assignments, found ${count}`);
  });

  await t.test('the Key Vault can be recovered after azd down left it soft-deleted', () => {
    const vaults = templates.flatMap((template) =>
      resourcesOf(template)
        .filter((resource) => resource.type === 'Microsoft.KeyVault/vaults')
        .map((vault) => ({ template, vault })),
    );
    assert.equal(vaults.length, 1, 'expected one Key Vault');
    const { template, vault } = vaults[0]!;
    const createMode = /^parameters\('(\w+)'\)$/.exec(expression(vault.properties?.createMode))?.[1];
    assert.ok(createMode, "the vault's createMode should come from a parameter");
    assert.deepEqual(template.parameters?.[createMode]?.allowedValues, ['default', 'recover']);
    const file = JSON.parse(readFileSync(join(root, 'infra', 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: string }>;
    };
    assert.equal(file.parameters.keyVaultCreateMode?.value, '${AZURE_KEY_VAULT_CREATE_MODE=default}');
  });
});
