/**
 * Retention, the skip list and BASM_DELETE_SOURCE_BLOB as the host runs the orchestrators: replayed by
 * durable-functions' own engine over synthetic histories (issue 8, parts 2 and 3).
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { StemcellManifest } from '../../src/manifest.js';
import { versionInstanceId, type VersionResult } from '../../src/workflow.js';
import { loadFunctionsApp } from '../support/functions-core/host.js';
import {
  MONITOR,
  SERIES,
  START,
  expectedRetryOptions,
  ok,
  release,
  replay,
  seriesHeld,
  seriesStarted,
  versionHistoryUntilCreation,
} from '../support/series-history.js';

const definitionName = SERIES;
const blobUrl = `https://account.blob.core.windows.net/stemcell/${SERIES}/1.100/root.vhd`;

const REASON = 'older than the newest 2 the mirror keeps (BASM_KEEP_VERSIONS); no director uses it';
const retention = [
  { definitionName, galleryVersion: '1.97.0', version: '1.97', reason: REASON },
  { definitionName, galleryVersion: '1.98.0', version: '1.98', reason: REASON },
];
const plan = {
  series: SERIES,
  mirror: [{ release, galleryVersion: '1.100.0', reason: 'newest' }],
  newest: release,
  deferred: [],
  skipped: ['1.99'],
  retention,
};
const created: VersionResult = {
  series: SERIES,
  version: '1.100',
  galleryVersion: '1.100.0',
  action: 'created',
  blobUrl,
};

before(async () => {
  await loadFunctionsApp();
});

describe('mirrorSeries with retention', () => {
  let claim: { series: string; leaseId: string };
  const mirrored = () =>
    seriesHeld()
      .activityCompleted('resolveVersions', ok(plan))
      .subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, '1.100', START), created);

  before(async () => {
    claim = ((await replay(seriesStarted())).last.input as { claim: typeof claim }).claim;
  });

  test('after the versions are mirrored, deleteImageVersion runs for the oldest first, with the claim and its retry policy', async () => {
    const state = await replay(mirrored());

    assert.equal(state.isDone, false);
    assert.deepEqual(state.last, {
      actionType: 1,
      functionName: 'deleteImageVersion',
      input: { series: SERIES, version: '1.97', definitionName, lock: claim },
      retryOptions: expectedRetryOptions('deleteImageVersion'),
    });
  });

  test('each deletion is a result with its reason; one no longer chosen is reported as exists; then the record and the release', async () => {
    const deleted = mirrored()
      .activityCompleted('deleteImageVersion', ok({ deleted: true, blobDeleted: true, reason: REASON }))
      .activityCompleted(
        'deleteImageVersion',
        ok({
          deleted: false,
          blobDeleted: false,
          reason: 'kept: 1 director references it (stemcell_references)',
        }),
      );
    const results: VersionResult[] = [
      created,
      { series: SERIES, version: '1.97', galleryVersion: '1.97.0', action: 'deleted', reason: REASON },
      {
        series: SERIES,
        version: '1.98',
        galleryVersion: '1.98.0',
        action: 'exists',
        reason: 'kept: 1 director references it (stemcell_references)',
      },
    ];
    const recording = await replay(deleted);
    assert.equal(recording.last.functionName, 'recordRun');
    assert.deepEqual((recording.last.input as { results: unknown }).results, results);

    const history = deleted
      .activityCompleted('recordRun', ok({ outcome: 'succeeded' }))
      .activityCompleted('releaseSeriesLock', ok({ released: true }));
    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.equal(state.all.length, history.scheduledCount, 'a full replay schedules nothing new');
    assert.deepEqual(state.output, { series: SERIES, results });
  });

  test('fault: a deletion that fails permanently is a failed result at deleteImageVersion, and the next one still runs', async () => {
    const state = await replay(
      mirrored().activityCompleted('deleteImageVersion', { ok: false, error: 'ARM answered 409' }),
    );

    assert.deepEqual(state.last.input, { series: SERIES, version: '1.98', definitionName, lock: claim });
  });

  test('fault: a run in which a version failed deletes nothing', async () => {
    const state = await replay(
      seriesHeld()
        .activityCompleted('resolveVersions', ok(plan))
        .subOrchestrationFailed(
          'mirrorVersion',
          versionInstanceId(SERIES, '1.100', START),
          'bosh.io answered 404',
        ),
    );

    assert.equal(state.last.functionName, 'recordRun');
    assert.ok(!state.all.some((a) => a.functionName === 'deleteImageVersion'));
  });

  test('fault: a Failed version of the mirror that directors use is reported failed by the plan alone, and holds back retention', async () => {
    const error = `image version ${definitionName}/1.99.0 is Failed (eastus), and 1 director references it ...`;
    const refused = [{ version: '1.99', galleryVersion: '1.99.0', reason: 'failed-in-use', error }];
    const history = seriesHeld()
      .activityCompleted('resolveVersions', ok({ ...plan, refused }))
      .subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, '1.100', START), created);

    const state = await replay(history);

    assert.deepEqual(
      state.all.map((a) => a.functionName),
      ['acquireSeriesLock', 'resolveVersions', 'mirrorVersion', 'recordRun'],
      'no step for the version in use, and no deletion',
    );
    assert.deepEqual((state.last.input as { results: unknown }).results, [
      {
        series: SERIES,
        version: '1.99',
        galleryVersion: '1.99.0',
        action: 'failed',
        step: 'resolveVersions',
        reason: 'failed-in-use',
        error,
      },
      created,
    ]);
  });

  test('fault: with the newest Failed and in use, the run reports it failed, not exists', async () => {
    const error = `image version ${definitionName}/1.100.0 is Failed, and 1 director references it ...`;
    const refused = [{ version: '1.100', galleryVersion: '1.100.0', reason: 'failed-in-use', error }];
    const history = seriesStarted({ dryRun: true }).activityCompleted(
      'resolveVersions',
      ok({ ...plan, mirror: [], skipped: [], retention: [], refused }),
    );

    const state = await replay(history);

    assert.deepEqual(state.output, {
      series: SERIES,
      results: [
        {
          series: SERIES,
          version: '1.100',
          galleryVersion: '1.100.0',
          action: 'failed',
          step: 'resolveVersions',
          reason: 'failed-in-use',
          error,
        },
      ],
    });
  });

  test('with nothing to mirror, retention runs right after the plan', async () => {
    const nothing = { ...plan, mirror: [] };
    const state = await replay(seriesHeld().activityCompleted('resolveVersions', ok(nothing)));

    assert.equal(state.last.functionName, 'deleteImageVersion');
  });

  test('a dry run lists skipped, planned and planned-delete with their reasons, and schedules nothing else', async () => {
    const history = seriesStarted({ dryRun: true }).activityCompleted('resolveVersions', ok(plan));

    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.deepEqual(
      state.all.map((a) => a.functionName),
      ['resolveVersions'],
    );
    assert.deepEqual(state.output, {
      series: SERIES,
      results: [
        {
          series: SERIES,
          version: '1.99',
          galleryVersion: '1.99.0',
          action: 'skipped',
          reason: 'BASM_SKIP_VERSIONS: never mirrored',
        },
        { series: SERIES, version: '1.100', galleryVersion: '1.100.0', action: 'planned', reason: 'newest' },
        {
          series: SERIES,
          version: '1.97',
          galleryVersion: '1.97.0',
          action: 'planned-delete',
          reason: REASON,
        },
        {
          series: SERIES,
          version: '1.98',
          galleryVersion: '1.98.0',
          action: 'planned-delete',
          reason: REASON,
        },
      ],
    });
  });
});

describe('mirrorVersion with BASM_DELETE_SOURCE_BLOB', () => {
  const manifest = { name: SERIES, version: '1.100' } as unknown as StemcellManifest;
  const succeeded = (extra: Record<string, unknown>) =>
    versionHistoryUntilCreation({ series: SERIES, version: '1.100', manifest, imageSha256: 'ef' }, blobUrl)
      .activityCompleted(
        'getImageVersionState',
        ok({ provisioningState: 'Succeeded', monitor: MONITOR, ...extra }),
      )
      .activityCompleted('notify', ok({ notified: true }));

  test('once notified, the version’s source blob is deleted before it is reported created', async () => {
    const state = await replay(succeeded({ deleteSourceBlob: true }));

    assert.deepEqual(state.last, {
      actionType: 1,
      functionName: 'deleteSourceBlob',
      input: { series: SERIES, version: '1.100', definitionName },
      retryOptions: expectedRetryOptions('deleteSourceBlob'),
    });
  });

  test('fault: a source blob that cannot be deleted leaves the version created; cleanup still runs', async () => {
    const history = succeeded({ deleteSourceBlob: true })
      .activityCompleted('deleteSourceBlob', { ok: false, error: 'the storage account refused (403)' })
      .activityCompleted('cleanup', ok({ removed: true }));

    const state = await replay(history);

    assert.equal(state.isDone, true);
    assert.equal((state.output as VersionResult).action, 'created');
  });

  test('without the setting, notify is followed by cleanup: the histories of earlier runs replay unchanged', async () => {
    const state = await replay(succeeded({}));

    assert.equal(state.last.functionName, 'cleanup');
  });
});
