/**
 * The per-series start loop that the timer and the HTTP starter share, against an in-memory task hub that
 * behaves as durable-functions' client does (an unknown instance is an Error naming the webhook's 404).
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import {
  startScheduledMirrors,
  startSeriesMirrors,
  type OrchestrationClient,
  type StartLogger,
} from '../../src/starts.js';

const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const NOBLE = 'bosh-azure-hyperv-ubuntu-noble';

const config = loadConfig({
  AZURE_SUBSCRIPTION_ID: '00000000-0000-4000-8000-000000000001',
  AZURE_RESOURCE_GROUP: 'rg-stemcells',
  AZURE_REGION: 'westeurope',
  AZURE_STORAGE_ACCOUNT_NAME: 'stemcellstore',
  AZURE_GALLERY_NAME: 'stemcells',
  BASM_STEMCELL_SERIES: `${JAMMY},${NOBLE}`,
  BASM_VERSION_POLL_INTERVAL_SECONDS: '45',
  BASM_VERSION_READY_TIMEOUT_MINUTES: '90',
  BASM_SERIES_LOCK_WAIT_SECONDS: '300',
});

function taskHub(statuses: Record<string, string>, unreachable: readonly string[] = []) {
  const starts: Array<{ name: string; instanceId: string; input: unknown }> = [];
  const client: OrchestrationClient = {
    getStatus: (instanceId) => {
      const runtimeStatus = statuses[instanceId];
      return runtimeStatus === undefined
        ? Promise.reject(new Error('Durable Functions extension replied with HTTP 404 response.'))
        : Promise.resolve({ runtimeStatus });
    },
    startNew: (name, { instanceId, input }) => {
      if (unreachable.includes(instanceId)) return Promise.reject(new Error('task hub storage unreachable'));
      starts.push({ name, instanceId, input });
      statuses[instanceId] = 'Pending';
      return Promise.resolve(instanceId);
    },
  };
  return { client, starts };
}

function recordingLog(): StartLogger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (message) => lines.push(`info: ${message}`),
    warn: (message) => lines.push(`warn: ${message}`),
    error: (message) => lines.push(`error: ${message}`),
  };
}

test('each series gets its instance, with the requested version and nothing else', async () => {
  const hub = taskHub({});

  const outcomes = await startSeriesMirrors(hub.client, { series: [JAMMY], version: '1.1' }, recordingLog());

  assert.deepEqual(outcomes, [{ started: true, series: JAMMY, instanceId: `mirror-${JAMMY}` }]);
  assert.deepEqual(hub.starts, [
    {
      name: 'mirrorSeries',
      instanceId: `mirror-${JAMMY}`,
      input: { request: { series: JAMMY, version: '1.1' } },
    },
  ]);
});

test('a running series is left alone, a finished one started again', async () => {
  const hub = taskHub({ [`mirror-${JAMMY}`]: 'Suspended', [`mirror-${NOBLE}`]: 'Completed' });
  const log = recordingLog();

  const outcomes = await startSeriesMirrors(hub.client, { series: [JAMMY, NOBLE] }, log);

  assert.deepEqual(
    outcomes.map((o) => ('started' in o ? o.started : 'failed')),
    [false, true],
  );
  assert.deepEqual(log.lines, [
    `info: ${JAMMY}: orchestration mirror-${JAMMY} is still Suspended; not starting another`,
    `info: ${NOBLE}: started orchestration mirror-${NOBLE}`,
  ]);
});

test('fault: a series that cannot start does not stop the next one; its cause goes to the log only', async () => {
  const hub = taskHub({}, [`mirror-${JAMMY}`]);
  const log = recordingLog();

  const outcomes = await startSeriesMirrors(hub.client, { series: [JAMMY, NOBLE] }, log);

  assert.deepEqual(outcomes, [
    { failed: true, series: JAMMY, instanceId: `mirror-${JAMMY}` },
    { started: true, series: NOBLE, instanceId: `mirror-${NOBLE}` },
  ]);
  assert.deepEqual(
    log.lines[0],
    `error: ${JAMMY}: could not start the mirror orchestration: task hub storage unreachable`,
  );
});

test('the timer run starts every configured series, says notifications are off, and fails naming the series that did not start', async () => {
  const hub = taskHub({}, [`mirror-${NOBLE}`]);
  const log = recordingLog();

  await assert.rejects(
    startScheduledMirrors(hub.client, config, log),
    /could not start the mirror of bosh-azure-hyperv-ubuntu-noble;/,
  );

  assert.deepEqual(
    hub.starts.map((s) => s.instanceId),
    [`mirror-${JAMMY}`],
  );
  assert.ok(
    log.lines.includes('info: notifications are off: BASM_NOTIFY_GITHUB_TOKEN is not set'),
    log.lines.join('\n'),
  );
});
