/**
 * infra/ against the code, read as text (bicep.test.ts compiles it). The settings the
 * code reads are found in the code itself (string literals and `env.NAME` reads in src/ and functions/),
 * never in a list kept by hand.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse as parseYaml } from 'yaml';
import { RUN_LOG_PREFIX, runLogLine, runRecordOf } from '../../src/run-record.js';
import { blockAt } from '../support/bicep-text.js';
import { cliNodeFlags } from '../support/cli-process.js';

// Compiled to dist/test/infra/: the repository root is three levels up.
const root = fileURLToPath(new URL('../../../', import.meta.url));

/** App settings the Functions host and App Service read, not the mirror. */
const RUNTIME_SETTING = /^(?:FUNCTIONS_|AzureWebJobs|APPLICATIONINSIGHTS_|WEBSITE_|languageWorkers__)/;
const MIRROR_SETTING = /^%?((?:AZURE|BASM)_[A-Z0-9_]+)%?$/;
const ROLE_ASSIGNMENT = /^resource\s+(\w+)\s+'Microsoft\.Authorization\/roleAssignments@[^']+'/gm;
const ROLE_DEFINITION = /^resource\s+(\w+)\s+'Microsoft\.Authorization\/roleDefinitions@[^']+'\s*=\s*\{/gm;
/** Storage Account Contributor: replaced by a custom role holding only what the gallery import needs. */
const STORAGE_ACCOUNT_CONTRIBUTOR = '17d1049b-9a84-46fb-8f53-869881c3d3ab';
/** Owner, Contributor, User Access Administrator: never needed by the mirror. */
const BROAD_ROLES = [
  '8e3af657-a8ff-443c-a75c-2fe8c4bcb635',
  'b24988ac-6180-42a0-ab88-20f7382dd24c',
  '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9',
];

/** The comment lines directly above line `line` (0-based), joined. */
function commentAbove(lines: string[], line: number): string {
  const comment: string[] = [];
  for (let above = line - 1; above >= 0 && lines[above]!.trim().startsWith('//'); above--) {
    comment.unshift(lines[above]!.trim().replace(/^\/\/\s*/, ''));
  }
  return comment.join(' ');
}

interface RoleDefinition {
  file: string;
  symbol: string;
  comment: string;
  block: string;
}

function roleDefinitions(): RoleDefinition[] {
  const found: RoleDefinition[] = [];
  for (const file of bicepFiles()) {
    const text = read(file);
    const lines = text.split('\n');
    for (const match of text.matchAll(ROLE_DEFINITION)) {
      const line = text.slice(0, match.index).split('\n').length - 1;
      found.push({
        file,
        symbol: match[1]!,
        comment: commentAbove(lines, line),
        block: blockAt(text, match.index + match[0].length - 1),
      });
    }
  }
  return found;
}

/** The quoted strings of the `name: [ ... ]` array in a block. */
function stringArray(block: string, name: string): string[] {
  const array = new RegExp(`\\b${name}:\\s*\\[([^\\]]*)\\]`).exec(block)?.[1];
  if (array === undefined) return [];
  return [...array.matchAll(/'([^']*)'/g)].map(([, value]) => value!);
}

function filesUnder(dir: string, extension: string): string[] {
  const found: string[] = [];
  let entries;
  try {
    entries = readdirSync(join(root, dir), { withFileTypes: true });
  } catch {
    return found; // a directory not written yet holds no settings
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(path, extension));
    else if (entry.name.endsWith(extension) && !entry.name.endsWith('.d.ts')) found.push(path);
  }
  return found.sort();
}

function read(path: string): string {
  return readFileSync(join(root, path), 'utf8');
}

/**
 * Setting names the code reads: string literals that are exactly a name (`'BASM_X'`, or `'%BASM_X%'`
 * in a binding expression) and property reads such as `process.env.BASM_X`. Comments do not count.
 */
function settingsReadByCode(): Map<string, string[]> {
  const names = new Map<string, string[]>();
  const note = (name: string, file: string): void => {
    names.set(name, [...new Set([...(names.get(name) ?? []), file])]);
  };
  for (const file of [...filesUnder('src', '.ts'), ...filesUnder('functions', '.ts')]) {
    const source = ts.createSourceFile(file, read(file), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
    const visit = (node: ts.Node): void => {
      if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) {
        const match = MIRROR_SETTING.exec(node.text);
        if (match) note(match[1]!, file);
      } else if (ts.isPropertyAccessExpression(node)) {
        const match = MIRROR_SETTING.exec(node.name.text);
        if (match) note(match[1]!, file);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return names;
}

/**
 * The top-level keys of every Bicep object literal bound to a name ending in "Settings"
 * (`var runtimeSettings = {`, `mirrorSettings: {`), skipping strings and comments.
 */
function settingsObjects(text: string): string[][] {
  const objects: string[][] = [];
  const start = /(\w*Settings)\s*[:=]\s*\{/g;
  for (let match = start.exec(text); match !== null; match = start.exec(text)) {
    const keys: string[] = [];
    let depth = 1;
    let i = match.index + match[0].length;
    let lineStart = false;
    while (i < text.length && depth > 0) {
      const c = text[i]!;
      if (c === "'") {
        i++;
        while (i < text.length && text[i] !== "'") i += text[i] === '\\' ? 2 : 1;
      } else if (c === '/' && text[i + 1] === '/') {
        while (i < text.length && text[i] !== '\n') i++;
        continue;
      } else if (c === '{' || c === '[' || c === '(') {
        depth++;
      } else if (c === '}' || c === ']' || c === ')') {
        depth--;
      } else if (c === '\n') {
        lineStart = true;
        i++;
        continue;
      } else if (lineStart && depth === 1 && !/\s/.test(c)) {
        const key = /^([A-Za-z_][A-Za-z0-9_]*)\s*:/.exec(text.slice(i));
        if (key) keys.push(key[1]!);
      }
      if (!/\s/.test(c)) lineStart = false;
      i++;
    }
    objects.push(keys);
  }
  return objects;
}

function bicepFiles(): string[] {
  return filesUnder('infra', '.bicep');
}

function settingsSetByBicep(): string[] {
  return bicepFiles().flatMap((file) => settingsObjects(read(file)).flat());
}

function mirrorSettingsSetByBicep(): Set<string> {
  return new Set(settingsSetByBicep().filter((name) => !RUNTIME_SETTING.test(name)));
}

test('the infra test finds the settings the code reads', () => {
  // Guards the scanner itself: config.ts reads these, so finding none would mean a broken scan.
  const read = settingsReadByCode();
  for (const name of ['AZURE_SUBSCRIPTION_ID', 'BASM_STEMCELL_SERIES', 'BASM_NOTIFY_GITHUB_TOKEN']) {
    assert.ok(read.has(name), `expected src/ to read ${name}`);
  }
});

test('every app setting the code reads is set by the Bicep', () => {
  const set = mirrorSettingsSetByBicep();
  const missing = [...settingsReadByCode()]
    .filter(([name]) => !set.has(name))
    .map(([name, files]) => `${name} (read in ${files.join(', ')})`);
  assert.deepEqual(missing, [], `add these to the app settings in infra/:\n${missing.join('\n')}`);
});

test('every mirror setting the Bicep sets is read by the code', () => {
  const read = settingsReadByCode();
  const unread = [...mirrorSettingsSetByBicep()].filter((name) => !read.has(name));
  assert.deepEqual(
    unread,
    [],
    `infra/ sets settings no code in src/ or functions/ reads: ${unread.join(', ')}`,
  );
});

test('no app setting is set twice (union() would silently keep the last)', () => {
  const names = settingsSetByBicep();
  const twice = names.filter((name, index) => names.indexOf(name) !== index);
  assert.deepEqual(twice, []);
});

test('the Functions host storage connection uses the identity, not keys', () => {
  const names = new Set(settingsSetByBicep());
  for (const name of ['AzureWebJobsStorage__credential', 'AzureWebJobsStorage__clientId']) {
    assert.ok(names.has(name), `expected ${name}`);
  }
  for (const name of ['AzureWebJobsStorage', 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING']) {
    assert.ok(!names.has(name), `${name} would need an account key`);
  }
  for (const file of bicepFiles()) {
    assert.doesNotMatch(read(file), /listKeys\(|AccountKey=/, `${file} reads an account key`);
  }
});

test('the CLI (npm script and bin) and the Functions worker (deployed and local) run Node with the same flags', () => {
  const flags = cliNodeFlags().join(' ');
  assert.match(flags, /--max-semi-space-size=\d+/, 'the CLI script carries the young-generation size');
  const deployed = /^\s*languageWorkers__node__arguments:\s*'([^']*)'/m.exec(
    read('infra/modules/resources.bicep'),
  );
  assert.equal(deployed?.[1], flags, 'infra/modules/resources.bicep');
  const local = (JSON.parse(read('local.settings.json.template')) as { Values: Record<string, string> })
    .Values;
  assert.equal(local['languageWorkers__node__arguments'], flags, 'local.settings.json.template');
});

test('every role assignment has a comment saying why it is needed', () => {
  let count = 0;
  for (const file of bicepFiles()) {
    const text = read(file);
    const lines = text.split('\n');
    for (const match of text.matchAll(ROLE_ASSIGNMENT)) {
      count++;
      const line = text.slice(0, match.index).split('\n').length - 1;
      const words = commentAbove(lines, line).split(/\s+/).filter(Boolean).length;
      assert.ok(words >= 5, `${file}: role assignment ${match[1]} needs a comment above it saying why`);
    }
  }
  assert.ok(count > 0, 'expected role assignments in infra/');
});

test('no role assignment grants Owner, Contributor or User Access Administrator', () => {
  for (const file of bicepFiles()) {
    const text = read(file).toLowerCase();
    for (const role of BROAD_ROLES) assert.ok(!text.includes(role), `${file} assigns role ${role}`);
  }
});

test('every role assignment has a deterministic guid() name', () => {
  for (const file of bicepFiles()) {
    const text = read(file);
    for (const match of text.matchAll(ROLE_ASSIGNMENT)) {
      const block = blockAt(text, text.indexOf('{', match.index));
      assert.match(
        block,
        /^\{\s*name:\s*guid\(/,
        `${file}: role assignment ${match[1]} should be named by guid(...)`,
      );
    }
  }
});

test('Storage Account Contributor is assigned nowhere', () => {
  for (const file of bicepFiles()) {
    assert.ok(
      !read(file).toLowerCase().includes(STORAGE_ACCOUNT_CONTRIBUTOR),
      `${file} uses Storage Account Contributor`,
    );
  }
});

test('every custom role definition says why, has a guid() name and stays inside its resource group', () => {
  const definitions = roleDefinitions();
  assert.ok(definitions.length > 0, 'expected the custom VHD source role in infra/');
  for (const { file, symbol, comment, block } of definitions) {
    const where = `${file}: role definition ${symbol}`;
    assert.ok(
      comment.split(/\s+/).filter(Boolean).length >= 20,
      `${where} needs a comment above it saying why`,
    );
    assert.match(block, /^\{\s*name:\s*guid\(/, `${where} should be named by guid(...)`);
    assert.match(block, /type:\s*'CustomRole'/, `${where} should be a CustomRole`);
    assert.match(
      block,
      /assignableScopes:\s*\[\s*resourceGroup\(\)\.id\s*\]/,
      `${where} should be assignable in its resource group only`,
    );
    for (const action of stringArray(block, 'actions')) {
      assert.ok(!action.includes('*'), `${where} grants a wildcard action: ${action}`);
      assert.ok(!action.startsWith('Microsoft.Authorization/'), `${where} grants ${action}`);
    }
    assert.deepEqual(stringArray(block, 'dataActions'), [], `${where} should hold no data actions`);
  }
});

test('the VHD source role holds exactly what a gallery import from a VHD needs, on the VHD account only', () => {
  const vhdSource = roleDefinitions().find(({ block }) => block.includes('listKeys/action'));
  assert.ok(vhdSource, 'expected a custom role with Microsoft.Storage/storageAccounts/listKeys/action');
  assert.deepEqual(stringArray(vhdSource.block, 'actions').sort(), [
    'Microsoft.Storage/storageAccounts/listKeys/action',
    'Microsoft.Storage/storageAccounts/read',
    'Microsoft.Storage/storageAccounts/write',
  ]);
  const text = read(vhdSource.file);
  const uses = [...text.matchAll(ROLE_ASSIGNMENT)].map((match) =>
    blockAt(text, text.indexOf('{', match.index)),
  );
  const assigned = uses.filter((block) =>
    block.includes(
      `roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ${vhdSource.symbol}.name)`,
    ),
  );
  assert.equal(assigned.length, 1, 'the VHD source role should be assigned once, to the app identity');
  assert.match(assigned[0]!, /scope:\s*vhdStorage\b/, 'and scoped to the VHD storage account');
  assert.match(assigned[0]!, /principalId:\s*identityPrincipalId\b/);
});

test('every Bicep parameter is used', () => {
  for (const file of bicepFiles()) {
    const code = read(file)
      .split('\n')
      .filter((line) => !line.trim().startsWith('//'))
      .join('\n');
    for (const [, name] of code.matchAll(/^param\s+(\w+)\s/gm)) {
      const uses = code.match(new RegExp(`\\b${name}\\b`, 'g'))?.length ?? 0;
      assert.ok(uses >= 2, `${file}: parameter ${name} is never used`);
    }
  }
});

test('main.parameters.json names only parameters of main.bicep and fills every required one', () => {
  const bicep = read('infra/main.bicep');
  const params = new Map(
    [...bicep.matchAll(/^param\s+(\w+)\s+\w+(\s*=)?/gm)].map(([, name, hasDefault]) => [name!, !!hasDefault]),
  );
  const file = JSON.parse(read('infra/main.parameters.json')) as { parameters: Record<string, unknown> };
  for (const name of Object.keys(file.parameters)) {
    assert.ok(params.has(name), `main.parameters.json sets ${name}, which main.bicep does not declare`);
  }
  for (const [name, hasDefault] of params) {
    if (!hasDefault) assert.ok(name in file.parameters, `main.bicep parameter ${name} has no value`);
  }
});

test('main.parameters.json defaults agree with the Bicep defaults', () => {
  const bicep = read('infra/main.bicep');
  const file = JSON.parse(read('infra/main.parameters.json')) as {
    parameters: Record<string, { value: string }>;
  };
  for (const [name, { value }] of Object.entries(file.parameters)) {
    const fallback = /^\$\{\w+=(.*)\}$/.exec(value)?.[1];
    if (fallback === undefined) continue;
    // A string default is quoted; an int default is a bare number (azd converts "3" for an int parameter).
    const declaration = new RegExp(`^param\\s+${name}\\s+\\w+\\s*=\\s*(?:'([^']*)'|(-?\\d+)\\s*$)`, 'm').exec(
      bicep,
    );
    const declared = declaration?.[1] ?? declaration?.[2];
    assert.equal(declared, fallback, `${name}: main.bicep default and main.parameters.json default differ`);
  }
});

test('every setting parameter of main.bicep can be set with azd env set, under the setting’s name', () => {
  const bicep = read('infra/main.bicep');
  const file = JSON.parse(read('infra/main.parameters.json')) as {
    parameters: Record<string, { value: string }>;
  };
  // `@description('BASM_X: ...')` then (other decorators, then) `param name type`.
  const described = /^@description\('((?:AZURE|BASM)_[A-Z0-9_]+):[^\n]*\n(?:@[^\n]*\n)*param\s+(\w+)\s/gm;
  let count = 0;
  for (const [, setting, name] of bicep.matchAll(described)) {
    count++;
    const value = file.parameters[name!]?.value;
    assert.ok(value !== undefined, `main.parameters.json does not map ${name} (${setting!})`);
    assert.match(value, new RegExp(`^\\$\\{${setting!}(=.*)?\\}$`), `${name} should read \${${setting!}}`);
  }
  assert.ok(count >= 10, `expected the BASM_ settings among main.bicep's parameters, found ${count}`);
});

test('azd gets the names an operator needs as outputs', () => {
  const outputs = new Set(
    [...read('infra/main.bicep').matchAll(/^output\s+(\w+)\s/gm)].map(([, name]) => name),
  );
  for (const name of [
    'AZURE_FUNCTION_APP_NAME',
    'AZURE_GALLERY_NAME',
    'AZURE_KEY_VAULT_NAME',
    'AZURE_STORAGE_ACCOUNT_NAME',
    'AZURE_RESOURCE_GROUP',
  ]) {
    assert.ok(outputs.has(name), `main.bicep should output ${name}`);
  }
  // In .env it would make the CLI on a workstation try the Function App's managed identity.
  assert.ok(!outputs.has('AZURE_MANAGED_IDENTITY_ID'));
});

test('the GitHub workflow compiles with the Bicep version .ci/run installs', () => {
  // Their linter rules differ between versions, and infra/bicepconfig.json lists those of one.
  const pinned = /<BicepVersion>([^<]+)<\/BicepVersion>/.exec(read('.ci/bicep/bicep.csproj'))?.[1];
  assert.ok(pinned, 'expected <BicepVersion> in .ci/bicep/bicep.csproj');
  assert.match(
    read('.github/workflows/ci.yml'),
    new RegExp(`az bicep install --version v${pinned.replace(/\./g, '\\.')}\\b`),
  );
});

test('every azd hook is one npm script, the same on every OS, with no shell syntax', () => {
  // azd runs Windows hooks in PowerShell and the others in sh; `&&` is not a Windows PowerShell 5.1
  // operator, so the steps live in package.json, which npm runs with sh or cmd.exe.
  const azure = parseYaml(read('azure.yaml')) as {
    hooks: Record<string, { posix?: { run: string }; windows?: { run: string } }>;
  };
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
  const hooks = Object.entries(azure.hooks);
  assert.ok(hooks.length >= 2, 'expected the preprovision and postprovision hooks');
  for (const [name, hook] of hooks) {
    assert.ok(hook.posix && hook.windows, `${name}: expected posix and windows variants`);
    assert.equal(hook.windows.run, hook.posix.run, `${name}: the two variants should run the same`);
    const script = /^npm run ([\w:-]+)$/.exec(hook.posix.run)?.[1];
    assert.ok(script, `${name}: "${hook.posix.run}" should be exactly one \`npm run <script>\``);
    assert.ok(scripts[script], `${name}: package.json has no script ${script}`);
  }
});

describe('alerts', () => {
  const alerts = () => read('infra/modules/alerts.bicep');
  /** The text of the triple-quoted variable `name` (a KQL query). */
  const query = (name: string) => {
    const match = new RegExp(`^var ${name} = '''\n([\\s\\S]*?)'''`, 'm').exec(alerts());
    assert.ok(match, `alerts.bicep declares the query ${name}`);
    return match[1]!;
  };

  test('are deployed only with an e-mail address, which azd takes from BASM_ALERT_EMAIL with no default', () => {
    assert.match(
      read('infra/main.bicep'),
      /^module alerts 'modules\/alerts\.bicep' = if \(!empty\(alertEmail\)\) \{/m,
    );
    assert.match(read('infra/main.bicep'), /^param alertEmail string = ''$/m);
    const file = JSON.parse(read('infra/main.parameters.json')) as {
      parameters: Record<string, { value: string }>;
    };
    assert.equal(file.parameters.alertEmail?.value, '${BASM_ALERT_EMAIL}');
    assert.match(alerts(), /emailAddress: alertEmail\b/);
  });

  test('the failure alert finds Durable failures and the line a failed run ends with, exactly as the code writes it', () => {
    const failures = query('failureQuery');
    assert.match(failures, /customDimensions\.Category\) == "Host\.Triggers\.DurableTask"/);
    assert.match(failures, /prop__state\) == "Failed"/);
    const failed = runLogLine(
      runRecordOf(
        'bosh-azure-hyperv-ubuntu-noble',
        'functions',
        '2026-12-02T06:00:00.000Z',
        '2026-12-02T06:01:00.000Z',
        [
          {
            series: 'bosh-azure-hyperv-ubuntu-noble',
            version: '1.1',
            galleryVersion: '1.1.0',
            action: 'failed',
            error: 'x',
          },
        ],
      ),
    );
    const prefix = /message startswith "([^"]+)" and message has "([^"]+)"/.exec(failures);
    assert.ok(prefix, 'the query selects the run lines by prefix and outcome');
    assert.equal(prefix[1], RUN_LOG_PREFIX);
    assert.ok(
      failed.startsWith(prefix[1]) && failed.includes(prefix[2]!),
      `${failed} is what the query looks for`,
    );
  });

  test('the dead man’s switch parses the run line into series and outcome, and lists every configured series', () => {
    const silence = query('silenceQuery');
    const parse = /parse message with "([^"]+)" series "([^"]+)" outcome "([^"]+)" \*/.exec(silence);
    assert.ok(parse, 'the query parses the run line');
    const series = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
    const line = runLogLine(
      runRecordOf(series, 'functions', '2026-12-02T06:00:00.000Z', '2026-12-02T06:01:00.000Z', [
        { series, version: '1.2', galleryVersion: '1.2.0', action: 'exists' },
      ]),
    );
    // KQL's parse, by hand: the text between the literals.
    const [, before, middle, after] = parse;
    assert.ok(line.startsWith(before!));
    const rest = line.slice(before!.length);
    assert.equal(rest.slice(0, rest.indexOf(middle!)), series);
    const outcome = rest.slice(rest.indexOf(middle!) + middle!.length);
    assert.equal(outcome.slice(0, outcome.indexOf(after!)), 'succeeded');
    assert.match(silence, /where outcome == "succeeded"/);
    assert.match(alerts(), /query: replace\(silenceQuery, 'SERIES_LIST', string\(stemcellSeries\)\)/);
    assert.match(read('infra/main.bicep'), /stemcellSeries: filter\(map\(split\(stemcellSeries, ','\)/);
  });

  test('the dead man’s switch waits the check interval plus two hours: 26 h for the daily default', () => {
    assert.match(read('infra/main.bicep'), /^param alertCheckIntervalHours int = 24$/m);
    assert.match(alerts(), /^var silentHours = checkIntervalHours \+ 2$/m);
    assert.match(alerts(), /windowSize: 'PT\$\{silentHours\}H'/);
    // Log alert windows go up to two days.
    assert.match(alerts(), /@maxValue\(46\)\n(?:@[^\n]*\n)*param checkIntervalHours int/);
  });

  test('each rule queries as its own identity, with Reader on the Application Insights component only', () => {
    const text = alerts();
    const rules = [...text.matchAll(/^resource (\w+) 'Microsoft\.Insights\/scheduledQueryRules@/gm)].map(
      (m) => m[1]!,
    );
    assert.deepEqual(rules, ['failureAlert', 'silenceAlert']);
    for (const rule of rules) {
      const block = blockAt(text, text.indexOf('{', text.indexOf(`resource ${rule} `)));
      assert.match(block, /identity: \{\s*type: 'SystemAssigned'\s*\}/, rule);
      assert.match(block, /scopes: \[\s*applicationInsights\.id\s*\]/, rule);
    }
    const assignments = [...text.matchAll(ROLE_ASSIGNMENT)].map((m) =>
      blockAt(text, text.indexOf('{', m.index)),
    );
    assert.equal(assignments.length, rules.length);
    for (const [i, block] of assignments.entries()) {
      assert.match(block, /scope: applicationInsights\n/);
      assert.match(
        block,
        /roleDefinitionId: subscriptionResourceId\('Microsoft\.Authorization\/roleDefinitions', readerRoleId\)/,
      );
      assert.match(block, new RegExp(`principalId: ${rules[i]}\\.identity\\.principalId`));
    }
    assert.match(text, /^var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'$/m);
  });
});
