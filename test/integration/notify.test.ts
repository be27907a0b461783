/**
 * notifyStemcellPublished against an HTTPS fake of GitHub's workflow-dispatch endpoint, with the real Octokit.
 * Run with NODE_EXTRA_CA_CERTS=.tmp/tls/ca.pem (after `node dist/test/support/tls.js`).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inspect } from 'node:util';
import { Secret } from '../../src/config.js';
import type { NotifySettings } from '../../src/config.js';
import { NotifyError, notifyStemcellPublished } from '../../src/notify.js';
import type { StemcellPublished } from '../../src/notify.js';
import { startFakeGitHub } from '../support/fake-github.js';
import type { FakeGitHub } from '../support/fake-github.js';

const token = 'ghp_notifytest0123456789abcdefghijklmnop';
const inputs = [
  'gallery_name',
  'gallery_image_name',
  'gallery_image_version',
  'gallery_subscription_id',
  'gallery_resource_group',
];
const published: StemcellPublished = {
  galleryName: 'stemcells',
  imageName: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
  imageVersion: '1.1364.0',
  subscriptionId: '00000000-0000-4000-8000-0000000000e5',
  resourceGroup: 'rg-stemcells',
};

let github: FakeGitHub;

before(async () => {
  github = await startFakeGitHub({
    token,
    workflows: [{ owner: 'acme', repo: 'platform', workflow: 'stemcell-published.yml', inputs }],
  });
});

after(async () => {
  await github?.stop();
});

function settings(
  overrides: Partial<Omit<NotifySettings, 'token'>> & { token?: string } = {},
): NotifySettings {
  return {
    apiUrl: github.url,
    owner: 'acme',
    repo: 'platform',
    workflow: 'stemcell-published.yml',
    ref: 'main',
    ...overrides,
    token: new Secret(overrides.token ?? token),
  };
}

async function rejection(promise: Promise<void>): Promise<NotifyError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof NotifyError, `expected a NotifyError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the notification to fail');
}

test('a notification dispatches the workflow once with exactly the five gallery inputs and the ref', async () => {
  const before = github.dispatches.length;
  await notifyStemcellPublished(settings(), published);
  assert.deepEqual(github.dispatches.slice(before), [
    {
      owner: 'acme',
      repo: 'platform',
      workflow: 'stemcell-published.yml',
      ref: 'main',
      inputs: {
        gallery_name: 'stemcells',
        gallery_image_name: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
        gallery_image_version: '1.1364.0',
        gallery_subscription_id: '00000000-0000-4000-8000-0000000000e5',
        gallery_resource_group: 'rg-stemcells',
      },
    },
  ]);
});

test('the token travels only in the Authorization header', async () => {
  const before = github.authorizations.length;
  await notifyStemcellPublished(settings(), published);
  assert.deepEqual(github.authorizations.slice(before), [`token ${token}`]);
});

test('an unknown workflow is a permanent NotifyError with status 404 that names the workflow', async () => {
  const error = await rejection(notifyStemcellPublished(settings({ workflow: 'missing.yml' }), published));
  assert.deepEqual([error.status, error.transient], [404, false]);
  assert.match(error.message, /missing\.yml of acme\/platform/);
  assert.match(error.message, /Not Found/);
});

test("a rejected token is a permanent NotifyError with status 401 and GitHub's message", async () => {
  const error = await rejection(
    notifyStemcellPublished(settings({ token: 'ghp_wrongtoken000000000000000000000000' }), published),
  );
  assert.deepEqual([error.status, error.transient], [401, false]);
  assert.match(error.message, /Bad credentials/);
});

test('a failed notification never shows the token', async () => {
  const secret = 'ghp_wrongtoken111111111111111111111111';
  const error = await rejection(notifyStemcellPublished(settings({ token: secret }), published));
  const everything = [
    error.message,
    String(error.stack),
    JSON.stringify(error),
    inspect(error, { depth: 10 }),
  ].join('\n');
  assert.equal(everything.includes(secret), false);
});

test('an unreachable GitHub is a transient NotifyError', async () => {
  const error = await rejection(
    notifyStemcellPublished(settings({ apiUrl: 'https://127.0.0.1:1' }), published),
  );
  assert.equal(error.transient, true);
});
