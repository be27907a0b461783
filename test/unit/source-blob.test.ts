/**
 * Where the mirror may send its storage credential to read an untagged version's source blob: a storage
 * account of the cloud it writes to, never a host the version names.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBlobOfThisCloud } from '../../src/source-blob.js';

const PUBLIC = 'https://mirrorvhds.blob.core.windows.net';

test('a blob of any storage account of the same cloud may be read', () => {
  assert.equal(isBlobOfThisCloud('https://oldjobvhds.blob.core.windows.net/vhds/a.vhd', PUBLIC), true);
  assert.equal(isBlobOfThisCloud(`${PUBLIC}/stemcell/a.vhd`, PUBLIC), true);
  assert.equal(
    isBlobOfThisCloud(
      'https://old.blob.core.chinacloudapi.cn/vhds/a.vhd',
      'https://mirror.blob.core.chinacloudapi.cn',
    ),
    true,
  );
});

test('fault: another cloud, another host, http, credentials in the URL or no URL at all are refused', () => {
  for (const url of [
    'https://old.blob.core.chinacloudapi.cn/vhds/a.vhd',
    'https://attacker.example/vhds/a.vhd',
    'https://blob.core.windows.net.attacker.example/vhds/a.vhd',
    'https://a.b.blob.core.windows.net/vhds/a.vhd',
    'https://Too-Long-And-Upper.blob.core.windows.net/vhds/a.vhd',
    'https://old.blob.core.windows.net:8443/vhds/a.vhd',
    'http://old.blob.core.windows.net/vhds/a.vhd',
    'https://user:pass@old.blob.core.windows.net/vhds/a.vhd',
    'not a url',
  ]) {
    assert.equal(isBlobOfThisCloud(url, PUBLIC), false, url);
  }
});

test('an emulator endpoint allows its own host and port only', () => {
  const azurite = 'https://127.0.0.1:10000/devstoreaccount1';
  assert.equal(isBlobOfThisCloud('https://127.0.0.1:10000/devstoreaccount1/vhds/a.vhd', azurite), true);
  assert.equal(isBlobOfThisCloud('https://127.0.0.1:10001/devstoreaccount1/vhds/a.vhd', azurite), false);
  assert.equal(isBlobOfThisCloud('https://localhost:10000/devstoreaccount1/vhds/a.vhd', azurite), false);
});
