/**
 * Secrets stay out of everything a person or another system can read: a signed tarball URL's query string
 * and the GitHub token never reach a log line, console output, custom status, result, error, gallery tag or
 * blob metadata, even when the download or GitHub fails and a server echoes what it was sent. The workflow
 * runs in this process (the CLI's engine, real steps) against the local services.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { VHD_CONTAINER, loadConfig } from '../../src/config.js';
import { InProcessRunner } from '../../src/in-process-runner.js';
import { createMirrorServices } from '../../src/services.js';
import { mirrorSteps } from '../../src/steps.js';
import type { SeriesResult } from '../../src/workflow.js';
import { startHttpsServer, type RunningHttpsServer } from '../support/https-server.js';
import { GITHUB_TOKEN, startLocalAzure, type LocalAzure } from '../support/local-azure.js';
import { buildStemcellFixture } from '../support/stemcell-fixture.js';

const SIGNED_SERIES = 'bosh-azure-hyperv-ubuntu-signed';
const FAILING_SERIES = 'bosh-azure-hyperv-ubuntu-unservable';
const SIGNATURE = '5ecre7519a7ure0f7he8ucke7';
const URL_QUERY = `X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=mirror%40example&X-Goog-Signature=${SIGNATURE}`;
/** What no output may contain: the token, the query's signature, and any part of the query at all. */
const SECRETS = [GITHUB_TOKEN, SIGNATURE, 'X-Goog-', 'GOOG4'];

let local: LocalAzure;
let echoingGitHub: RunningHttpsServer;
const gitHubAnswers: number[] = [];

/** A GitHub (or a proxy before it) that fails and echoes the request's Authorization header in its answer. */
function echoAuthorization(req: IncomingMessage, res: ServerResponse): void {
  const status = gitHubAnswers.shift() ?? 502;
  const body = JSON.stringify({
    message: `upstream refused the request with Authorization: ${req.headers.authorization ?? ''}`,
    documentation_url: 'https://docs.github.com/rest',
  });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

before(async () => {
  local = await startLocalAzure({ pollsUntilDone: 1 });
  // The managed-identity credential reads the endpoint from this process's environment.
  Object.assign(process.env, local.env);
  echoingGitHub = await startHttpsServer(echoAuthorization);
  for (const [series, version, seed] of [
    [SIGNED_SERIES, '3.1', 31],
    [FAILING_SERIES, '3.2', 32],
  ] as const) {
    const fixture = await buildStemcellFixture({ series, version, seed });
    local.boshio.publish(series, { version, tarball: fixture.tarball, urlQuery: URL_QUERY });
  }
});
after(async () => {
  await echoingGitHub?.stop();
  await local?.stop();
});

interface Captured {
  /** Every log line, console line, custom status, result and thrown error, as text. */
  outputs: string[];
  result?: SeriesResult;
}

/** One run of a series with `githubUrl` as the GitHub API, capturing everything it shows. */
async function run(series: string, githubUrl: string): Promise<Captured> {
  const workDir = join(local.workDir, series);
  await mkdir(workDir, { recursive: true });
  const config = loadConfig({
    ...local.env,
    BASM_MOUNTED_DIRECTORY: workDir,
    BASM_STEMCELL_SERIES: series,
    BASM_NOTIFY_GITHUB_API_URL: githubUrl,
  });
  const captured: Captured = { outputs: [] };
  const record = (text: string): void => void captured.outputs.push(text);
  const log = { info: record, warn: record };
  const consoleMethods = ['log', 'info', 'warn', 'error', 'debug'] as const;
  const originals = consoleMethods.map((name) => Object.getOwnPropertyDescriptor(console, name));
  for (const name of consoleMethods) {
    console[name] = (...args: unknown[]) => record(args.map(String).join(' '));
  }
  try {
    const runner = new InProcessRunner({
      steps: mirrorSteps(createMirrorServices(config, log, (event) => record(JSON.stringify(event)))),
      log,
      onStatus: (status) => record(JSON.stringify(status)),
      retryIntervalScale: 0,
    });
    captured.result = await runner.runSeries({ series });
    record(JSON.stringify(captured.result));
  } catch (error) {
    record(error instanceof Error ? `${error.message}\n${error.stack ?? ''}` : String(error));
  } finally {
    consoleMethods.forEach((name, index) => Object.defineProperty(console, name, originals[index] ?? {}));
  }
  return captured;
}

function assertNoSecret(texts: string[], where: string): void {
  for (const text of texts) {
    for (const secret of SECRETS) {
      assert.ok(!text.includes(secret), `${where} shows ${secret}: ${text}`);
    }
  }
}

/** Everything the mirror left in Azure: ARM requests and versions, and the metadata of every blob. */
async function persisted(): Promise<string[]> {
  const service = new BlobServiceClient(local.azurite.blobEndpoint, local.azurite.sharedKeyCredential);
  const metadata: string[] = [];
  for await (const blob of service
    .getContainerClient(VHD_CONTAINER)
    .listBlobsFlat({ includeMetadata: true })) {
    metadata.push(JSON.stringify(blob.metadata ?? {}));
  }
  return [
    ...metadata,
    JSON.stringify([...local.arm.imageVersions.values()]),
    JSON.stringify(local.arm.requests.map((request) => request.body ?? null)),
  ];
}

test('fault: GitHub failing and echoing the Authorization header: no token and no signed query in any output', async () => {
  gitHubAnswers.push(502, 500, 401);

  const captured = await run(SIGNED_SERIES, echoingGitHub.url);

  // The run got as far as notifying, and the failure reached the result: there was something to leak.
  const [result] = captured.result?.results ?? [];
  assert.equal(result?.action, 'failed', JSON.stringify(captured.result));
  assert.equal(result?.step, 'notify');
  assert.match(result?.error ?? '', /Authorization: token \[redacted\]/);
  assert.equal(gitHubAnswers.length, 0, 'GitHub was not asked three times');
  assert.ok(
    captured.outputs.some((line) => line.includes('/d/stemcells/bosh-azure-hyperv-ubuntu-signed/3.1/')),
    'the download was never logged',
  );
  assertNoSecret(captured.outputs, 'the run');
  assertNoSecret(await persisted(), 'Azure');
});

test('fault: GitHub unreachable: no token in any output', async () => {
  // The version exists now without its notification: this run only notifies, and GitHub is not there.
  const captured = await run(SIGNED_SERIES, 'https://127.0.0.1:9');

  const [result] = captured.result?.results ?? [];
  assert.equal(result?.action, 'failed', JSON.stringify(captured.result));
  assert.equal(result?.step, 'notify');
  assertNoSecret(captured.outputs, 'the run');
});

test('fault: a signed download that fails: its query string is in no error, status or result', async () => {
  local.boshio.faults.failDownloadsWithStatus = 403;
  try {
    const captured = await run(FAILING_SERIES, echoingGitHub.url);

    const [result] = captured.result?.results ?? [];
    assert.equal(result?.action, 'failed', JSON.stringify(captured.result));
    assert.equal(result?.step, 'downloadAndExtract');
    assert.match(result?.error ?? '', /HTTP 403/);
    assertNoSecret(captured.outputs, 'the run');
  } finally {
    delete local.boshio.faults.failDownloadsWithStatus;
  }
});
