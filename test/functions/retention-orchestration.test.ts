/**
 * Retention, the skip list and BASM_DELETE_SOURCE_BLOB as the host runs the orchestrators: replayed by
 * durable-functions' own engine over synthetic histories (issue 8, parts 2 and 3).
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { StemcellRelease } from '../../src/boshio.js';
import type { StemcellManifest } from '../../src/manifest.js';
import {
  STEP_RETRY,
  versionInstanceId,
  type MonitorSettings,
  type StepName,
  type VersionResult,
} from '../../src/workflow.js';
import { invokeFunction, loadFunctionsApp, returnedJson } from '../support/functions-core/host.js';
import { OrchestrationHistory } from '../support/orchestration-history.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const START = new Date('2026-05-04T06:00:00.000Z');
const MONITOR: MonitorSettings = { pollIntervalSeconds: 30, deadlineMinutes: 120 };
const definitionName = SERIES;
const blobUrl = `https://account.blob.core.windows.net/stemcell/${SERIES}/1.100/root.vhd`;

const release: StemcellRelease = {
  series: SERIES,
  version: '1.100',
  url: `https://bosh.io/d/stemcells/${SERIES}?v=1.100`,
  size: 1_300_000_000,
  sha256: 'ab'.repeat(32),
};
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

interface Action {
  actionType: number;
  functionName?: string;
  input?: unknown;
  retryOptions?: Record<string, unknown>;
}

async function replay(history: OrchestrationHistory) {
  const { response } = await invokeFunction(history.name, { orchestrationTrigger: history.trigger() });
  const state = returnedJson(response) as {
    isDone: boolean;
    actions: Action[][];
    output?: unknown;
    error?: string;
  };
  const all = state.actions.flat();
  const last = all.at(-1);
  assert.ok(last, 'the orchestrator scheduled nothing');
  return { ...state, all, last };
}

const ok = <T>(value: T) => ({ ok: true, value });

function retryOptions(name: StepName): Record<string, unknown> {
  const policy = STEP_RETRY[name];
  return {
    firstRetryIntervalInMilliseconds: policy.firstRetryIntervalMs,
    maxNumberOfAttempts: policy.maxAttempts,
    backoffCoefficient: policy.backoffCoefficient,
    maxRetryIntervalInMilliseconds: policy.maxRetryIntervalMs,
  };
}

before(async () => {
  await loadFunctionsApp();
});

describe('mirrorSeries with retention', () => {
  const started = () =>
    new OrchestrationHistory('mirrorSeries', `mirror-${SERIES}`, { request: { series: SERIES } }, START);
  let claim: { series: string; leaseId: string };
  const held = () =>
    started().activityCompleted(
      'acquireSeriesLock',
      ok({ acquired: true, wait: { waitSeconds: 0, pollIntervalSeconds: 30 } }),
    );
  const mirrored = () =>
    held()
      .activityCompleted('resolveVersions', ok(plan))
      .subOrchestrationCompleted('mirrorVersion', versionInstanceId(SERIES, '1.100', START), created);

  before(async () => {
    claim = ((await replay(started())).last.input as { claim: typeof claim }).claim;
  });

  test('after the versions are mirrored, deleteImageVersion runs for the oldest first, with the claim and its retry policy', async () => {
    const state = await replay(mirrored());

    assert.equal(state.isDone, false);
    assert.deepEqual(state.last, {
      actionType: 1,
      functionName: 'deleteImageVersion',
      input: { series: SERIES, version: '1.97', definitionName, lock: claim },
      retryOptions: retryOptions('deleteImageVersion'),
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
      held()
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

  test('with nothing to mirror, retention runs right after the plan', async () => {
    const nothing = { ...plan, mirror: [] };
    const state = await replay(held().activityCompleted('resolveVersions', ok(nothing)));

    assert.equal(state.last.functionName, 'deleteImageVersion');
  });

  test('a dry run lists skipped, planned and planned-delete with their reasons, and schedules nothing else', async () => {
    const history = new OrchestrationHistory(
      'mirrorSeries',
      `mirror-${SERIES}`,
      { request: { series: SERIES, dryRun: true } },
      START,
    ).activityCompleted('resolveVersions', ok(plan));

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
    new OrchestrationHistory(
      'mirrorVersion',
      versionInstanceId(SERIES, '1.100', START),
      { series: SERIES, version: '1.100' },
      START,
      'mirror-x',
    )
      .activityCompleted(
        'downloadAndExtract',
        ok({ series: SERIES, version: '1.100', manifest, imageSha256: 'ef' }),
      )
      .activityCompleted(
        'uploadVhd',
        ok({ blobUrl, bytesUploaded: 1_048_576, dataBytes: 1_048_576, alreadyComplete: false }),
      )
      .activityCompleted('ensureImageDefinition', ok({ definitionName, created: true }))
      .activityCompleted(
        'createImageVersion',
        ok({ outcome: 'started', provisioningState: 'Creating', definitionName }),
      )
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
      retryOptions: retryOptions('deleteSourceBlob'),
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
