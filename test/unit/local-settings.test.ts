/**
 * local.settings.json.template: what `func start` reads once copied. Its values must be valid settings (so the
 * copy starts), and its endpoints must not resolve, so an unedited copy cannot reach a real resource.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.js';

// Compiled to dist/test/unit/: the repository root is three levels up.
const template = fileURLToPath(new URL('../../../local.settings.json.template', import.meta.url));
const values = (JSON.parse(readFileSync(template, 'utf8')) as { Values: Record<string, string> }).Values;

test('the template holds valid settings', () => {
  const config = loadConfig(values);
  assert.equal(config.adoptUntagged, false);
});

test('the template reaches no real Azure resource: its endpoints are under .invalid, its subscription is the nil GUID', () => {
  const config = loadConfig(values);
  assert.equal(config.subscriptionId, '00000000-0000-0000-0000-000000000000');
  for (const url of [config.storageBlobEndpoint, config.resourceManagerEndpoint]) {
    assert.match(new URL(url).hostname, /\.invalid$/, url);
  }
  assert.equal(values['BASM_NOTIFY_GITHUB_TOKEN'], '', 'no notification is sent');
});

test('the Functions host storage is the local emulator (Azurite with Blob, Queue and Table)', () => {
  assert.equal(values['AzureWebJobsStorage'], 'UseDevelopmentStorage=true');
});
