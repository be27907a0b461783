/**
 * The run record: what a run leaves for `status`, and what it refuses to record, since its input can be
 * forged by whoever starts an orchestration by hand.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runLogLine, runRecordOf } from '../../src/run-record.js';
import { VERSION_ACTIONS, type VersionResult } from '../../src/workflow.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const START = '2026-12-02T06:00:00.000Z';
const END = '2026-12-02T06:03:00.000Z';

test('a run with any failed version is recorded as failed, with each version’s outcome', () => {
  const results: VersionResult[] = [
    { series: SERIES, version: '1.1', galleryVersion: '1.1.0', action: 'created', blobUrl: 'https://x/y' },
    { series: SERIES, version: '1.2', galleryVersion: '1.2.0', action: 'failed', error: 'Azure said no' },
  ];

  const record = runRecordOf(SERIES, 'functions', START, END, results);

  assert.deepEqual(record, {
    series: SERIES,
    runner: 'functions',
    startedAt: START,
    finishedAt: END,
    outcome: 'failed',
    versions: [
      { version: '1.1', galleryVersion: '1.1.0', action: 'created' },
      { version: '1.2', galleryVersion: '1.2.0', action: 'failed', error: 'Azure said no' },
    ],
  });
  assert.equal(runLogLine(record), `mirror check of ${SERIES}: failed; 1 created, 1 failed`);
});

test('a run that extended a version to a new region is recorded, as a run with every other action is', () => {
  const extended: VersionResult = {
    series: SERIES,
    version: '1.1',
    galleryVersion: '1.1.0',
    action: 'extended',
    reason: 'adds eastus',
  };

  const record = runRecordOf(SERIES, 'functions', START, END, [extended]);

  assert.equal(record.outcome, 'succeeded');
  assert.deepEqual(record.versions, [{ version: '1.1', galleryVersion: '1.1.0', action: 'extended' }]);
  for (const action of VERSION_ACTIONS) {
    assert.doesNotThrow(() => runRecordOf(SERIES, 'cli', START, END, [{ ...extended, action }]), action);
  }
});

test('a long error is kept short', () => {
  const record = runRecordOf(SERIES, 'cli', START, END, [
    { series: SERIES, version: null, galleryVersion: null, action: 'failed', error: 'x'.repeat(10_000) },
  ]);

  assert.equal(record.versions[0]?.error?.length, 400);
});

test('fault: a forged input is refused: another runner, no start time, an unknown action, too many results', () => {
  const ok: VersionResult = { series: SERIES, version: '1.1', galleryVersion: '1.1.0', action: 'exists' };
  assert.throws(() => runRecordOf(SERIES, 'admin', START, END, [ok]), /runner/);
  assert.throws(() => runRecordOf(SERIES, 'cli', 'yesterday', END, [ok]), /time the run started/);
  const forged = { ...ok, action: 'destroyed' } as unknown as VersionResult;
  assert.throws(() => runRecordOf(SERIES, 'cli', START, END, [forged]), /action/);
  assert.throws(
    () => runRecordOf(SERIES, 'cli', START, END, Array<VersionResult>(201).fill(ok)),
    /at most 200/,
  );
});

test('a run at the largest caps is recorded: 50 mirrored, 50 extended, 20 deleted, and what exists', () => {
  const ok: VersionResult = { series: SERIES, version: '1.1', galleryVersion: '1.1.0', action: 'extended' };
  assert.equal(
    runRecordOf(SERIES, 'cli', START, END, Array<VersionResult>(121).fill(ok)).versions.length,
    121,
  );
});
