/**
 * The orchestrators as the host runs them: registered through `df.app.orchestration`, invoked through
 * the programming model with the orchestration trigger data the Durable extension sends, and replayed
 * by durable-functions' own engine over synthetic histories.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { StemcellRelease } from '../../src/boshio.js';
import type { StemcellManifest } from '../../src/manifest.js';
import {
  STEP_RETRY,
  versionInstanceId,
  type ExtractedStemcellSummary,
  type MirrorVersionInput,
  type MonitorSettings,
  type VersionResult,
} from '../../src/workflow.js';
import { invokeFunction, loadFunctionsApp } from '../support/functions-core/host.js';
import { OrchestrationHistory } from '../support/orchestration-history.js';
import {
  LOCK_WAIT,
  MONITOR,
  SERIES,
  START,
  afterCreationStarted,
  afterUpload,
  expectedRetryOptions,
  ok,
  type OrchestratorState,
  release,
  replay,
  seriesHeld,
  seriesStarted,
  versionHistory,
  versionHistoryUntilCreation,
} from '../support/series-history.js';

const manifest = {
  name: SERIES,
  version: '1.100',
  sha1: 'cd'.repeat(20),
  operatingSystem: 'ubuntu-jammy',
  stemcellFormats: ['azure-vhd'],
  cloudProperties: { infrastructure: 'azure', hypervisor: 'hyperv', architecture: 'x86_64' },
} as unknown as StemcellManifest;
const stemcell: ExtractedStemcellSummary = {
  series: SERIES,
  version: '1.100',
  manifest,
  tarballSha256: 'ab'.repeat(32),
  imageSha1: 'cd'.repeat(20),
  imageSha256: 'ef'.repeat(32),
  vhdSize: 5 * 1024 ** 3 + 512,
  dataBytes: 1_048_576,
};
const blobUrl = `https://account.blob.core.windows.net/stemcell/${SERIES}-1.100.vhd`;
const definitionName = SERIES;
const versionInput: MirrorVersionInput = { series: SERIES, version: '1.100' };
const REF = { series: SERIES, version: '1.100' };
/** The steps of a new version up to the first read of its state. */
const UNTIL_FIRST_POLL = [
  'downloadAndExtract',
  'uploadVhd',
  'ensureImageDefinition',
  'createImageVersion',
  'getImageVersionState',
];

/** resolveVersions' plan that mirrors 1.100 only, for `entry.reason` (and by its route, if any). */
function planOf(entry: { reason: string; finish?: unknown; adopt?: unknown }) {
  return {
    series: SERIES,
    mirror: [{ release, galleryVersion: '1.100.0', ...entry }],
    newest: release,
    deferred: [],
  };
}

/** mirrorSeries' output when the series fails at `step`, before any version. */
function seriesFailure(step: string, error: string) {
  return {
    series: SERIES,
    results: [{ series: SERIES, version: null, galleryVersion: null, action: 'failed', step, error }],
  };
}

/** mirrorVersion's output once `history` ends with its cleanup (the version is done). */
async function outputAfterCleanup(history: OrchestrationHistory, removed = true): Promise<unknown> {
  const done = await replay(history.activityCompleted('cleanup', ok({ removed })));
  assert.equal(done.isDone, true);
  return done.output;
}

before(async () => {
  await loadFunctionsApp();
});

describe('mirrorSeries', () => {
  const seriesInput = { request: { series: SERIES } };
  const holder = {
    holder: 'command line (pid 4242 on build-7)',
    since: '2026-05-04T05:50:00.000Z',
    heartbeatAt: '2026-05-04T05:59:30.000Z',
  };
  let claim: { series: string; leaseId: string };

  before(async () => {
    const first = await replay(seriesStarted());
    claim = (first.last.input as { claim: typeof claim }).claim;
  });

  test('its first episode takes the series: acquireSeriesLock with a GUID lease id and who the run is', async () => {
    const state = await replay(seriesStarted());

    assert.equal(state.isDone, false);
    assert.deepEqual(state.all, [
      {
        actionType: 1,
        functionName: 'acquireSeriesLock',
        input: { claim, run: `orchestration mirror-${SERIES}` },
        retryOptions: expectedRetryOptions('acquireSeriesLock'),
      },
    ]);
    assert.equal(claim.series, SERIES);
    assert.match(claim.leaseId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  test('the lease id is the same on every replay, so every activity of the run holds the same lease', async () => {
    const again = await replay(seriesStarted());
    const later = await replay(seriesHeld().activityCompleted('resolveVersions', ok(plan)));

    assert.deepEqual((again.last.input as { claim: unknown }).claim, claim);
    assert.deepEqual((later.last.input as { lock: unknown }).lock, claim);
  });

  test('another run of the series gets another lease id', async () => {
    const tomorrow = new OrchestrationHistory(
      'mirrorSeries',
      `mirror-${SERIES}`,
      seriesInput,
      new Date(START.getTime() + 86_400_000),
    );

    const state = await replay(tomorrow);

    assert.notEqual((state.last.input as { claim: typeof claim }).claim.leaseId, claim.leaseId);
  });

  test('fault: a series another run holds is looked at again after a durable timer of the poll interval', async () => {
    const wait = { waitSeconds: 600, pollIntervalSeconds: 20 };
    const history = seriesStarted().activityCompleted(
      'acquireSeriesLock',
      ok({ acquired: false, ...holder, wait }),
    );

    const waiting = await replay(history);

    assert.equal(waiting.isDone, false);
    assert.equal(waiting.last.actionType, 5, 'a durable timer');
    assert.equal(
      new Date(waiting.last.fireAt ?? '').getTime(),
      history.currentTime.getTime() + wait.pollIntervalSeconds * 1000,
    );
    assert.deepEqual(waiting.customStatus, {
      series: SERIES,
      waitingForSeries: { acquired: false, ...holder },
    });

    const again = await replay(history.timerFired(new Date(waiting.last.fireAt ?? '')));
    assert.equal(again.last.functionName, 'acquireSeriesLock');
    assert.deepEqual(again.last.input, { claim, run: `orchestration mirror-${SERIES}` });
  });

  test('fault: a series held past the wait ends the run with one failed result naming the holder, and nothing else', async () => {
    const state = await replay(
      seriesStarted().activityCompleted(
        'acquireSeriesLock',
        ok({ acquired: false, ...holder, wait: LOCK_WAIT }),
      ),
    );

    assert.equal(state.isDone, true);
    assert.deepEqual(
      state.all.map((a) => a.functionName),
      ['acquireSeriesLock'],
    );
    assert.deepEqual(
      state.output,
      seriesFailure(
        'acquireSeriesLock',
        `another run holds series ${SERIES}: ${holder.holder}, since ${holder.since}, last heartbeat ` +
          `${holder.heartbeatAt}; this run waited 0 s and leaves the series to it (BASM_SERIES_LOCK_WAIT_SECONDS)`,
      ),
    );
  });
  const plan = planOf({ reason: 'newest' });
  /** mirrorVersion's result for 1.100 when it created the version. */
  const versionResult: VersionResult = {
    series: SERIES,
    version: '1.100',
    galleryVersion: '1.100.0',
    action: 'created',
    blobUrl,
  };
  const release101: StemcellRelease = {
    ...release,
    version: '1.101',
    url: `https://bosh.io/d/stemcells/${SERIES}?v=1.101`,
  };
  const blobUrl101 = `https://account.blob.core.windows.net/stemcell/${SERIES}-1.101.vhd`;
  /** Oldest first, as resolveVersions orders them. */
  const twoVersionPlan = {
    series: SERIES,
    mirror: [
      { release, galleryVersion: '1.100.0', reason: 'catch-up' },
      { release: release101, galleryVersion: '1.101.0', reason: 'newest' },
    ],
    newest: release101,
    deferred: [],
  };

  test('holding its series, it schedules resolveVersions with the claim and the step retry policy', async () => {
    const state = await replay(seriesHeld());

    assert.equal(state.isDone, false);
    assert.deepEqual(state.last, {
      actionType: 1,
      functionName: 'resolveVersions',
      input: { series: SERIES, lock: claim },
      retryOptions: expectedRetryOptions('resolveVersions'),
    });
  });

  test('starts mirrorVersion for each planned version with a deterministic instance id, naming only the stemcell', async () => {
    const state = await replay(seriesHeld().activityCompleted('resolveVersions', ok(plan)));

    assert.deepEqual(state.last, {
      actionType: 2,
      functionName: 'mirrorVersion',
      instanceId: versionInstanceId(SERIES, '1.100', START),
      input: { series: SERIES, version: '1.100', lock: claim },
    });
  });

  test('fault: a transient failure of resolveVersions waits for the retry timer instead of failing the series', async () => {
    const state = await replay(seriesHeld().activityFailed('resolveVersions', 'bosh.io answered 503'));

    assert.equal(state.isDone, false);
    assert.equal(state.error, undefined);
    assert.equal(
      state.all.length,
      2,
      'the retry is the extension’s, driven by the retry options already sent',
    );
    assert.deepEqual(state.last.retryOptions, expectedRetryOptions('resolveVersions'));
  });

  test('a step that succeeds on its retry lets the series continue', async () => {
    const history = seriesHeld()
      .activityFailed('resolveVersions', 'bosh.io answered 503')
      .retryTimerFired(STEP_RETRY.resolveVersions.firstRetryIntervalMs)
      .activityCompleted('resolveVersions', ok(plan));

    const state = await replay(history);

    assert.equal(state.last.functionName, 'mirrorVersion');
  });

  test('replaying a complete history schedules nothing new and returns the series result', async () => {
    const versionsDone = seriesHeld()
      .activityCompleted('resolveVersions', ok(plan))
      .subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, '1.100', START), versionResult)
      .activityCompleted('recordRun', ok({ outcome: 'succeeded' }));
    const releasing = await replay(versionsDone);
    assert.equal(releasing.isDone, false);
    assert.deepEqual(releasing.last.functionName, 'releaseSeriesLock');
    assert.deepEqual(releasing.last.input, { claim });
    const history = versionsDone.activityCompleted('releaseSeriesLock', ok({ released: true }));

    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.equal(state.all.length, history.scheduledCount);
    assert.deepEqual(state.output, { series: SERIES, results: [versionResult] });
  });

  test('fault: resolveVersions failing permanently ends the series with one failed result naming that step', async () => {
    const message = 'bosh.io has no version 9.9 of ' + SERIES;
    const failed = seriesHeld().activityCompleted('resolveVersions', { ok: false, error: message });
    const recording = await replay(failed);
    assert.equal(recording.last.functionName, 'recordRun', 'the failure is recorded for status');
    assert.deepEqual((recording.last.input as { results: unknown[] }).results.length, 1);
    failed.activityCompleted('recordRun', ok({ outcome: 'failed' }));
    assert.equal((await replay(failed)).last.functionName, 'releaseSeriesLock', 'the series is given back');
    const state = await replay(failed.activityCompleted('releaseSeriesLock', ok({ released: true })));

    assert.equal(state.isDone, true);
    assert.ok(!state.all.some((a) => a.functionName === 'mirrorVersion'), 'no version is started');
    assert.deepEqual(state.output, seriesFailure('resolveVersions', message));
  });

  test('every run ends by recording it for status, holding the series: runner functions, the run start, every result', async () => {
    const state = await replay(
      seriesHeld()
        .activityCompleted('resolveVersions', ok(plan))
        .subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, '1.100', START), versionResult),
    );

    assert.equal(state.isDone, false);
    assert.deepEqual(state.last, {
      actionType: 1,
      functionName: 'recordRun',
      input: {
        series: SERIES,
        runner: 'functions',
        startedAt: START.toISOString(),
        results: [versionResult],
        lock: claim,
      },
      retryOptions: expectedRetryOptions('recordRun'),
    });
  });

  test('a check with nothing to do is recorded too: that is what the dead man’s switch waits for', async () => {
    const nothing = { series: SERIES, mirror: [], newest: release, deferred: [] };
    const state = await replay(seriesHeld().activityCompleted('resolveVersions', ok(nothing)));

    assert.equal(state.last.functionName, 'recordRun');
    assert.deepEqual((state.last.input as { results: unknown }).results, [
      { series: SERIES, version: '1.100', galleryVersion: '1.100.0', action: 'exists' },
    ]);
  });

  test('fault: a run record that cannot be written does not fail the run, and the series is still given back', async () => {
    const nothing = { series: SERIES, mirror: [], newest: release, deferred: [] };
    const history = seriesHeld()
      .activityCompleted('resolveVersions', ok(nothing))
      .activityCompleted('recordRun', { ok: false, error: 'the storage account refused the write (403)' });
    assert.equal((await replay(history)).last.functionName, 'releaseSeriesLock');

    const state = await replay(history.activityCompleted('releaseSeriesLock', ok({ released: true })));

    assert.equal(state.isDone, true);
    assert.equal(state.error, undefined);
    assert.deepEqual(state.output, {
      series: SERIES,
      results: [{ series: SERIES, version: '1.100', galleryVersion: '1.100.0', action: 'exists' }],
    });
  });

  /** A dry run's result for 1.100 of twoVersionPlan. */
  const plannedCatchUp = {
    series: SERIES,
    version: '1.100',
    galleryVersion: '1.100.0',
    action: 'planned',
    reason: 'catch-up',
  };

  test('a dry run starts no mirrorVersion and reports every planned version as planned', async () => {
    const dryRunInput = { request: { series: SERIES, dryRun: true } };
    const history = new OrchestrationHistory(
      'mirrorSeries',
      `mirror-${SERIES}`,
      dryRunInput,
      START,
    ).activityCompleted('resolveVersions', ok(twoVersionPlan));

    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.deepEqual(
      state.all.map((a) => a.functionName),
      ['resolveVersions'],
      'a dry run changes nothing, not even the record of the last run',
    );
    assert.deepEqual(state.output, {
      series: SERIES,
      results: [
        plannedCatchUp,
        { series: SERIES, version: '1.101', galleryVersion: '1.101.0', action: 'planned', reason: 'newest' },
      ],
    });
  });

  test('fault: a dry run asks the plan to look for feature drift and reports a drifted version as failed, with its reason', async () => {
    const dryRunInput = { request: { series: SERIES, dryRun: true } };
    const started = new OrchestrationHistory('mirrorSeries', `mirror-${SERIES}`, dryRunInput, START);
    assert.deepEqual((await replay(started)).last.input, { series: SERIES, dryRun: true });
    const drift =
      'Image definition d in gallery g does not fit stemcell: DiskControllerTypes is SCSI there ...';
    const [first, second] = twoVersionPlan.mirror;
    const plan = { ...twoVersionPlan, mirror: [first, { ...second, drift }] };

    const state = await replay(started.activityCompleted('resolveVersions', ok(plan)));

    assert.equal(state.isDone, true);
    assert.deepEqual(state.output, {
      series: SERIES,
      results: [
        plannedCatchUp,
        {
          series: SERIES,
          version: '1.101',
          galleryVersion: '1.101.0',
          action: 'failed',
          step: 'ensureImageDefinition',
          reason: 'feature-drift',
          error: drift,
        },
      ],
    });
  });

  test('fault: a failed mirrorVersion does not stop the next planned version, and both results are returned in order', async () => {
    const afterFailure = seriesHeld()
      .activityCompleted('resolveVersions', ok(twoVersionPlan))
      .subOrchestrationFailed(
        'mirrorVersion',
        versionInstanceId(SERIES, '1.100', START),
        'the worker running mirrorVersion crashed',
      );

    const next = await replay(afterFailure);

    assert.equal(next.isDone, false);
    assert.deepEqual(next.last, {
      actionType: 2,
      functionName: 'mirrorVersion',
      instanceId: versionInstanceId(SERIES, '1.101', START),
      input: { series: SERIES, version: '1.101', lock: claim },
    });

    const created: VersionResult = {
      series: SERIES,
      version: '1.101',
      galleryVersion: '1.101.0',
      action: 'created',
      blobUrl: blobUrl101,
    };
    const state = await replay(
      afterFailure
        .subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, '1.101', START), created)
        .activityCompleted('recordRun', ok({ outcome: 'failed' }))
        .activityCompleted('releaseSeriesLock', ok({ released: true })),
    );

    assert.equal(state.isDone, true);
    const output = state.output as { series: string; results: VersionResult[] };
    assert.equal(output.series, SERIES);
    assert.equal(output.results.length, 2);
    const [failed, second] = output.results;
    assert.deepEqual(
      { ...failed, error: undefined },
      { series: SERIES, version: '1.100', galleryVersion: '1.100.0', action: 'failed', error: undefined },
    );
    assert.match(String(failed?.error), /the worker running mirrorVersion crashed/);
    assert.deepEqual(second, created);
  });

  test('a planned version left unfinished by an earlier run is passed to mirrorVersion as finish', async () => {
    const finishPlan = planOf({ reason: 'finish', finish: { definitionName, blobUrl } });

    const state = await replay(seriesHeld().activityCompleted('resolveVersions', ok(finishPlan)));

    assert.equal(state.last.functionName, 'mirrorVersion');
    assert.deepEqual(state.last.input, {
      series: SERIES,
      version: '1.100',
      finish: { definitionName },
      lock: claim,
    });
  });

  test('a planned adoption is passed to mirrorVersion as a route only: no definition, blob or digest', async () => {
    const adopt = { definitionName, blobUrl: 'https://old.blob.core.windows.net/vhds/1.100.vhd' };
    const adoptPlan = planOf({ reason: 'adopt', adopt });

    const state = await replay(seriesHeld().activityCompleted('resolveVersions', ok(adoptPlan)));

    assert.equal(state.last.functionName, 'mirrorVersion');
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100', adopt: true, lock: claim });
  });
});

describe('mirrorVersion', () => {
  test('every step of a version carries the series claim its input holds, and only that', async () => {
    const lock = { series: SERIES, leaseId: '3f1c2a9e-8b7d-4c6e-9a5f-0d1e2f3a4b5c' };
    const history = afterCreationStarted(versionHistory({ ...versionInput, lock }), stemcell, blobUrl)
      .activityCompleted('getImageVersionState', ok({ provisioningState: 'Succeeded' }))
      .activityCompleted('notify', ok({ notified: true }));

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => [a.functionName, (a.input as { lock?: unknown }).lock]),
      [
        ['downloadAndExtract', lock],
        ['uploadVhd', lock],
        ['ensureImageDefinition', lock],
        ['createImageVersion', lock],
        ['getImageVersionState', lock],
        ['notify', lock],
        ['cleanup', lock],
      ],
    );
  });

  test('its first episode schedules downloadAndExtract with the download retry policy', async () => {
    const state = await replay(versionHistory());

    assert.deepEqual(state.all, [
      {
        actionType: 1,
        functionName: 'downloadAndExtract',
        // The upload route: the page blob is written while the stemcell is extracted.
        input: { series: SERIES, version: '1.100', overlapUpload: true },
        retryOptions: expectedRetryOptions('downloadAndExtract'),
      },
    ]);
    assert.equal(state.customStatus?.step, 'downloadAndExtract');
  });

  test('fault: after a restart it resumes with ensureImageDefinition once download and upload are in the history', async () => {
    const history = afterUpload(versionHistory(), stemcell, blobUrl);

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => a.functionName),
      ['downloadAndExtract', 'uploadVhd', 'ensureImageDefinition'],
      'the completed steps are replayed from the history, not scheduled again',
    );
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100' });
    assert.deepEqual(state.customStatus, {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      step: 'ensureImageDefinition',
      bytesUploaded: 1_048_576,
    });
  });

  test('fault: a permanent failure ends the version with that message and schedules cleanup', async () => {
    const message = 'stemcell.MF: `sha1` does not match the image';
    const history = versionHistory().activityCompleted('downloadAndExtract', { ok: false, error: message });

    const state = await replay(history);

    assert.equal(state.last.functionName, 'cleanup');
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100' });
    assert.equal(state.customStatus?.error, message);

    assert.deepEqual(await outputAfterCleanup(history), {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'failed',
      step: 'downloadAndExtract',
      error: message,
    });
  });

  test('waits with a durable timer of the poll interval while the image version is Creating', async () => {
    const history = versionHistoryUntilCreation(stemcell, blobUrl).activityCompleted(
      'getImageVersionState',
      ok({ provisioningState: 'Creating', monitor: MONITOR }),
    );

    const state = await replay(history);

    assert.equal(state.last.actionType, 5);
    assert.equal(
      new Date(state.last.fireAt ?? '').getTime(),
      history.currentTime.getTime() + MONITOR.pollIntervalSeconds * 1000,
    );
    assert.equal(state.customStatus?.step, 'waitForImageVersion');
  });

  test('polls again after the timer and notifies once the image version is Succeeded', async () => {
    const creating = versionHistoryUntilCreation(stemcell, blobUrl).activityCompleted(
      'getImageVersionState',
      ok({ provisioningState: 'Creating', monitor: MONITOR }),
    );
    const history = creating
      .timerFired(new Date(creating.currentTime.getTime() + MONITOR.pollIntervalSeconds * 1000))
      .activityCompleted('getImageVersionState', ok({ provisioningState: 'Succeeded', monitor: MONITOR }));

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => a.functionName ?? 'timer'),
      [...UNTIL_FIRST_POLL, 'timer', 'getImageVersionState', 'notify'],
    );
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100', definitionName });
  });

  test('fault: an image version Azure reports Failed ends the version as failed and schedules cleanup', async () => {
    const history = versionHistoryUntilCreation(stemcell, blobUrl).activityCompleted(
      'getImageVersionState',
      ok({ provisioningState: 'Failed', errorMessage: 'The VHD footer is invalid.', monitor: MONITOR }),
    );

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => a.functionName ?? 'timer'),
      [...UNTIL_FIRST_POLL, 'cleanup'],
      'no timer, no notify: a Failed version is not waited for',
    );
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100' });
    assert.equal(state.customStatus?.step, 'waitForImageVersion');
    assert.equal(state.customStatus?.provisioningState, 'Failed');
    assert.match(String(state.customStatus?.error), /Failed: The VHD footer is invalid/);

    assert.deepEqual(await outputAfterCleanup(history), {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'failed',
      blobUrl,
      bytesUploaded: 1_048_576,
      step: 'waitForImageVersion',
      error:
        `Azure reports image version ${definitionName}/1.100.0 Failed: The VHD footer is invalid.; ` +
        'the next run deletes and recreates it, unless a director uses it',
    });
  });

  test('fault: an image version still Creating past the deadline ends the version as failed and schedules cleanup', async () => {
    const monitor: MonitorSettings = { pollIntervalSeconds: 30, deadlineMinutes: 2 };
    // Years before any wall clock running this test: a deadline taken from the wall clock instead of the
    // orchestration time would never be reached by these timers (or, on a clock set earlier, at once).
    const longAgo = new Date('2020-01-01T00:00:00.000Z');
    const history = afterCreationStarted(versionHistory(versionInput, longAgo), stemcell, blobUrl);
    // The deadline counts from the episode in which the creation was seen started.
    const waitingSince = history.currentTime.getTime();

    // Azure keeps answering Creating: poll, wait the poll interval, poll again, until the workflow gives up.
    let state = await replay(
      history.activityCompleted('getImageVersionState', ok({ provisioningState: 'Creating', monitor })),
    );
    let polls = 1;
    while (state.last.actionType === 5) {
      assert.ok(polls < 20, 'the deadline never ended the wait');
      history
        .timerFired(new Date(state.last.fireAt ?? ''))
        .activityCompleted('getImageVersionState', ok({ provisioningState: 'Creating', monitor }));
      polls++;
      state = await replay(history);
    }

    assert.equal(state.last.functionName, 'cleanup');
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100' });
    assert.ok(!state.all.some((a) => a.functionName === 'notify'), 'nothing is announced');
    // Every poll but the last was followed by a timer within the deadline; the next one would pass it.
    const timers = state.all.filter((a) => a.actionType === 5);
    assert.equal(timers.length, polls - 1);
    for (const timer of timers) {
      assert.ok(new Date(timer.fireAt ?? '').getTime() <= waitingSince + monitor.deadlineMinutes * 60_000);
    }
    assert.ok(
      history.currentTime.getTime() + monitor.pollIntervalSeconds * 1000 >
        waitingSince + monitor.deadlineMinutes * 60_000,
    );
    assert.ok(polls >= 4, `expected several polls within ${monitor.deadlineMinutes} minutes, saw ${polls}`);

    const output = (await outputAfterCleanup(history)) as VersionResult;
    assert.equal(output.action, 'failed');
    assert.equal(output.step, 'waitForImageVersion');
    assert.equal(
      output.error,
      `image version ${definitionName}/1.100.0 is still Creating after 2 minutes; the next run finishes it`,
    );
    assert.equal(output.blobUrl, blobUrl);
  });

  test('replaying a complete history schedules nothing new and returns the created version', async () => {
    const history = versionHistoryUntilCreation(stemcell, blobUrl)
      .activityCompleted('getImageVersionState', ok({ provisioningState: 'Succeeded', monitor: MONITOR }))
      .activityCompleted('notify', ok({ notified: true }))
      .activityCompleted('cleanup', ok({ removed: true }));

    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.equal(state.all.length, history.scheduledCount);
    assert.deepEqual(state.output, {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'created',
      blobUrl,
      bytesUploaded: 1_048_576,
    });
  });

  test('an image version the gallery already holds is neither waited for nor announced, and ends as exists', async () => {
    const history = versionHistory()
      .activityCompleted('downloadAndExtract', ok(stemcell))
      .activityCompleted(
        'uploadVhd',
        ok({ blobUrl, bytesUploaded: 0, dataBytes: 1_048_576, alreadyComplete: true }),
      )
      .activityCompleted('ensureImageDefinition', ok({ definitionName, created: false }))
      .activityCompleted(
        'createImageVersion',
        ok({ outcome: 'exists', provisioningState: 'Succeeded', definitionName }),
      );

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => a.functionName ?? 'timer'),
      ['downloadAndExtract', 'uploadVhd', 'ensureImageDefinition', 'createImageVersion', 'cleanup'],
      'no getImageVersionState, no timer, no notify',
    );
    assert.deepEqual(state.last.input, { series: SERIES, version: '1.100' });
    assert.equal(state.customStatus?.step, 'done');

    assert.deepEqual(await outputAfterCleanup(history, false), {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'exists',
      blobUrl,
      bytesUploaded: 0,
    });
  });

  test('finishing a version an earlier run created only waits for it and notifies, with the blob URL the gallery reports', async () => {
    const finishBlobUrl = `https://account.blob.core.windows.net/stemcell/${SERIES}-1.100-earlier.vhd`;
    const finishInput = { ...versionInput, finish: { definitionName } };
    const finishHistory = () => versionHistory(finishInput);

    const first = await replay(finishHistory());
    assert.deepEqual(first.all, [
      {
        actionType: 1,
        functionName: 'getImageVersionState',
        input: { series: SERIES, version: '1.100', definitionName },
        retryOptions: expectedRetryOptions('getImageVersionState'),
      },
    ]);
    assert.equal(first.customStatus?.step, 'waitForImageVersion');

    const history = finishHistory()
      .activityCompleted(
        'getImageVersionState',
        ok({ provisioningState: 'Succeeded', blobUrl: finishBlobUrl, monitor: MONITOR }),
      )
      .activityCompleted('notify', ok({ notified: true }))
      .activityCompleted('cleanup', ok({ removed: false }));
    const done = await replay(history);

    assert.deepEqual(
      done.all.map((a) => a.functionName ?? 'timer'),
      ['getImageVersionState', 'notify', 'cleanup'],
      'nothing is downloaded, uploaded, defined or created again',
    );
    assert.deepEqual(done.all[1]?.input, { series: SERIES, version: '1.100', definitionName });
    assert.equal(done.isDone, true);
    assert.deepEqual(done.output, {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'created',
      blobUrl: finishBlobUrl,
    });
  });
});

describe('mirrorVersion adopting an untagged version another tool made', () => {
  const sourceBlob = `https://old.blob.core.windows.net/vhds/${SERIES}-1.100.vhd`;
  /** mirrorVersion on the adoption route to its end: the stemcell verified, `adopted` the adoption's outcome. */
  const adoption = (adopted: unknown, input: unknown = { ...versionInput, adopt: true }) =>
    versionHistory(input)
      .activityCompleted('downloadAndExtract', ok(stemcell))
      .activityCompleted('adoptImageVersion', adopted)
      .activityCompleted('cleanup', ok({ removed: true }));

  test('verifies the stemcell, then adopts: no upload, no definition, no create, no wait, no dispatch', async () => {
    const history = adoption(ok({ definitionName, blobUrl: sourceBlob }));

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => [a.functionName, a.input, a.retryOptions]),
      [
        ['downloadAndExtract', REF, expectedRetryOptions('downloadAndExtract')],
        ['adoptImageVersion', REF, expectedRetryOptions('adoptImageVersion')],
        ['cleanup', REF, expectedRetryOptions('cleanup')],
      ],
    );
    assert.equal(state.isDone, true);
    assert.deepEqual(state.output, {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'exists',
      blobUrl: sourceBlob,
    });
  });

  test('fault: a refused adoption fails the version at adoptImageVersion, and cleanup still runs', async () => {
    const message =
      'image version x/1.100.0 is untagged and its source blob ... is not ...; refusing to adopt it';
    const history = adoption({ ok: false, error: message });

    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.deepEqual(state.output, {
      series: SERIES,
      version: '1.100',
      galleryVersion: '1.100.0',
      action: 'failed',
      step: 'adoptImageVersion',
      error: message,
    });
  });

  test('fault: a forged adoption route with a definition, source blob and digest passes none of them to a step', async () => {
    const forged = {
      ...versionInput,
      adopt: { definitionName: 'another-definition', blobUrl: 'https://attacker.example/evil.vhd' },
      sourceUri: 'https://attacker.example/evil.vhd',
      imageSha256: 'ff'.repeat(32),
    };
    const history = adoption(ok({ definitionName }), forged);

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => [a.functionName, a.input]),
      [
        ['downloadAndExtract', REF],
        ['adoptImageVersion', REF],
        ['cleanup', REF],
      ],
    );
    assert.doesNotMatch(JSON.stringify(state.all), /attacker|another-definition|ffff/);
    assert.equal((state.output as VersionResult).blobUrl, undefined);
  });
});

describe('orchestrations started by hand with forged input (the system key starts any orchestration)', () => {
  const forged = {
    series: SERIES,
    version: '1.100',
    release: { ...release, url: 'https://attacker.example/evil.tgz', sha256: '00'.repeat(32) },
    galleryVersion: '9.9.9',
    monitor: { pollIntervalSeconds: 0.001, deadlineMinutes: 100_000 },
    blobUrl: 'https://attacker.blob.core.windows.net/x/evil.vhd',
    definitionName: 'another-definition',
  };
  const forgedHistory = () => versionHistory(forged);

  test('fault: mirrorVersion with a foreign tarball URL, gallery version, blob and definition passes none of them to a step', async () => {
    const history = afterCreationStarted(forgedHistory(), stemcell, blobUrl)
      .activityCompleted('getImageVersionState', ok({ provisioningState: 'Succeeded', monitor: MONITOR }))
      .activityCompleted('notify', ok({ notified: true }))
      .activityCompleted('cleanup', ok({ removed: true }));

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => [a.functionName, a.input]),
      [
        ['downloadAndExtract', { ...REF, overlapUpload: true }],
        ['uploadVhd', { ...REF, imageSha256: stemcell.imageSha256 }],
        ['ensureImageDefinition', REF],
        ['createImageVersion', REF],
        ['getImageVersionState', { ...REF, definitionName }],
        ['notify', { ...REF, definitionName }],
        ['cleanup', REF],
      ],
    );
    assert.doesNotMatch(JSON.stringify(state.all), /attacker|9\.9\.9|another-definition/);
    assert.equal((state.output as VersionResult).galleryVersion, '1.100.0');
  });

  test('fault: a tiny poll interval in the input does not make the wait poll faster than the settings', async () => {
    const history = afterCreationStarted(forgedHistory(), stemcell, blobUrl).activityCompleted(
      'getImageVersionState',
      ok({ provisioningState: 'Creating', monitor: MONITOR }),
    );

    const state = await replay(history);

    assert.equal(state.last.actionType, 5, 'a durable timer');
    assert.equal(
      new Date(state.last.fireAt ?? '').getTime() - history.currentTime.getTime(),
      MONITOR.pollIntervalSeconds * 1000,
    );
  });

  test('fault: mirrorVersion named with a version that is not a stemcell version schedules no step', async () => {
    const history = versionHistory({ series: SERIES, version: '../../1.100' });

    // The worker reports a failed orchestrator as an error carrying its state.
    await assert.rejects(
      invokeFunction(history.name, { orchestrationTrigger: history.trigger() }),
      (error: Error) => {
        const state = JSON.parse(error.message.slice(error.message.indexOf('{'))) as OrchestratorState;
        assert.deepEqual(state.actions.flat(), [], 'no step was scheduled');
        assert.match(String(state.error), /is not a stemcell version/);
        return true;
      },
    );
  });

  const forgedMonitor = { monitor: { ...forged.monitor, seriesLockWaitSeconds: 86_400 } };
  const holder = {
    holder: 'command line (pid 4242 on build-7)',
    since: '2026-05-04T05:50:00.000Z',
    heartbeatAt: '2026-05-04T05:59:30.000Z',
  };

  test('fault: mirrorSeries with forged monitor settings passes nothing but the stemcell (and its claim) to mirrorVersion', async () => {
    const history = seriesHeld(seriesStarted({}, forgedMonitor)).activityCompleted(
      'resolveVersions',
      ok({
        series: SERIES,
        mirror: [{ release, galleryVersion: '1.100.0', reason: 'newest' }],
        newest: release,
        deferred: [],
      }),
    );

    const state = await replay(history);

    const claim = (state.all[0]?.input as { claim: { series: string; leaseId: string } }).claim;
    assert.deepEqual(state.last.input, { ...REF, lock: claim });
    assert.doesNotMatch(JSON.stringify(state.all), /86400|0\.001|100000/);
  });

  test("fault: a forged lock wait in mirrorSeries' input neither makes it wait for a held series nor look sooner", async () => {
    const started = () => seriesStarted({}, forgedMonitor);

    const gaveUp = await replay(
      started().activityCompleted(
        'acquireSeriesLock',
        ok({ acquired: false, ...holder, wait: { waitSeconds: 0, pollIntervalSeconds: 30 } }),
      ),
    );
    assert.equal(gaveUp.isDone, true, 'the settings say not to wait: the input cannot make it');
    assert.equal((gaveUp.output as { results: VersionResult[] }).results[0]?.step, 'acquireSeriesLock');

    const history = started().activityCompleted(
      'acquireSeriesLock',
      ok({ acquired: false, ...holder, wait: { waitSeconds: 600, pollIntervalSeconds: 30 } }),
    );
    const waiting = await replay(history);
    assert.equal(waiting.last.actionType, 5, 'a durable timer');
    assert.equal(new Date(waiting.last.fireAt ?? '').getTime() - history.currentTime.getTime(), 30_000);
  });
});

describe('custom status', () => {
  const MANY = 60;
  const releases: StemcellRelease[] = Array.from({ length: MANY }, (_, i) => ({
    ...release,
    version: `1.${200 + i}`,
    url: `https://bosh.io/d/stemcells/${SERIES}?v=1.${200 + i}`,
  }));
  const manyPlan = {
    series: SERIES,
    mirror: releases.map((r) => ({ release: r, galleryVersion: `${r.version}.0`, reason: 'catch-up' })),
    newest: releases.at(-1),
    deferred: [],
  };
  const longError = `ARM said: ${'the gallery image version could not be created because '.repeat(60)}`;
  const LIMIT = 16 * 1024;

  test('fault: a run over 60 versions, each failing with a long message, keeps its custom status under 16 KB with counts', async () => {
    const history = seriesHeld().activityCompleted('resolveVersions', ok(manyPlan));
    let largest = 0;
    for (const r of releases) {
      const state = await replay(history);
      largest = Math.max(largest, Buffer.byteLength(JSON.stringify(state.customStatus)));
      history.subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, r.version, START), {
        series: SERIES,
        version: r.version,
        galleryVersion: `${r.version}.0`,
        action: 'failed',
        step: 'createImageVersion',
        error: longError,
      });
    }
    history.activityCompleted('recordRun', ok({ outcome: 'failed' }));
    assert.equal((await replay(history)).last.functionName, 'releaseSeriesLock');
    history.activityCompleted('releaseSeriesLock', ok({ released: true }));

    const done = await replay(history);

    assert.equal(done.isDone, true);
    const status = done.customStatus as Record<string, unknown>;
    const size = Buffer.byteLength(JSON.stringify(status));
    assert.ok(size < LIMIT, `the final custom status is ${size} bytes`);
    assert.ok(largest < LIMIT, `a custom status during the run was ${largest} bytes`);
    assert.deepEqual(status.counts, { done: MANY, created: 0, exists: 0, deleted: 0, failed: MANY });
    assert.equal(status.planned, MANY);
    assert.equal((status.results as unknown[]).length, 10);
    assert.equal(status.earlierResults, MANY - 10);
    assert.equal(
      (done.output as { results: unknown[] }).results.length,
      MANY,
      'the output keeps every result',
    );
    // The orchestration output keeps the full message; the status a shortened one.
    assert.ok(JSON.stringify(done.output).includes(longError));
  });

  test('fault: a version failing with a very long message keeps its own custom status short', async () => {
    const history = versionHistory().activityCompleted('downloadAndExtract', {
      ok: false,
      error: longError.repeat(10),
    });

    const state = await replay(history);

    assert.ok(Buffer.byteLength(JSON.stringify(state.customStatus)) < 1024);
    assert.match(String(state.customStatus?.error), /^ARM said: the gallery image version/);
  });
});
