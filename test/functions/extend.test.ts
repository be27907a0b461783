/**
 * Extending the mirror's versions to new target regions, in the Durable app: orchestrator `mirrorSeries`
 * replayed by durable-functions' own engine over synthetic histories, with the activity `extendImageVersion`
 * registered like every step (retry policy included), and the wait for replication in every region.
 */

import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { PlannedExtension } from '../../src/plan.js';
import { STEP_RETRY, type VersionResult } from '../../src/workflow.js';
import { bindingOf, loadFunctionsApp } from '../support/functions-core/host.js';
import {
  MONITOR,
  SERIES,
  ok,
  release,
  replayEpisode as replay,
  seriesHeld,
} from '../support/series-history.js';

const definitionName = SERIES;

const extensions: PlannedExtension[] = [
  { version: '1.100', galleryVersion: '1.100.0', definitionName, reason: 'adds eastus' },
  { version: '1.99', galleryVersion: '1.99.0', definitionName, reason: 'adds eastus' },
];
const plan = { series: SERIES, mirror: [], newest: release, deferred: [], extend: extensions };

const planned = () => seriesHeld().activityCompleted('resolveVersions', ok(plan));

const replicating = {
  provisioningState: 'Succeeded',
  regions: [
    { name: 'westeurope', state: 'Completed' },
    { name: 'eastus', state: 'Replicating', progress: 40 },
  ],
  monitor: MONITOR,
};
const replicated = {
  provisioningState: 'Succeeded',
  regions: [
    { name: 'westeurope', state: 'Completed' },
    { name: 'eastus', state: 'Completed' },
  ],
  monitor: MONITOR,
};

before(async () => {
  await loadFunctionsApp();
});

test('extendImageVersion is an activity of the app, like every step', () => {
  assert.equal(bindingOf('extendImageVersion', 'activityTrigger').direction, 'in');
  assert.ok(STEP_RETRY.extendImageVersion.maxAttempts > 1);
});

test("a planned extension calls extendImageVersion with the stemcell and the plan's definition, under the series lock, with its retry policy", async () => {
  const state = await replay(planned());
  const last = state.all.at(-1);
  assert.equal(last?.functionName, 'extendImageVersion');
  const { lock, ...input } = last?.input as { lock: unknown };
  assert.deepEqual(input, { series: SERIES, version: '1.100', definitionName });
  assert.ok(lock !== undefined);
  assert.equal(last?.retryOptions?.['maxNumberOfAttempts'], STEP_RETRY.extendImageVersion.maxAttempts);
  assert.deepEqual((state.customStatus?.['extending'] as { step?: string })?.step, 'extendImageVersion');
});

test('Succeeded with a region still replicating is waited for (a durable timer), showing each region', async () => {
  const history = planned()
    .activityCompleted('extendImageVersion', ok({ definitionName, extended: true, change: 'adds eastus' }))
    .activityCompleted('getImageVersionState', ok(replicating));
  const state = await replay(history);
  assert.equal(state.all.at(-1)?.actionType, 5, 'a timer, not the next version');
  assert.deepEqual(
    (state.customStatus?.['extending'] as { regions?: unknown })?.regions,
    replicating.regions,
  );
});

test("each version is extended in the plan's order (newest first) once replicated everywhere, and reported extended", async () => {
  const first = planned()
    .activityCompleted('extendImageVersion', ok({ definitionName, extended: true, change: 'adds eastus' }))
    .activityCompleted('getImageVersionState', ok(replicating));
  const history = first
    .timerFired(new Date(first.currentTime.getTime() + MONITOR.pollIntervalSeconds * 1000))
    .activityCompleted('getImageVersionState', ok(replicated))
    .activityCompleted('extendImageVersion', ok({ definitionName, extended: false, change: '' }))
    .activityCompleted('getImageVersionState', ok(replicated));
  const state = await replay(history);
  assert.deepEqual(
    state.all
      .filter((a) => a.functionName === 'extendImageVersion')
      .map((a) => (a.input as { version: string }).version),
    ['1.100', '1.99'],
  );
  const recordRun = state.all.at(-1);
  assert.equal(recordRun?.functionName, 'recordRun');
  const results = (recordRun?.input as { results: VersionResult[] }).results;
  assert.deepEqual(
    results.map((r) => [r.version, r.action, r.reason ?? null]),
    [
      ['1.100', 'exists', null],
      ['1.100', 'extended', 'adds eastus'],
      ['1.99', 'extended', 'adds eastus'],
    ],
  );
});

test('fault: a region whose replication Azure fails ends that extension failed, naming the region, and the next goes on', async () => {
  const history = planned()
    .activityCompleted('extendImageVersion', ok({ definitionName, extended: true, change: 'adds eastus' }))
    .activityCompleted(
      'getImageVersionState',
      ok({
        provisioningState: 'Failed',
        regions: [
          { name: 'westeurope', state: 'Completed' },
          { name: 'eastus', state: 'Failed', details: 'Quota exceeded.' },
        ],
        monitor: MONITOR,
      }),
    );
  const state = await replay(history);
  const last = state.all.at(-1);
  assert.equal(last?.functionName, 'extendImageVersion');
  assert.deepEqual((last?.input as { version: string }).version, '1.99');
  const done = await replay(
    history
      .activityCompleted('extendImageVersion', ok({ definitionName, extended: true, change: 'adds eastus' }))
      .activityCompleted('getImageVersionState', ok(replicated)),
  );
  const results = (done.all.at(-1)?.input as { results: VersionResult[] }).results;
  assert.equal(results[1]?.action, 'failed');
  assert.equal(results[1]?.step, 'waitForImageVersion');
  assert.match(String(results[1]?.error), /Failed in eastus \(Quota exceeded\.\)/);
  assert.equal(results[2]?.action, 'extended');
});
