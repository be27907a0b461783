/**
 * The credential's answer when nobody is signed in: one line to act on, the chain's answers kept apart.
 * The real DefaultAzureCredential runs here, in an environment where none of its sources is available.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AzureSignInError, createAzureCredential, signInErrorOf } from '../../src/credentials.js';
import { galleryError } from '../../src/gallery-error.js';

const NOT_SIGNED_IN = 'not signed in to Azure: run `az login` (or set AZURE_MANAGED_IDENTITY_ID in Azure)';

/** No Azure sign-in source: no identity endpoint, no service principal, no az/azd/pwsh on PATH. */
function withoutAzureSignIn<T>(work: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  for (const name of Object.keys(process.env)) {
    if (/^(AZURE_|IDENTITY_|MSI_)/.test(name)) delete process.env[name];
  }
  process.env.PATH = '/nonexistent';
  return work().finally(() => {
    for (const name of Object.keys(process.env)) delete process.env[name];
    Object.assign(process.env, saved);
  });
}

test('no Azure credential at all: one line that says to run az login, the chain kept in details', async () => {
  const error = await withoutAzureSignIn(() =>
    createAzureCredential()
      .getToken('https://management.azure.com/.default')
      .then(
        () => assert.fail('a token without any credential'),
        (e: unknown) => e,
      ),
  );
  assert.ok(error instanceof AzureSignInError, String(error));
  assert.equal(error.message, NOT_SIGNED_IN);
  assert.match(error.details, /EnvironmentCredential/);
  assert.match(error.details, /Azure CLI/);
});

test('a wrapped sign-in error stays one line through the gallery client and is found in the cause chain', () => {
  const signIn = new AzureSignInError(NOT_SIGNED_IN, 'details');
  const wrapped = galleryError(signIn, 'Listing the image versions of series s in gallery g');
  assert.equal(wrapped.message, NOT_SIGNED_IN);
  assert.equal(wrapped.transient, false);
  assert.equal(signInErrorOf(wrapped), signIn);
  assert.equal(signInErrorOf(new Error('other')), undefined);
});
