/**
 * Every service the mirror talks to, started locally on 127.0.0.1: Azurite Blob (HTTPS, OAuth), a
 * managed-identity token endpoint, and HTTPS fakes of bosh.io, Azure Resource Manager and GitHub.
 * `env` is what the command line needs to run against them, exactly as an operator would set it.
 */

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite, type AzuriteBlob } from './azurite.js';
import { startFakeArm, type FakeArm } from './fake-arm/index.js';
import { startFakeBoshio, type FakeBoshio } from './fake-boshio.js';
import { startFakeGitHub, type FakeGitHub } from './fake-github.js';
import { startIdentityEndpoint, type IdentityEndpoint } from './identity.js';
import {
  buildStemcellFixture,
  type StemcellFixture,
  type StemcellFixtureOptions,
} from './stemcell-fixture.js';
import { ensureTestCertificate } from './tls.js';

export const TEST_SUBSCRIPTION = '00000000-0000-4000-8000-000000000001';
export const TEST_RESOURCE_GROUP = 'rg-stemcells';
export const TEST_GALLERY = 'stemcells';
export const TEST_REGION = 'westeurope';
export const GITHUB_TOKEN = 'ghp_testtoken0123456789abcdefghijklmnopqr';
export const NOTIFY_INPUTS = [
  'gallery_name',
  'gallery_image_name',
  'gallery_image_version',
  'gallery_subscription_id',
  'gallery_resource_group',
];

export interface LocalAzure {
  azurite: AzuriteBlob;
  identity: IdentityEndpoint;
  boshio: FakeBoshio;
  arm: FakeArm;
  github: FakeGitHub;
  /** BASM_MOUNTED_DIRECTORY: the temp storage the runs extract into. */
  workDir: string;
  /** A complete environment for the CLI (no inherited Azure variables). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startLocalAzure(
  options: {
    pollsUntilDone?: number;
    /** See FakeArmOptions.replicationReadsUntilDone. */
    replicationReadsUntilDone?: number;
    notify?: boolean;
    /** Puts something (a fault-injecting proxy) in front of Azurite; its endpoint becomes the account's. */
    frontStorage?: (azuriteBlobEndpoint: string) => Promise<{ blobEndpoint: string; stop(): Promise<void> }>;
  } = {},
): Promise<LocalAzure> {
  const certificate = ensureTestCertificate();
  const stops: Array<() => Promise<void>> = [];
  try {
    const azurite = await startAzurite();
    stops.push(() => azurite.stop());
    let blobEndpoint = azurite.blobEndpoint;
    if (options.frontStorage) {
      const front = await options.frontStorage(azurite.blobEndpoint);
      stops.push(() => front.stop());
      blobEndpoint = front.blobEndpoint;
    }
    const identity = await startIdentityEndpoint();
    stops.push(() => identity.stop());
    const boshio = await startFakeBoshio();
    stops.push(() => boshio.stop());
    const arm = await startFakeArm({
      subscriptionId: TEST_SUBSCRIPTION,
      resourceGroup: TEST_RESOURCE_GROUP,
      galleryName: TEST_GALLERY,
      location: TEST_REGION,
      storage: {
        blobEndpoint,
        accountName: azurite.accountName,
        sharedKeyCredential: azurite.sharedKeyCredential,
      },
      pollsUntilDone: options.pollsUntilDone ?? 2,
      ...(options.replicationReadsUntilDone !== undefined
        ? { replicationReadsUntilDone: options.replicationReadsUntilDone }
        : {}),
      // The CLI and the app get their tokens from this endpoint: the app's identity, with infra's roles only.
      appPrincipalId: identity.principalId,
    });
    stops.push(() => arm.stop());
    const github = await startFakeGitHub({
      token: GITHUB_TOKEN,
      workflows: [
        {
          owner: 'example',
          repo: 'stemcell-consumer',
          workflow: 'stemcell-published.yml',
          inputs: Object.fromEntries(NOTIFY_INPUTS.map((name) => [name, { required: true }])),
          refs: ['main'],
        },
      ],
    });
    stops.push(() => github.stop());
    const workDir = await mkdtemp(join(tmpdir(), 'basm-work-'));
    stops.push(() => rm(workDir, { recursive: true, force: true }));

    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? tmpdir(),
      NODE_EXTRA_CA_CERTS: certificate.caPath,
      ...identity.env(),
      AZURE_SUBSCRIPTION_ID: TEST_SUBSCRIPTION,
      AZURE_RESOURCE_GROUP: TEST_RESOURCE_GROUP,
      AZURE_REGION: TEST_REGION,
      AZURE_STORAGE_ACCOUNT_NAME: azurite.accountName,
      AZURE_STORAGE_BLOB_ENDPOINT: blobEndpoint,
      AZURE_GALLERY_NAME: TEST_GALLERY,
      AZURE_RESOURCE_MANAGER_ENDPOINT: arm.url,
      BASM_BOSHIO_URL: boshio.url,
      BASM_MOUNTED_DIRECTORY: workDir,
      BASM_VERSION_POLL_INTERVAL_SECONDS: '1',
      BASM_HTTP_TIMEOUT_SECONDS: '30',
    };
    if (options.notify !== false) {
      Object.assign(env, {
        BASM_NOTIFY_GITHUB_TOKEN: GITHUB_TOKEN,
        BASM_NOTIFY_GITHUB_API_URL: github.url,
        BASM_NOTIFY_GITHUB_OWNER: 'example',
        BASM_NOTIFY_GITHUB_REPO: 'stemcell-consumer',
        BASM_NOTIFY_GITHUB_WORKFLOW: 'stemcell-published.yml',
        BASM_NOTIFY_GITHUB_REF: 'main',
      });
    }
    return {
      azurite,
      identity,
      boshio,
      arm,
      github,
      workDir,
      env,
      stop: () => stopAll(stops),
    };
  } catch (error) {
    await stopAll(stops);
    throw error;
  }
}

async function stopAll(stops: Array<() => Promise<void>>): Promise<void> {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
}

/** A story's own environment: the local services, and a temp directory no other story uses. */
export interface Story {
  env: Record<string, string>;
  workDir: string;
}

/** The story `name`'s environment, with `settings` over the local services' own. */
export async function storyIn(
  local: LocalAzure,
  name: string,
  settings: Record<string, string> = {},
): Promise<Story> {
  const workDir = join(local.workDir, name);
  await mkdir(workDir, { recursive: true });
  return { env: { ...local.env, BASM_MOUNTED_DIRECTORY: workDir, ...settings }, workDir };
}

/** Builds a stemcell of `series` and `version` and has the bosh.io fake list it. */
export async function publishStemcell(
  local: LocalAzure,
  options: StemcellFixtureOptions & { series: string; version: string },
): Promise<StemcellFixture> {
  const fixture = await buildStemcellFixture(options);
  local.boshio.publish(options.series, { version: options.version, tarball: fixture.tarball });
  return fixture;
}
