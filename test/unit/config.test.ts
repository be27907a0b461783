import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';

const BASE = {
  AZURE_SUBSCRIPTION_ID: '11111111-2222-4333-8444-555555555555',
  AZURE_RESOURCE_GROUP: 'rg-stemcells',
  AZURE_REGION: 'westeurope',
  AZURE_STORAGE_ACCOUNT_NAME: 'stemcellvhds',
  AZURE_GALLERY_NAME: 'bosh_stemcells',
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

test('the minimal settings give the documented defaults', () => {
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
});

test('one error lists every offending variable and what it expects', () => {
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
