import { ManagedIdentityCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';
import { Octokit } from '@octokit/rest';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startAzurite } from '../support/azurite.js';
import type { AzuriteBlob } from '../support/azurite.js';
import { startFakeBoshio } from '../support/fake-boshio.js';
import type { FakeBoshio } from '../support/fake-boshio.js';
import { startFakeGitHub } from '../support/fake-github.js';
import type { FakeGitHub } from '../support/fake-github.js';
import { decodeJwt, startIdentityEndpoint } from '../support/identity.js';
import type { IdentityEndpoint } from '../support/identity.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const series = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

describe('managed identity and Azurite', () => {
  let identity: IdentityEndpoint;
  let azurite: AzuriteBlob;

  before(async () => {
    identity = await startIdentityEndpoint();
    azurite = await startAzurite();
    // msal-node fixes the managed identity source at the first token request of the process.
    Object.assign(process.env, identity.env());
  });
  after(async () => {
    await Promise.all([identity?.stop(), azurite?.stop()]);
  });

  test('ManagedIdentityCredential gets a storage token from the local endpoint', async () => {
    const token = await new ManagedIdentityCredential().getToken('https://storage.azure.com/.default');

    const claims = decodeJwt(token.token);
    assert.equal(claims.aud, 'https://storage.azure.com');
    assert.equal(claims.iss, `https://sts.windows.net/${identity.tenantId}/`);
    assert.equal(claims.oid, identity.principalId);
    assert.ok(token.expiresOnTimestamp > Date.now() + 50 * 60 * 1000, 'token should live about an hour');
    assert.deepEqual(identity.requests.at(-1), { resource: 'https://storage.azure.com' });
  });

  test('a page blob written with a managed identity token reads back through the shared key', async () => {
    const viaToken = new BlobServiceClient(azurite.blobEndpoint, new ManagedIdentityCredential());
    const viaKey = new BlobServiceClient(azurite.blobEndpoint, azurite.sharedKeyCredential);
    const page = randomBytes(512);

    const container = viaToken.getContainerClient('harness');
    await container.create();
    const blob = container.getPageBlobClient('disk.vhd');
    await blob.create(1024);
    await blob.uploadPages(page, 512, 512);

    const read = await viaKey.getContainerClient('harness').getPageBlobClient('disk.vhd').downloadToBuffer();
    assert.deepEqual(read, Buffer.concat([Buffer.alloc(512), page]));
  });

  test('a wrong IDENTITY_HEADER makes ManagedIdentityCredential fail', async () => {
    // In a fresh process, because msal-node caches the identity source and its tokens per process.
    const script = [
      "import { ManagedIdentityCredential } from '@azure/identity';",
      "try { await new ManagedIdentityCredential().getToken('https://storage.azure.com/.default'); }",
      'catch (error) { console.log(error.message); process.exit(3); }',
    ].join('\n');
    const answered = identity.requests.length;

    const result = await run(process.execPath, ['--input-type=module', '--eval', script], {
      ...identity.env(),
      IDENTITY_HEADER: 'not-the-secret',
    });

    assert.equal(result.code, 3, `expected getToken to fail, got:\n${result.output}`);
    assert.match(result.output, /X-IDENTITY-HEADER is missing or does not match/);
    assert.equal(identity.requests.length, answered);
  });

  test('the identity endpoint rejects an unsupported api-version with 400', async () => {
    const url = `${identity.endpoint}?api-version=2017-09-01&resource=https://storage.azure.com`;
    const response = await fetch(url, { headers: { 'X-IDENTITY-HEADER': identity.header } });

    assert.equal(response.status, 400);
  });

  test('the identity endpoint gives a user-assigned identity its client id as appid', async () => {
    const url = `${identity.endpoint}?api-version=2019-08-01&resource=https://management.azure.com/&client_id=abc`;
    const response = await fetch(url, { headers: { 'X-IDENTITY-HEADER': identity.header } });
    const body = (await response.json()) as { access_token: string; client_id: string; expires_on: string };

    assert.equal(body.client_id, 'abc');
    assert.equal(decodeJwt(body.access_token).appid, 'abc');
    assert.match(body.expires_on, /^\d+$/);
    assert.deepEqual(identity.requests.at(-1), {
      resource: 'https://management.azure.com/',
      clientId: 'abc',
    });
  });
});

describe('fake bosh.io', () => {
  let boshio: FakeBoshio;
  const tarball = randomBytes(64 * 1024);

  before(async () => {
    boshio = await startFakeBoshio();
    for (const version of ['1.9', '1.100', '1.10']) boshio.publish(series, { version, tarball });
  });
  after(() => boshio?.stop());

  const bucketUrl = (version: string): string =>
    `${boshio.url}/bucket/bosh-stemcell-${version}-azure-hyperv-ubuntu-jammy-go_agent.tgz`;

  test('lists versions newest first, compared numerically', async () => {
    const entries = await listSeries(boshio.url, series);

    assert.deepEqual(
      entries.map((entry) => entry.version),
      ['1.100', '1.10', '1.9'],
    );
  });

  test('lists the real digests and size of a published tarball', async () => {
    const [entry] = await listSeries(boshio.url, series);

    assert.deepEqual(entry?.regular, {
      url: `${boshio.url}/d/stemcells/${series}/1.100/bosh-stemcell-1.100-azure-hyperv-ubuntu-jammy-go_agent.tgz`,
      size: tarball.length,
      md5: '',
      sha1: createHash('sha1').update(tarball).digest('hex'),
      sha256: createHash('sha256').update(tarball).digest('hex'),
    });
  });

  test('lists at most 40 versions unless all=1', async () => {
    const many = 'bosh-azure-hyperv-ubuntu-noble';
    for (let minor = 1; minor <= 45; minor++)
      boshio.publish(many, { version: `1.${minor}`, tarball: Buffer.alloc(1) });

    assert.equal((await listSeries(boshio.url, many)).length, 40);
    assert.equal((await listSeries(boshio.url, many, '?all=1')).length, 45);
  });

  test('answers an unknown series with an empty list', async () => {
    assert.deepEqual(await listSeries(boshio.url, 'bosh-azure-hyperv-ubuntu-nowhere'), []);
  });

  test('leaves out a digest published as empty and reports a wrong one as given', async () => {
    const other = 'bosh-azure-hyperv-ubuntu-digests';
    boshio.publish(other, { version: '2.1', tarball, sha1: '', sha256: 'bad' });

    const [entry] = await listSeries(boshio.url, other);

    assert.equal(entry?.regular.sha1, undefined);
    assert.equal(entry?.regular.sha256, 'bad');
  });

  test('answers a series with the raw response set for it', async () => {
    boshio.setSeriesResponse('bosh-broken', { status: 500, body: 'oops', contentType: 'text/plain' });

    const response = await fetch(`${boshio.url}/api/v1/stemcells/bosh-broken`);

    assert.equal(response.status, 500);
    assert.equal(await response.text(), 'oops');
  });

  test('redirects a download URL to the bucket', async () => {
    const [entry] = await listSeries(boshio.url, series);

    const response = await fetch(entry?.regular.url ?? '', { redirect: 'manual' });

    assert.equal(response.status, 302);
    assert.equal(response.headers.get('location'), bucketUrl('1.100'));
  });

  test('serves a Range request with 206 and Content-Range', async () => {
    const response = await fetch(bucketUrl('1.10'), { headers: { range: 'bytes=1000-' } });

    assert.equal(response.status, 206);
    assert.equal(response.headers.get('content-range'), `bytes 1000-${tarball.length - 1}/${tarball.length}`);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), tarball.subarray(1000));
  });

  test('ignores Range when If-Range names another ETag', async () => {
    const response = await fetch(bucketUrl('1.10'), {
      headers: { range: 'bytes=1000-', 'if-range': '"stale"' },
    });

    assert.equal(response.status, 200);
    assert.equal(Buffer.from(await response.arrayBuffer()).length, tarball.length);
  });

  test('streams a tarball published as a file', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'fake-boshio-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'stemcell.tgz');
    const bytes = randomBytes(3 * 1024 * 1024 + 7);
    await writeFile(path, bytes);
    boshio.publish('bosh-azure-hyperv-ubuntu-file', {
      version: '3.1',
      tarball: { path, size: bytes.length },
    });

    const response = await fetch(`${boshio.url}/bucket/bosh-stemcell-3.1-azure-hyperv-ubuntu-file.tgz`);

    assert.deepEqual(Buffer.from(await response.arrayBuffer()), bytes);
  });

  test('truncateDownloadAt cuts every response at that byte', async (t) => {
    boshio.faults.truncateDownloadAt = 5000;
    t.after(() => delete boshio.faults.truncateDownloadAt);

    const first = await download(bucketUrl('1.9'));
    const resumed = await download(bucketUrl('1.9'), { range: 'bytes=2000-' });

    assert.deepEqual([first.complete, first.body.length], [false, 5000]);
    assert.deepEqual([resumed.complete, resumed.body.length], [false, 3000]);
  });

  test('dropConnectionOnceAt cuts one response and lets the Range resume finish', async () => {
    boshio.faults.dropConnectionOnceAt = 40_000;

    const first = await download(bucketUrl('1.9'));
    const resumed = await download(bucketUrl('1.9'), { range: `bytes=${first.body.length}-` });

    assert.deepEqual([first.complete, first.body.length], [false, 40_000]);
    assert.equal(resumed.complete, true);
    assert.deepEqual(Buffer.concat([first.body, resumed.body]), tarball);
  });

  test('failDownloadsWithStatus answers bucket requests with that status', async (t) => {
    boshio.faults.failDownloadsWithStatus = 503;
    t.after(() => delete boshio.faults.failDownloadsWithStatus);

    const response = await fetch(bucketUrl('1.9'));

    assert.equal(response.status, 503);
  });
});

describe('fake GitHub', () => {
  const token = 'ghp_harness';
  let github: FakeGitHub;
  let octokit: Octokit;

  before(async () => {
    github = await startFakeGitHub({
      token,
      workflows: [
        {
          owner: 'acme',
          repo: 'stemcells',
          workflow: 'mirror.yml',
          inputs: { series: { required: true }, version: { required: true }, note: { required: false } },
          refs: ['main', 'v2'],
        },
      ],
    });
    octokit = new Octokit({ auth: token, baseUrl: github.url, log: quietLog });
  });
  after(() => github?.stop());

  const dispatch = (inputs: Record<string, string>, client = octokit, ref = 'main') =>
    client.rest.actions.createWorkflowDispatch({
      owner: 'acme',
      repo: 'stemcells',
      workflow_id: 'mirror.yml',
      ref,
      inputs,
    });

  test('accepts a valid Octokit dispatch and records it', async () => {
    const response = await dispatch({ series, version: '1.100' });

    assert.equal(response.status, 204);
    assert.deepEqual(github.dispatches.at(-1), {
      owner: 'acme',
      repo: 'stemcells',
      workflow: 'mirror.yml',
      ref: 'main',
      inputs: { series, version: '1.100' },
    });
    assert.equal(github.authorizations.at(-1), `token ${token}`);
  });

  test('rejects an undeclared input with 422', async () => {
    const dispatched = github.dispatches.length;

    await assert.rejects(dispatch({ series, version: '1.100', extra: 'x' }), {
      status: 422,
      message: /Unexpected inputs provided: \["extra"\]/,
    });
    assert.equal(github.dispatches.length, dispatched);
  });

  test('rejects a missing declared input with 422', async () => {
    await assert.rejects(dispatch({ series }), {
      status: 422,
      message: /Required input 'version' not provided/,
    });
  });

  test('accepts a dispatch without an optional input, and with it', async () => {
    await dispatch({ series, version: '1.100' });
    await dispatch({ series, version: '1.100', note: 'by hand' });

    assert.deepEqual(
      github.dispatches.slice(-2).map((recorded) => recorded.inputs),
      [
        { series, version: '1.100' },
        { series, version: '1.100', note: 'by hand' },
      ],
    );
  });

  test('accepts a declared ref by name or as refs/heads/ or refs/tags/', async () => {
    await dispatch({ series, version: '1' }, octokit, 'v2');
    await dispatch({ series, version: '1' }, octokit, 'refs/heads/main');
    await dispatch({ series, version: '1' }, octokit, 'refs/tags/v2');

    assert.deepEqual(
      github.dispatches.slice(-3).map((recorded) => recorded.ref),
      ['v2', 'refs/heads/main', 'refs/tags/v2'],
    );
  });

  test('rejects an unknown ref or a commit SHA with 422 No ref found', async () => {
    const dispatched = github.dispatches.length;
    const sha = '5cc96e7fb16040505d4c8e779d0ab5980988fe7a';

    await assert.rejects(dispatch({ series, version: '1' }, octokit, 'develop'), {
      status: 422,
      message: /No ref found for: develop/,
    });
    await assert.rejects(dispatch({ series, version: '1' }, octokit, sha), {
      status: 422,
      message: new RegExp(`No ref found for: ${sha}`),
    });
    assert.equal(github.dispatches.length, dispatched);
  });

  test('defaults the declared refs to main', async () => {
    const plain = await startFakeGitHub({
      token,
      workflows: [{ owner: 'acme', repo: 'stemcells', workflow: 'mirror.yml', inputs: {} }],
    });
    try {
      const client = new Octokit({ auth: token, baseUrl: plain.url, log: quietLog });
      const send = (ref: string) =>
        client.rest.actions.createWorkflowDispatch({
          owner: 'acme',
          repo: 'stemcells',
          workflow_id: 'mirror.yml',
          ref,
        });

      assert.equal((await send('main')).status, 204);
      await assert.rejects(send('master'), { status: 422, message: /No ref found for: master/ });
    } finally {
      await plain.stop();
    }
  });

  test('rejects a wrong token with 401 Bad credentials', async () => {
    const stranger = new Octokit({ auth: 'ghp_wrong', baseUrl: github.url, log: quietLog });

    await assert.rejects(dispatch({ series, version: '1' }, stranger), {
      status: 401,
      message: /Bad credentials/,
    });
  });

  test('answers an unknown workflow with 404', async () => {
    const unknown = octokit.rest.actions.createWorkflowDispatch({
      owner: 'acme',
      repo: 'stemcells',
      workflow_id: 'other.yml',
      ref: 'main',
    });

    await assert.rejects(unknown, { status: 404 });
  });

  test('rejects a non-string input value with 422', async () => {
    const response = await fetch(
      `${github.url}/repos/acme/stemcells/actions/workflows/mirror.yml/dispatches`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ ref: 'main', inputs: { series, version: 1.1 } }),
      },
    );

    assert.equal(response.status, 422);
  });

  test('rejects a dispatch without ref with 422', async () => {
    const response = await fetch(
      `${github.url}/repos/acme/stemcells/actions/workflows/mirror.yml/dispatches`,
      {
        method: 'POST',
        headers: { authorization: `token ${token}` },
        body: JSON.stringify({ inputs: { series, version: '1' } }),
      },
    );

    assert.equal(response.status, 422);
  });
});

// Octokit logs every failed request at info level; these failures are the point of the tests.
const quietLog = { debug: () => undefined, info: () => undefined, warn: console.warn, error: console.error };

interface ListedStemcell {
  version: string;
  regular: { url: string; size: number; md5: string; sha1?: string; sha256?: string };
}

async function listSeries(baseUrl: string, name: string, query = ''): Promise<ListedStemcell[]> {
  const response = await fetch(`${baseUrl}/api/v1/stemcells/${name}${query}`);
  assert.equal(response.status, 200);
  return (await response.json()) as ListedStemcell[];
}

/** Reads a response to its end or to the connection's loss, whichever comes first. */
function download(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ complete: boolean; body: Buffer }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', () => undefined); // a cut connection shows as `complete: false` below
        res.on('close', () => resolve({ complete: res.complete, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

function run(
  command: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete childEnv.NODE_TEST_CONTEXT;
    execFile(command, args, { cwd: repoRoot, env: childEnv }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}
