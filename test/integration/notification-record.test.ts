import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NotificationRecords } from '../../src/notification-record.js';
import { identityStorage } from '../support/identity-storage.js';

const storage = identityStorage();

function records(): NotificationRecords {
  return new NotificationRecords(storage.newContainer('records'));
}

test('a version without a record has none', async () => {
  assert.equal(await records().find('bosh-azure-hyperv-ubuntu-jammy-go_agent', '1.100.0'), undefined);
});

test('a recorded notification is found again, whatever the spelling of the definition name', async () => {
  const store = records();
  await store.record(
    'Bosh-Azure-Hyperv-Ubuntu-Jammy-Go_Agent',
    '1.100.0',
    '2026-05-04T06:10:00.000Z',
    'too many tags',
  );

  assert.equal(
    await store.find('bosh-azure-hyperv-ubuntu-jammy-go_agent', '1.100.0'),
    '2026-05-04T06:10:00.000Z',
  );
  assert.equal(await store.find('bosh-azure-hyperv-ubuntu-jammy-go_agent', '1.101.0'), undefined);
});

test('recording twice keeps one record with the latest value', async () => {
  const store = records();
  await store.record('jammy', '1.1.0', 'off', 'first');
  await store.record('jammy', '1.1.0', '2026-05-04T06:10:00.000Z', 'second');

  assert.equal(await store.find('jammy', '1.1.0'), '2026-05-04T06:10:00.000Z');
});

test('a forgotten record is gone; forgetting one that never was is fine', async () => {
  const store = records();
  await store.forget('jammy', '1.2.0');
  await store.record('jammy', '1.2.0', 'off', 'too many tags');

  await store.forget('jammy', '1.2.0');

  assert.equal(await store.find('jammy', '1.2.0'), undefined);
});
