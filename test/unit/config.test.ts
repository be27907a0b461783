import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { ConfigError, loadConfig, storageAccountId, type MirrorConfig } from '../../src/config.js';

const BASE = {
  AZURE_SUBSCRIPTION_ID: '11111111-2222-4333-8444-555555555555',
  AZURE_RESOURCE_GROUP: 'rg-stemcells',
  AZURE_REGION: 'westeurope',
  AZURE_STORAGE_ACCOUNT_NAME: 'stemcellvhds',
  AZURE_GALLERY_NAME: 'bosh_stemcells',
};

const NOTIFY = {
  BASM_NOTIFY_GITHUB_TOKEN: 'ghp_x',
  BASM_NOTIFY_GITHUB_OWNER: 'org',
  BASM_NOTIFY_GITHUB_REPO: 'repo',
  BASM_NOTIFY_GITHUB_WORKFLOW: 'stemcell.yml',
  BASM_NOTIFY_GITHUB_REF: 'main',
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems.map((p) => p.name);
  }
  assert.fail('expected a ConfigError');
}

test('the minimal settings give every documented default', () => {
  const config = loadConfig(BASE);
  assert.deepEqual(config.series, ['bosh-azure-hyperv-ubuntu-jammy-go_agent']);
  assert.equal(config.storageBlobEndpoint, 'https://stemcellvhds.blob.core.windows.net');
  assert.equal(config.boshioUrl, 'https://bosh.io');
  assert.equal(config.resourceManagerEndpoint, 'https://management.azure.com');
  assert.equal(config.maxVersionsPerRun, 3);
  assert.equal(config.gallery.publisher, 'bosh');
  assert.equal(config.storageContainer, 'stemcell');
  assert.equal(config.notify, undefined);
  assert.equal(config.managedIdentityClientId, undefined);
  assert.equal(config.uploadConcurrency, 8);
  assert.equal(config.httpTimeoutMs, 60_000);
  assert.equal(config.versionPollIntervalSeconds, 30);
  assert.equal(config.versionReadyTimeoutMinutes, 120);
  assert.equal(config.workDir, tmpdir());
  assert.deepEqual(config.gallery, { publisher: 'bosh' });
  assert.deepEqual(config.warnings, []);
  const notifying = loadConfig({ ...BASE, ...NOTIFY });
  assert.equal(notifying.notify?.apiUrl, 'https://api.github.com');
  assert.equal(notifying.notify?.owner, 'org');
  assert.equal(notifying.notify?.repo, 'repo');
  assert.equal(notifying.notify?.workflow, 'stemcell.yml');
  assert.equal(notifying.notify?.ref, 'main');
});

test('fault: bad and missing settings stop the run with one error that lists every offending variable', () => {
  let error: unknown;
  try {
    loadConfig({
      AZURE_RESOURCE_GROUP: 'rg',
      AZURE_REGION: 'westeurope',
      AZURE_STORAGE_ACCOUNT_NAME: 'Not_Valid',
      AZURE_GALLERY_NAME: 'g',
      BASM_STEMCELL_SERIES: 'bosh-azure-hyperv-ubuntu-jammy-go_agent,../etc/passwd',
      BASM_BOSHIO_URL: 'http://bosh.io',
      BASM_MAX_VERSIONS_PER_RUN: 'three',
    });
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(
    error.problems.map((p) => p.name),
    [
      'AZURE_SUBSCRIPTION_ID',
      'AZURE_STORAGE_ACCOUNT_NAME',
      'BASM_STEMCELL_SERIES',
      'BASM_MAX_VERSIONS_PER_RUN',
      'BASM_BOSHIO_URL',
    ],
  );
  assert.match(error.message, /AZURE_SUBSCRIPTION_ID: missing; expected the subscription id \(a GUID\)/);
  assert.match(error.message, /BASM_BOSHIO_URL: "http:\/\/bosh.io" uses http; expected an https:\/\/ URL/);
  assert.match(error.message, /"\.\.\/etc\/passwd" is not a stemcell series name/);
  assert.match(error.message, /"three" is not valid; expected a whole number from 1 to 50/);
});

test('endpoints must be https', () => {
  assert.deepEqual(
    problems({
      ...BASE,
      AZURE_RESOURCE_MANAGER_ENDPOINT: 'http://127.0.0.1:1234',
      AZURE_STORAGE_BLOB_ENDPOINT: 'ftp://x',
      BASM_NOTIFY_GITHUB_API_URL: 'not a url',
    }),
    ['AZURE_STORAGE_BLOB_ENDPOINT', 'AZURE_RESOURCE_MANAGER_ENDPOINT', 'BASM_NOTIFY_GITHUB_API_URL'],
  );
});

test('a notify token needs owner, repo, workflow and ref', () => {
  assert.deepEqual(
    problems({ ...BASE, BASM_NOTIFY_GITHUB_TOKEN: 'ghp_x', BASM_NOTIFY_GITHUB_OWNER: 'org' }),
    ['BASM_NOTIFY_GITHUB_REPO', 'BASM_NOTIFY_GITHUB_WORKFLOW', 'BASM_NOTIFY_GITHUB_REF'],
  );
});

test('the GitHub token is hidden from JSON, util.inspect and string conversion of the settings', () => {
  const config = loadConfig({
    ...BASE,
    BASM_NOTIFY_GITHUB_TOKEN: 'ghp_supersecret',
    BASM_NOTIFY_GITHUB_OWNER: 'org',
    BASM_NOTIFY_GITHUB_REPO: 'repo',
    BASM_NOTIFY_GITHUB_WORKFLOW: 'stemcell.yml',
    BASM_NOTIFY_GITHUB_REF: 'main',
  });
  assert.equal(config.notify?.token.reveal(), 'ghp_supersecret');
  for (const shown of [
    JSON.stringify(config),
    inspect(config, { depth: 10 }),
    String(config.notify?.token),
  ]) {
    assert.doesNotMatch(shown, /supersecret/);
  }
});

test('several series are a comma-separated list; the same one twice is refused', () => {
  assert.deepEqual(loadConfig({ ...BASE, BASM_STEMCELL_SERIES: 'a-1, b-2' }).series, ['a-1', 'b-2']);
  assert.deepEqual(problems({ ...BASE, BASM_STEMCELL_SERIES: 'a-1,a-1' }), ['BASM_STEMCELL_SERIES']);
});

test('a managed identity id must be a GUID; the temp dir must be absolute', () => {
  assert.deepEqual(
    problems({ ...BASE, AZURE_MANAGED_IDENTITY_ID: 'my-identity', BASM_MOUNTED_DIRECTORY: 'tmp' }),
    ['AZURE_MANAGED_IDENTITY_ID', 'BASM_MOUNTED_DIRECTORY'],
  );
});

test('one image name cannot serve several series', () => {
  assert.deepEqual(problems({ ...BASE, BASM_STEMCELL_SERIES: 'a-1,b-2', BASM_GALLERY_IMAGE_NAME: 'img' }), [
    'BASM_GALLERY_IMAGE_NAME',
  ]);
});

test('an offer override is refused with several series: their definitions would share an identifier', () => {
  const series = 'bosh-azure-hyperv-ubuntu-jammy-go_agent,bosh-azure-hyperv-ubuntu-noble';
  assert.deepEqual(problems({ ...BASE, BASM_STEMCELL_SERIES: series, BASM_GALLERY_OFFER: 'ubuntu' }), [
    'BASM_GALLERY_OFFER',
  ]);
  assert.deepEqual(
    problems({
      ...BASE,
      BASM_STEMCELL_SERIES: series,
      BASM_GALLERY_OFFER: 'ubuntu',
      BASM_GALLERY_SKU: 'stemcell',
    }),
    ['BASM_GALLERY_OFFER'],
  );
  assert.throws(
    () => loadConfig({ ...BASE, BASM_STEMCELL_SERIES: series, BASM_GALLERY_OFFER: 'ubuntu' }),
    /BASM_GALLERY_OFFER: "ubuntu" would be the offer of every series' image definition.*Azure refuses/,
  );
});

test('an offer and a SKU override need one image name: gen1 and gen2 builds would share an identifier', () => {
  const fixed = { ...BASE, BASM_GALLERY_OFFER: 'ubuntu-jammy', BASM_GALLERY_SKU: 'stemcell' };
  assert.deepEqual(problems(fixed), ['BASM_GALLERY_OFFER']);
  assert.throws(() => loadConfig(fixed), /gen1 and a gen2 build of bosh-azure-hyperv-ubuntu-jammy-go_agent/);
  assert.equal(
    loadConfig({ ...fixed, BASM_GALLERY_IMAGE_NAME: 'ubuntu-jammy' }).gallery.offer,
    'ubuntu-jammy',
  );
});

test('identifier overrides that keep definitions apart are accepted', () => {
  // Offer alone, one series: gen1 and gen2 differ in the SKU (the generation).
  assert.equal(loadConfig({ ...BASE, BASM_GALLERY_OFFER: 'ubuntu-jammy' }).gallery.offer, 'ubuntu-jammy');
  // SKU alone: the offer is the definition name, different for every series and generation.
  const series = 'bosh-azure-hyperv-ubuntu-jammy-go_agent,bosh-azure-hyperv-ubuntu-noble';
  assert.equal(
    loadConfig({ ...BASE, BASM_STEMCELL_SERIES: series, BASM_GALLERY_SKU: 'stemcell' }).gallery.sku,
    'stemcell',
  );
});

test('the --series override is validated like the setting', () => {
  assert.throws(
    () => loadConfig(BASE, { series: 'Bad Series' }),
    /--series: "Bad Series" is not a stemcell series name/,
  );
});

test('an unresolved Key Vault reference counts as not set, with a warning that shows no value', () => {
  const config = loadConfig({
    ...BASE,
    BASM_NOTIFY_GITHUB_TOKEN: '@Microsoft.KeyVault(VaultName=kv-stemcells;SecretName=github-token)',
  });
  assert.equal(config.notify, undefined);
  assert.deepEqual(config.warnings, [
    'BASM_NOTIFY_GITHUB_TOKEN: Key Vault reference not resolved (secret absent or not readable); treated as not set',
  ]);
});

test('a URL setting with credentials is refused without echoing them', () => {
  let message = '';
  try {
    loadConfig({
      ...BASE,
      BASM_NOTIFY_GITHUB_API_URL: 'http://user:hunter2@github.example/api/v3?token=abc',
    });
  } catch (error) {
    message = (error as Error).message;
  }
  assert.match(message, /BASM_NOTIFY_GITHUB_API_URL: "http:\/\/github\.example\/api\/v3" uses http/);
  assert.doesNotMatch(message, /hunter2|token=abc|user/);
});

test('notify settings without a token turn notifications off with a warning', () => {
  const config = loadConfig({ ...BASE, BASM_NOTIFY_GITHUB_OWNER: 'org', BASM_NOTIFY_GITHUB_REPO: 'repo' });
  assert.equal(config.notify, undefined);
  assert.match(config.warnings.join('\n'), /BASM_NOTIFY_GITHUB_TOKEN is not/);
});

test('a poll interval that would make the orchestration history huge is refused', () => {
  assert.deepEqual(
    problems({
      ...BASE,
      BASM_VERSION_POLL_INTERVAL_SECONDS: '1',
      BASM_VERSION_READY_TIMEOUT_MINUTES: '1440',
    }),
    ['BASM_VERSION_POLL_INTERVAL_SECONDS'],
  );
});

test('the series lock goes stale after 15 minutes and a run waits up to 20 minutes for it, by default', () => {
  const config = loadConfig(BASE);
  assert.equal(config.seriesLockStaleSeconds, 900);
  assert.equal(config.seriesLockWaitSeconds, 1200);
});

test('series lock settings are whole seconds in range; waiting 0 s reports the holder at once', () => {
  const config = loadConfig({
    ...BASE,
    BASM_SERIES_LOCK_STALE_SECONDS: '3',
    BASM_SERIES_LOCK_WAIT_SECONDS: '0',
  });
  assert.equal(config.seriesLockStaleSeconds, 3);
  assert.equal(config.seriesLockWaitSeconds, 0);
  assert.deepEqual(
    problems({ ...BASE, BASM_SERIES_LOCK_STALE_SECONDS: '0', BASM_SERIES_LOCK_WAIT_SECONDS: '-1' }),
    ['BASM_SERIES_LOCK_STALE_SECONDS', 'BASM_SERIES_LOCK_WAIT_SECONDS'],
  );
  assert.deepEqual(problems({ ...BASE, BASM_SERIES_LOCK_STALE_SECONDS: '86401' }), [
    'BASM_SERIES_LOCK_STALE_SECONDS',
  ]);
});

test('a lock wait that would make the orchestration history huge is refused', () => {
  assert.deepEqual(
    problems({ ...BASE, BASM_VERSION_POLL_INTERVAL_SECONDS: '1', BASM_SERIES_LOCK_WAIT_SECONDS: '20000' }),
    ['BASM_SERIES_LOCK_WAIT_SECONDS'],
  );
});

test('a gallery name with a character Azure does not allow is refused, naming what it expects', () => {
  for (const valid of ['g', 'bosh_stemcells', 'bosh.stemcells', 'Gallery01', 'a'.repeat(80)]) {
    assert.equal(loadConfig({ ...BASE, AZURE_GALLERY_NAME: valid }).galleryName, valid);
  }
  for (const invalid of ['bosh-stemcells', '_gallery', 'gallery.', 'my gallery', 'a'.repeat(81)]) {
    assert.throws(
      () => loadConfig({ ...BASE, AZURE_GALLERY_NAME: invalid }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes(
          `AZURE_GALLERY_NAME: "${invalid}" is not valid; expected a Compute Gallery name`,
        ),
      invalid,
    );
  }
});

test('a resource group name is checked against the pattern Azure applies', () => {
  const valid = [
    'rg',
    'r',
    'rg-stemcells',
    'RG_Stemcells.prod',
    '(rg)',
    'rg-stemcells-münchen',
    'a'.repeat(90),
  ];
  for (const name of valid)
    assert.equal(loadConfig({ ...BASE, AZURE_RESOURCE_GROUP: name }).resourceGroup, name);
  for (const name of ['rg.', 'rg stemcells', 'rg/stemcells', 'rg#1', 'rg*', 'a'.repeat(91)]) {
    assert.deepEqual(problems({ ...BASE, AZURE_RESOURCE_GROUP: name }), ['AZURE_RESOURCE_GROUP'], name);
  }
});

test('a region is an Azure region name, not its display name', () => {
  for (const name of ['westeurope', 'eastus2', 'germanywestcentral', 'usgovvirginia', 'eastus2euap']) {
    assert.equal(loadConfig({ ...BASE, AZURE_REGION: name }).region, name);
  }
  for (const name of ['West Europe', 'west-europe', 'WestEurope', '2westus', 'w', 'a'.repeat(41)]) {
    assert.deepEqual(problems({ ...BASE, AZURE_REGION: name }), ['AZURE_REGION'], name);
  }
});

const INTEGER_SETTINGS: Array<[name: string, min: number, max: number, read: (c: MirrorConfig) => number]> = [
  ['BASM_MAX_VERSIONS_PER_RUN', 1, 50, (c) => c.maxVersionsPerRun],
  ['BASM_UPLOAD_CONCURRENCY', 1, 64, (c) => c.uploadConcurrency],
  ['BASM_HTTP_TIMEOUT_SECONDS', 1, 3600, (c) => c.httpTimeoutMs / 1000],
  ['BASM_VERSION_POLL_INTERVAL_SECONDS', 1, 3600, (c) => c.versionPollIntervalSeconds],
  ['BASM_VERSION_READY_TIMEOUT_MINUTES', 1, 1440, (c) => c.versionReadyTimeoutMinutes],
  ['BASM_SERIES_LOCK_STALE_SECONDS', 1, 86400, (c) => c.seriesLockStaleSeconds],
  ['BASM_SERIES_LOCK_WAIT_SECONDS', 0, 86400, (c) => c.seriesLockWaitSeconds],
];

for (const [name, min, max, read] of INTEGER_SETTINGS) {
  test(`${name} takes a whole number from ${min} to ${max} and refuses one just outside`, () => {
    assert.equal(read(loadConfig({ ...BASE, [name]: String(min) })), min);
    assert.equal(read(loadConfig({ ...BASE, [name]: String(max) })), max);
    for (const value of [String(min - 1), String(max + 1), '-1', '2.5', '1e2', 'ten']) {
      assert.throws(
        () => loadConfig({ ...BASE, [name]: value }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.problems.length === 1 &&
          error.message.includes(
            `${name}: "${value}" is not valid; expected a whole number from ${min} to ${max}`,
          ),
        `${name}=${value}`,
      );
    }
  });
}

test('the poll interval may make up to 10000 polls per version, not one more', () => {
  const at = { BASM_VERSION_POLL_INTERVAL_SECONDS: '3', BASM_VERSION_READY_TIMEOUT_MINUTES: '500' };
  assert.equal(loadConfig({ ...BASE, ...at }).versionPollIntervalSeconds, 3);
  assert.throws(
    () => loadConfig({ ...BASE, ...at, BASM_VERSION_READY_TIMEOUT_MINUTES: '501' }),
    /BASM_VERSION_POLL_INTERVAL_SECONDS: 3 s with BASM_VERSION_READY_TIMEOUT_MINUTES 501 means up to 10020 polls; expected at most 10000/,
  );
});

test('the configuration error counts the offending settings and shows one line for each', () => {
  assert.throws(
    () => loadConfig({ ...BASE, AZURE_REGION: '' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.name === 'ConfigError' &&
      error.message ===
        'Invalid configuration (1 setting):\n  AZURE_REGION: missing; expected an Azure region name such as westeurope',
  );
  assert.throws(
    () => loadConfig({ ...BASE, AZURE_REGION: 'West Europe', AZURE_STORAGE_ACCOUNT_NAME: 'a' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message ===
        'Invalid configuration (2 settings):\n' +
          '  AZURE_REGION: "West Europe" is not valid; expected an Azure region name such as westeurope\n' +
          '  AZURE_STORAGE_ACCOUNT_NAME: "a" is not valid; expected a storage account name (3-24 lowercase letters and digits)',
  );
});

test('each refused setting names what it expects', () => {
  const expectations: Array<[Record<string, string>, string]> = [
    [
      { AZURE_RESOURCE_GROUP: 'rg.' },
      'AZURE_RESOURCE_GROUP: "rg." is not valid; expected a resource group name (1-90 letters, digits, "_", "-", ".", "(", ")"; not ending in ".")',
    ],
    [
      { AZURE_MANAGED_IDENTITY_ID: 'mi' },
      'AZURE_MANAGED_IDENTITY_ID: "mi" is not valid; expected the client id (a GUID) of a user-assigned managed identity',
    ],
    [
      { BASM_GALLERY_PUBLISHER: '-bosh' },
      'BASM_GALLERY_PUBLISHER: "-bosh" is not valid; expected letters, digits, ".", "_" and "-" (1-80 characters)',
    ],
    [
      { BASM_GALLERY_OFFER: 'of fer' },
      'BASM_GALLERY_OFFER: "of fer" is not valid; expected letters, digits, ".", "_" and "-" (1-80 characters)',
    ],
    [
      { BASM_GALLERY_SKU: 'gen1!' },
      'BASM_GALLERY_SKU: "gen1!" is not valid; expected letters, digits, ".", "_" and "-" (1-80 characters)',
    ],
    [
      { BASM_GALLERY_IMAGE_NAME: 'img/x' },
      'BASM_GALLERY_IMAGE_NAME: "img/x" is not valid; expected letters, digits, ".", "_" and "-" (1-80 characters)',
    ],
    [{ BASM_STEMCELL_SERIES: 'a-1,a-1' }, 'BASM_STEMCELL_SERIES: "a-1,a-1" names a series twice'],
    [
      { BASM_STEMCELL_SERIES: 'Bad,a-1' },
      'BASM_STEMCELL_SERIES: "Bad" is not a stemcell series name; expected a comma-separated list of names like ' +
        'bosh-azure-hyperv-ubuntu-jammy-go_agent (lowercase letters, digits, ".", "_", "-"; at most 80 characters)',
    ],
    [
      { BASM_STEMCELL_SERIES: 'Bad,Worse' },
      'BASM_STEMCELL_SERIES: "Bad", "Worse" are not stemcell series names; expected a comma-separated list of names like ' +
        'bosh-azure-hyperv-ubuntu-jammy-go_agent (lowercase letters, digits, ".", "_", "-"; at most 80 characters)',
    ],
    [
      { BASM_MOUNTED_DIRECTORY: 'tmp/work' },
      'BASM_MOUNTED_DIRECTORY: "tmp/work" is not an absolute path; expected a directory path',
    ],
    [{ BASM_BOSHIO_URL: 'bosh.io' }, 'BASM_BOSHIO_URL: is not a URL; expected an https:// URL'],
    [
      { BASM_BOSHIO_URL: 'https://bosh.example/api#top' },
      'BASM_BOSHIO_URL: "https://bosh.example/api" must not carry a query, fragment or credentials',
    ],
    [
      { BASM_STEMCELL_SERIES: 'a-1,b-2', BASM_GALLERY_IMAGE_NAME: 'img' },
      'BASM_GALLERY_IMAGE_NAME: names one image definition, so it cannot be combined with several series',
    ],
    [
      { BASM_NOTIFY_GITHUB_TOKEN: 'ghp_x', BASM_NOTIFY_GITHUB_OWNER: 'org/x' },
      'BASM_NOTIFY_GITHUB_OWNER: "org/x" is not valid; expected a GitHub user or organisation name',
    ],
    [
      { ...NOTIFY, BASM_NOTIFY_GITHUB_REPO: 'x/repo' },
      'BASM_NOTIFY_GITHUB_REPO: "x/repo" is not valid; expected a GitHub repository name',
    ],
    [
      { ...NOTIFY, BASM_NOTIFY_GITHUB_WORKFLOW: 'stemcell' },
      'BASM_NOTIFY_GITHUB_WORKFLOW: "stemcell" is not valid; expected a workflow file name such as mirror.yml, or a numeric workflow id',
    ],
    [
      { ...NOTIFY, BASM_NOTIFY_GITHUB_REF: 'my branch' },
      'BASM_NOTIFY_GITHUB_REF: "my branch" is not valid; expected a branch or tag name such as main',
    ],
    [
      { BASM_NOTIFY_GITHUB_TOKEN: 'ghp_x' },
      'BASM_NOTIFY_GITHUB_OWNER: missing; required when BASM_NOTIFY_GITHUB_TOKEN is set',
    ],
  ];
  for (const [env, line] of expectations) {
    assert.throws(
      () => loadConfig({ ...BASE, ...env }),
      (error: unknown) => error instanceof ConfigError && error.message.split('\n').includes(`  ${line}`),
      line,
    );
  }
});

test('a missing storage account is one problem, not also a broken default endpoint', () => {
  const { AZURE_STORAGE_ACCOUNT_NAME: _, ...withoutAccount } = BASE;
  assert.deepEqual(problems(withoutAccount), ['AZURE_STORAGE_ACCOUNT_NAME']);
});

test('an empty setting counts as unset; surrounding spaces are not part of a value', () => {
  assert.deepEqual(problems({ ...BASE, AZURE_REGION: '' }), ['AZURE_REGION']);
  const config = loadConfig({
    ...BASE,
    AZURE_REGION: '  westeurope ',
    AZURE_MANAGED_IDENTITY_ID: '',
    BASM_UPLOAD_CONCURRENCY: ' 16 ',
  });
  assert.equal(config.region, 'westeurope');
  assert.equal(config.managedIdentityClientId, undefined);
  assert.equal(config.uploadConcurrency, 16);
});

test('a value that only mentions a Key Vault reference is a value, not an unresolved reference', () => {
  const config = loadConfig({ ...BASE, ...NOTIFY, BASM_NOTIFY_GITHUB_TOKEN: 'ghp@Microsoft.KeyVault(x)' });
  assert.equal(config.notify?.token.reveal(), 'ghp@Microsoft.KeyVault(x)');
  assert.deepEqual(config.warnings, []);
});

test('two unresolved Key Vault references give one warning each', () => {
  const reference = '@microsoft.keyvault(SecretUri=https://kv.vault.azure.net/secrets/x)';
  const config = loadConfig({ ...BASE, AZURE_MANAGED_IDENTITY_ID: reference, BASM_GALLERY_OFFER: reference });
  assert.deepEqual(
    config.warnings.map((w) => w.split(':')[0]),
    ['AZURE_MANAGED_IDENTITY_ID', 'BASM_GALLERY_OFFER'],
  );
  assert.equal(config.managedIdentityClientId, undefined);
  assert.deepEqual(config.gallery, { publisher: 'bosh' });
});

test('the GitHub token shows as [redacted] in JSON, util.inspect and string conversion', () => {
  const token = loadConfig({ ...BASE, ...NOTIFY }).notify?.token;
  assert.equal(String(token), '[redacted]');
  assert.equal(JSON.stringify({ token }), '{"token":"[redacted]"}');
  assert.equal(inspect(token), '[redacted]');
});

test('the gallery naming overrides and a managed identity are taken as given', () => {
  const config = loadConfig({
    ...BASE,
    AZURE_MANAGED_IDENTITY_ID: 'AAAAAAAA-bbbb-4ccc-8ddd-eeeeeeeeeeee',
    BASM_GALLERY_PUBLISHER: 'Canonical-bosh',
    BASM_GALLERY_OFFER: 'ubuntu.jammy',
    BASM_GALLERY_SKU: 'g',
    BASM_GALLERY_IMAGE_NAME: 'jammy-gen1_x',
  });
  assert.equal(config.managedIdentityClientId, 'AAAAAAAA-bbbb-4ccc-8ddd-eeeeeeeeeeee');
  assert.deepEqual(config.gallery, {
    publisher: 'Canonical-bosh',
    offer: 'ubuntu.jammy',
    sku: 'g',
    imageName: 'jammy-gen1_x',
  });
});

test('names and ids are matched whole, never by a valid part', () => {
  const refused: Array<[string, string]> = [
    ['AZURE_SUBSCRIPTION_ID', 'x11111111-2222-4333-8444-555555555555'],
    ['AZURE_SUBSCRIPTION_ID', '11111111-2222-4333-8444-555555555555x'],
    ['AZURE_STORAGE_ACCOUNT_NAME', 'a'.repeat(25)],
    ['AZURE_STORAGE_ACCOUNT_NAME', 'stemcell-vhds'],
    ['BASM_STEMCELL_SERIES', 'jammy-'],
    ['BASM_STEMCELL_SERIES', '-jammy'],
    ['BASM_GALLERY_PUBLISHER', 'bosh_'],
    ['BASM_GALLERY_PUBLISHER', '_bosh'],
    ['BASM_GALLERY_PUBLISHER', 'b'.repeat(81)],
  ];
  for (const [name, value] of refused) assert.deepEqual(problems({ ...BASE, [name]: value }), [name], value);
  const notifyRefused: Array<[string, string]> = [
    ['BASM_NOTIFY_GITHUB_OWNER', 'org/x'],
    ['BASM_NOTIFY_GITHUB_OWNER', 'x/org'],
    ['BASM_NOTIFY_GITHUB_WORKFLOW', 'x/stemcell.yml'],
    ['BASM_NOTIFY_GITHUB_WORKFLOW', 'stemcell.yml.bak'],
    ['BASM_NOTIFY_GITHUB_WORKFLOW', '12a'],
    ['BASM_NOTIFY_GITHUB_REF', 'feature branch'],
    ['BASM_NOTIFY_GITHUB_REF', 'main~1'],
  ];
  for (const [name, value] of notifyRefused) {
    assert.deepEqual(problems({ ...BASE, ...NOTIFY, [name]: value }), [name], value);
  }
  const accepted: Array<[string, string]> = [
    ['BASM_STEMCELL_SERIES', 'a'],
    ['BASM_STEMCELL_SERIES', 'b'.repeat(80)],
    ['BASM_GALLERY_PUBLISHER', 'b'],
    ['BASM_GALLERY_PUBLISHER', 'b'.repeat(80)],
    ['BASM_NOTIFY_GITHUB_WORKFLOW', '161335'],
    ['BASM_NOTIFY_GITHUB_WORKFLOW', 'stemcell.yaml'],
    ['BASM_NOTIFY_GITHUB_REF', 'release/v1.2'],
  ];
  for (const [name, value] of accepted)
    assert.doesNotThrow(() => loadConfig({ ...BASE, ...NOTIFY, [name]: value }), value);
});

test('a trailing slash of an endpoint is dropped; a query, fragment or user info is refused', () => {
  const config = loadConfig({ ...BASE, BASM_BOSHIO_URL: 'https://bosh.example/mirror//' });
  assert.equal(config.boshioUrl, 'https://bosh.example/mirror');
  for (const url of [
    'https://bosh.example/?q=1',
    'https://bosh.example/#x',
    'https://user@bosh.example/',
    'https://:pw@bosh.example/',
  ]) {
    assert.throws(
      () => loadConfig({ ...BASE, BASM_BOSHIO_URL: url }),
      /BASM_BOSHIO_URL: "https:\/\/bosh\.example" must not carry a query, fragment or credentials/,
      url,
    );
  }
});

test('notifications are on only with a token and all four GitHub settings', () => {
  assert.ok(loadConfig({ ...BASE, ...NOTIFY }).notify);
  for (const name of [
    'BASM_NOTIFY_GITHUB_OWNER',
    'BASM_NOTIFY_GITHUB_REPO',
    'BASM_NOTIFY_GITHUB_WORKFLOW',
    'BASM_NOTIFY_GITHUB_REF',
  ]) {
    assert.deepEqual(problems({ ...BASE, ...NOTIFY, [name]: '' }), [name]);
  }
  for (const name of [
    'BASM_NOTIFY_GITHUB_OWNER',
    'BASM_NOTIFY_GITHUB_REPO',
    'BASM_NOTIFY_GITHUB_WORKFLOW',
    'BASM_NOTIFY_GITHUB_REF',
  ]) {
    const config = loadConfig({ ...BASE, [name]: NOTIFY[name as keyof typeof NOTIFY] });
    assert.equal(config.notify, undefined);
    assert.deepEqual(config.warnings, [
      'BASM_NOTIFY_GITHUB_* are set but BASM_NOTIFY_GITHUB_TOKEN is not: notifications are off',
    ]);
  }
});

test('the image definition name may be set for a single series', () => {
  assert.equal(loadConfig({ ...BASE, BASM_GALLERY_IMAGE_NAME: 'img' }).gallery.imageName, 'img');
});

test('the storage account id names the subscription, resource group and account', () => {
  assert.equal(
    storageAccountId(loadConfig(BASE)),
    '/subscriptions/11111111-2222-4333-8444-555555555555/resourceGroups/rg-stemcells' +
      '/providers/Microsoft.Storage/storageAccounts/stemcellvhds',
  );
});

test('a refused endpoint is shown without its trailing slashes', () => {
  assert.throws(
    () => loadConfig({ ...BASE, BASM_BOSHIO_URL: 'https://bosh.example/api//?q=1' }),
    /BASM_BOSHIO_URL: "https:\/\/bosh\.example\/api" must not carry/,
  );
});

test('replication defaults: the gallery region with one Standard_LRS replica, no end of life', () => {
  const config = loadConfig(BASE);
  assert.deepEqual(config.targetRegions, [{ name: 'westeurope', regionalReplicaCount: 1 }]);
  assert.equal(config.storageAccountType, 'Standard_LRS');
  assert.equal(config.endOfLifeDays, undefined);
});

test('BASM_TARGET_REGIONS, BASM_STORAGE_ACCOUNT_TYPE and BASM_END_OF_LIFE_DAYS are read as given', () => {
  const config = loadConfig({
    ...BASE,
    BASM_TARGET_REGIONS: ' West Europe = 2 , eastus ',
    BASM_STORAGE_ACCOUNT_TYPE: 'Standard_ZRS',
    BASM_END_OF_LIFE_DAYS: '365',
  });
  assert.deepEqual(config.targetRegions, [
    { name: 'westeurope', regionalReplicaCount: 2 },
    { name: 'eastus', regionalReplicaCount: 1 },
  ]);
  assert.equal(config.storageAccountType, 'Standard_ZRS');
  assert.equal(config.endOfLifeDays, 365);
});

test('fault: bad replication settings are each named with what they expect, in one error', () => {
  assert.throws(
    () =>
      loadConfig({
        ...BASE,
        BASM_TARGET_REGIONS: 'eastus=2',
        BASM_STORAGE_ACCOUNT_TYPE: 'Premium_ZRS',
        BASM_END_OF_LIFE_DAYS: '0',
      }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(
        error.problems.map((p) => p.name),
        ['BASM_TARGET_REGIONS', 'BASM_STORAGE_ACCOUNT_TYPE', 'BASM_END_OF_LIFE_DAYS'],
      );
      assert.match(
        error.message,
        /BASM_TARGET_REGIONS: must include AZURE_REGION westeurope, the gallery's region/,
      );
      assert.match(
        error.message,
        /BASM_STORAGE_ACCOUNT_TYPE: "Premium_ZRS" is not valid; expected Standard_LRS, Standard_ZRS, Premium_LRS/,
      );
      assert.match(
        error.message,
        /BASM_END_OF_LIFE_DAYS: "0" is not valid; expected a whole number from 1 to 36500/,
      );
      return true;
    },
  );
});

test('retention and the skip list are off by default: keep all, skip none, keep the source blobs', () => {
  const config = loadConfig(BASE);
  assert.equal(config.keepVersions, 0);
  assert.deepEqual(config.skipVersions, []);
  assert.equal(config.deleteSourceBlob, false);
});

test('BASM_SKIP_VERSIONS is a comma-separated list of stemcell versions, spaces and empty entries ignored', () => {
  const config = loadConfig({
    ...BASE,
    BASM_SKIP_VERSIONS: '1.918, 1.926,,',
    BASM_KEEP_VERSIONS: '5',
    BASM_DELETE_SOURCE_BLOB: 'TRUE',
  });
  assert.deepEqual(config.skipVersions, ['1.918', '1.926']);
  assert.equal(config.keepVersions, 5);
  assert.equal(config.deleteSourceBlob, true);
});

test('fault: a bad skip list, keep count or delete flag is one error naming each setting and what it expects', () => {
  let error: unknown;
  try {
    loadConfig({
      ...BASE,
      BASM_SKIP_VERSIONS: '1.918,latest,v1.926',
      BASM_KEEP_VERSIONS: '-1',
      BASM_DELETE_SOURCE_BLOB: 'yes',
    });
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(
    error.problems.map((p) => p.name),
    ['BASM_SKIP_VERSIONS', 'BASM_KEEP_VERSIONS', 'BASM_DELETE_SOURCE_BLOB'],
  );
  assert.match(
    error.message,
    /BASM_SKIP_VERSIONS: "latest", "v1\.926" are not stemcell versions; expected a comma-separated list of bosh\.io versions such as 1\.918,1\.926/,
  );
  assert.match(
    error.message,
    /BASM_KEEP_VERSIONS: "-1" is not valid; expected a whole number from 0 to 1000/,
  );
  assert.match(error.message, /BASM_DELETE_SOURCE_BLOB: "yes" is not valid; expected true or false/);
});
