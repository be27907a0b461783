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
import { startHttpsServer } from '../support/https-server.js';
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
    workflows: [
      {
        owner: 'acme',
        repo: 'platform',
        workflow: 'stemcell-published.yml',
        inputs: Object.fromEntries(inputs.map((name) => [name, { required: true }])),
        refs: ['main', 'release'],
      },
    ],
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

test('a notification dispatches on the configured ref when the repository has it', async () => {
  const before = github.dispatches.length;
  await notifyStemcellPublished(settings({ ref: 'release' }), published);
  assert.deepEqual(
    github.dispatches.slice(before).map((dispatch) => dispatch.ref),
    ['release'],
  );
});

test("fault: a ref the repository lacks is a permanent NotifyError with status 422 and GitHub's message", async () => {
  const before = github.dispatches.length;
  const error = await rejection(notifyStemcellPublished(settings({ ref: 'no-such-branch' }), published));
  assert.deepEqual([error.status, error.transient], [422, false]);
  assert.match(error.message, /No ref found for: no-such-branch/);
  assert.equal(github.dispatches.length, before);
});

test('the token travels only in the Authorization header', async () => {
  const before = github.authorizations.length;
  await notifyStemcellPublished(settings(), published);
  assert.deepEqual(github.authorizations.slice(before), [`token ${token}`]);
});

test('fault: an unknown workflow is a permanent NotifyError with status 404 that names the workflow', async () => {
  const error = await rejection(notifyStemcellPublished(settings({ workflow: 'missing.yml' }), published));
  assert.deepEqual([error.status, error.transient], [404, false]);
  assert.match(error.message, /missing\.yml of acme\/platform/);
  assert.match(error.message, /Not Found/);
});

test("fault: a rejected token is a permanent NotifyError with status 401 and GitHub's message", async () => {
  const error = await rejection(
    notifyStemcellPublished(settings({ token: 'ghp_wrongtoken000000000000000000000000' }), published),
  );
  assert.deepEqual([error.status, error.transient], [401, false]);
  assert.match(error.message, /Bad credentials/);
});

test('fault: a failed notification never shows the token', async () => {
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

test('fault: an unreachable GitHub is a transient NotifyError', async () => {
  const error = await rejection(
    notifyStemcellPublished(settings({ apiUrl: 'https://127.0.0.1:1' }), published),
  );
  assert.equal(error.transient, true);
});

test(
  'fault: a GitHub that never answers is a transient NotifyError after the timeout',
  { timeout: 20_000 },
  async () => {
    const silent = await startHttpsServer(() => new Promise<void>(() => {}));
    try {
      const started = Date.now();
      const error = await rejection(
        notifyStemcellPublished(settings({ apiUrl: silent.url }), published, { timeoutMs: 200 }),
      );
      assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
      assert.deepEqual([error.status, error.transient], [undefined, true]);
      assert.match(error.message, /stemcell-published\.yml of acme\/platform/);
      assert.match(error.message, /no answer within 200 ms/);
    } finally {
      await silent.stop();
    }
  },
);

/** A GitHub that answers every request with 403, these headers and this message, as its rate limits do. */
async function forbidden(headers: Record<string, string>, message: string) {
  return startHttpsServer((req, res) => {
    req.resume();
    const body = JSON.stringify({ message, documentation_url: 'https://docs.github.com/rest' });
    res.writeHead(403, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  });
}

const rateLimits: Array<[string, Record<string, string>, string]> = [
  [
    'primary (x-ratelimit-remaining: 0)',
    { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1767225600' },
    'API rate limit exceeded for installation ID 1.',
  ],
  [
    'secondary (retry-after)',
    { 'retry-after': '60', 'x-ratelimit-remaining': '4990' },
    'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
  ],
];

for (const [kind, headers, message] of rateLimits) {
  test(`fault: a 403 from GitHub's ${kind} rate limit is transient`, async () => {
    const limited = await forbidden(headers, message);
    try {
      const error = await rejection(notifyStemcellPublished(settings({ apiUrl: limited.url }), published));
      assert.deepEqual([error.status, error.transient], [403, true]);
      assert.match(error.message, /rate limit was hit; it is retried/);
    } finally {
      await limited.stop();
    }
  });
}

test('fault: a 403 without rate-limit signs is a permanent NotifyError about permissions', async () => {
  const denied = await forbidden(
    { 'x-ratelimit-remaining': '4999' },
    'Resource not accessible by personal access token',
  );
  try {
    const error = await rejection(notifyStemcellPublished(settings({ apiUrl: denied.url }), published));
    assert.deepEqual([error.status, error.transient], [403, false]);
    assert.match(error.message, /actions: write/);
  } finally {
    await denied.stop();
  }
});
