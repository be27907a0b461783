/**
 * The command line's engine: the workflow's generators driven in this process, over step implementations
 * passed in as plain async functions keyed by step name (the runner's real input). Retries are made
 * instant with `retryIntervalScale: 0`.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InProcessRunner } from '../../src/in-process-runner.js';
import type { StemcellManifest } from '../../src/manifest.js';
import type { Logger } from '../../src/services.js';
import type { MirrorSteps } from '../../src/steps.js';
import {
  STEP_RETRY,
  type ExtractedStemcellSummary,
  type MonitorSettings,
  type StepInputs,
  type StepName,
  type StepOutcome,
  type StepOutputs,
  type VersionResult,
  type VersionStatus,
} from '../../src/workflow.js';
import { SERIES, release } from '../support/stemcell-release.js';

// getImageVersionState hands the settings to the workflow: here a plain object, so the config's 1 s minimum
// poll interval does not apply, and a 10 ms interval keeps the monitor loop's real timers short.
const MONITOR: MonitorSettings = { pollIntervalSeconds: 0.01, deadlineMinutes: 5 };
// acquireSeriesLock hands the lock wait to the workflow the same way: 0 s, the settings' "report at once".
const NO_WAIT = { waitSeconds: 0, pollIntervalSeconds: 0.01 };

const manifest = { name: SERIES, version: '1.100' } as unknown as StemcellManifest;
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

const ok = <T>(value: T) => ({ ok: true as const, value });

/** What each step does when called: return an outcome, or throw (a transient error). */
type StepBehaviour = {
  [N in StepName]: (input: StepInputs[N]) => StepOutcome<StepOutputs[N]>;
};

/**
 * Async step implementations that mirror one version without trouble, recording each call; `overrides`
 * replace the behaviour of some of them.
 */
function recordingSteps(overrides: Partial<StepBehaviour> = {}): { steps: MirrorSteps; calls: StepName[] } {
  const calls: StepName[] = [];
  const happy: StepBehaviour = {
    acquireSeriesLock: () => ok({ acquired: true, wait: NO_WAIT }),
    releaseSeriesLock: () => ok({ released: true }),
    resolveVersions: () =>
      ok({
        series: SERIES,
        mirror: [{ release, galleryVersion: '1.100.0', reason: 'newest' as const }],
        newest: release,
        deferred: [],
      }),
    downloadAndExtract: () => ok(stemcell),
    uploadVhd: () => ok({ blobUrl, bytesUploaded: 1_048_576, dataBytes: 1_048_576, alreadyComplete: false }),
    ensureImageDefinition: () => ok({ definitionName, created: true }),
    extendImageVersion: () => ok({ definitionName, extended: true, change: 'adds eastus' }),
    createImageVersion: () =>
      ok({ outcome: 'started' as const, provisioningState: 'Creating', definitionName }),
    adoptImageVersion: () => ok({ definitionName }),
    getImageVersionState: () => ok({ provisioningState: 'Succeeded', monitor: MONITOR }),
    notify: () => ok({ notified: true }),
    deleteSourceBlob: () => ok({ deleted: true }),
    deleteImageVersion: () => ok({ deleted: true, blobDeleted: true, reason: 'older than the newest 2' }),
    cleanup: () => ok({ removed: true }),
    recordRun: (input) =>
      ok({
        outcome: input.results.some((r) => r.action === 'failed')
          ? ('failed' as const)
          : ('succeeded' as const),
      }),
  };
  const all = { ...happy, ...overrides };
  const steps = Object.fromEntries(
    (Object.keys(all) as StepName[]).map((name) => [
      name,
      (input: unknown): Promise<unknown> => {
        calls.push(name);
        return Promise.resolve(input).then(all[name] as (input: unknown) => unknown);
      },
    ]),
  ) as unknown as MirrorSteps;
  return { steps, calls };
}

function quietLog(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => {}, warn: (message) => warnings.push(message) };
}

async function mirrorOne(
  steps: MirrorSteps,
  onStatus?: (status: unknown) => void,
): Promise<{ result: VersionResult; log: ReturnType<typeof quietLog> }> {
  const log = quietLog();
  const runner = new InProcessRunner({
    steps,
    log,
    retryIntervalScale: 0,
    ...(onStatus ? { onStatus } : {}),
  });
  const output = await runner.runSeries({ series: SERIES });
  assert.equal(output.series, SERIES);
  assert.equal(output.results.length, 1);
  const [result] = output.results;
  assert.ok(result);
  return { result, log };
}

test('the happy path runs the steps in the order of the design and ends with the version created', async () => {
  const { steps, calls } = recordingSteps();

  const { result } = await mirrorOne(steps);

  assert.deepEqual(calls, [
    'acquireSeriesLock',
    'resolveVersions',
    'downloadAndExtract',
    'uploadVhd',
    'ensureImageDefinition',
    'createImageVersion',
    'getImageVersionState',
    'notify',
    'cleanup',
    'recordRun',
    'releaseSeriesLock',
  ]);
  assert.deepEqual(result, {
    series: SERIES,
    version: '1.100',
    galleryVersion: '1.100.0',
    action: 'created',
    blobUrl,
    bytesUploaded: 1_048_576,
  });
});

test('the monitor loop polls the image version until Azure reports it Succeeded, then notifies', async () => {
  const states = ['Creating', 'Creating', 'Succeeded'];
  const { steps, calls } = recordingSteps({
    getImageVersionState: () => ok({ provisioningState: states.shift() ?? 'Succeeded', monitor: MONITOR }),
  });

  const { result } = await mirrorOne(steps);

  assert.deepEqual(
    calls.filter((name) => name === 'getImageVersionState' || name === 'notify'),
    ['getImageVersionState', 'getImageVersionState', 'getImageVersionState', 'notify'],
  );
  assert.equal(result.action, 'created');
});

test('fault: a step that keeps throwing is tried STEP_RETRY maxAttempts times, then fails the version with its message', async () => {
  const { steps, calls } = recordingSteps({
    uploadVhd: () => {
      throw new Error('storage answered 503 Server Busy');
    },
  });

  const { result, log } = await mirrorOne(steps);

  assert.equal(calls.filter((name) => name === 'uploadVhd').length, STEP_RETRY.uploadVhd.maxAttempts);
  assert.equal(log.warnings.length, STEP_RETRY.uploadVhd.maxAttempts - 1, 'one warning per retry');
  assert.deepEqual(result, {
    series: SERIES,
    version: '1.100',
    galleryVersion: '1.100.0',
    action: 'failed',
    step: 'uploadVhd',
    error: 'storage answered 503 Server Busy',
  });
});

test('a retry warning starts with the version it is about', async () => {
  let failures = 1;
  const { steps } = recordingSteps({
    uploadVhd: () => {
      if (failures-- > 0) throw new Error('storage answered 503 Server Busy');
      return ok({ blobUrl, bytesUploaded: 1, dataBytes: 1, alreadyComplete: false });
    },
  });

  const { log } = await mirrorOne(steps);

  assert.equal(log.warnings.length, 1);
  assert.match(log.warnings[0] ?? '', new RegExp(`^${SERIES} 1\\.100: uploadVhd failed \\(attempt 1 of `));
});

test('an error the runner is told to give up on is not retried, though the step threw it', async () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  const { steps, calls } = recordingSteps({
    resolveVersions: () => {
      throw refused;
    },
  });
  const log = quietLog();
  const runner = new InProcessRunner({
    steps,
    log,
    retryIntervalScale: 0,
    givesUpOn: (error) => error === refused,
  });

  const output = await runner.runSeries({ series: SERIES });

  assert.deepEqual(calls, ['acquireSeriesLock', 'resolveVersions', 'recordRun', 'releaseSeriesLock']);
  assert.deepEqual(log.warnings, []);
  assert.equal(output.results[0]?.action, 'failed');
  assert.match(String(output.results[0]?.error), /ECONNREFUSED/);
});

test('a step that throws once and then succeeds lets the version continue', async () => {
  let failures = 1;
  const { steps, calls } = recordingSteps({
    downloadAndExtract: () => {
      if (failures-- > 0) throw new Error('bosh.io connection reset');
      return ok(stemcell);
    },
  });

  const { result } = await mirrorOne(steps);

  assert.equal(calls.filter((name) => name === 'downloadAndExtract').length, 2);
  assert.equal(result.action, 'created');
});

test('fault: a permanent failure (an { ok: false } outcome) is not retried and fails the version at that step', async () => {
  const message = 'image definition exists with hyperVGeneration V2, the stemcell is gen1';
  const { steps, calls } = recordingSteps({
    ensureImageDefinition: () => ({ ok: false, error: message }),
  });

  const { result } = await mirrorOne(steps);

  assert.equal(calls.filter((name) => name === 'ensureImageDefinition').length, 1);
  assert.ok(!calls.includes('createImageVersion'), 'nothing after the failed step runs but cleanup');
  assert.equal(result.action, 'failed');
  assert.equal(result.step, 'ensureImageDefinition');
  assert.equal(result.error, message);
});

test('cleanup runs after a failed version too', async () => {
  const { steps, calls } = recordingSteps({
    downloadAndExtract: () => ({ ok: false, error: 'sha256 of the tarball does not match bosh.io' }),
  });

  const { result } = await mirrorOne(steps);

  assert.deepEqual(calls, [
    'acquireSeriesLock',
    'resolveVersions',
    'downloadAndExtract',
    'cleanup',
    'recordRun',
    'releaseSeriesLock',
  ]);
  assert.equal(result.action, 'failed');
});

test('fault: a failing cleanup does not turn a created version into a failed one', async () => {
  const { steps, calls } = recordingSteps({
    cleanup: () => {
      throw new Error('EBUSY: resource busy or locked');
    },
  });

  const { result } = await mirrorOne(steps);

  assert.equal(calls.filter((name) => name === 'cleanup').length, STEP_RETRY.cleanup.maxAttempts);
  assert.equal(result.action, 'created');
  assert.equal(result.error, undefined);
});

test('fault: a series whose versions cannot be resolved ends with one failed result naming resolveVersions', async () => {
  const message = `bosh.io lists no versions of ${SERIES}`;
  const { steps, calls } = recordingSteps({
    resolveVersions: () => ({ ok: false, error: message }),
  });

  const { result } = await mirrorOne(steps);

  assert.deepEqual(calls, ['acquireSeriesLock', 'resolveVersions', 'recordRun', 'releaseSeriesLock']);
  assert.deepEqual(result, {
    series: SERIES,
    version: null,
    galleryVersion: null,
    action: 'failed',
    step: 'resolveVersions',
    error: message,
  });
});

test('status callbacks report each step of the version as it is entered', async () => {
  const states = ['Creating', 'Succeeded'];
  const { steps } = recordingSteps({
    getImageVersionState: () => ok({ provisioningState: states.shift() ?? 'Succeeded', monitor: MONITOR }),
  });
  const statuses: unknown[] = [];

  await mirrorOne(steps, (status) => statuses.push(status));

  const versionSteps = statuses
    .filter((s): s is VersionStatus => typeof s === 'object' && s !== null && 'step' in s)
    .map((s) => (s.provisioningState ? `${s.step}:${s.provisioningState}` : s.step));
  assert.deepEqual(versionSteps, [
    'downloadAndExtract',
    'uploadVhd',
    'ensureImageDefinition',
    'createImageVersion',
    'waitForImageVersion:Creating',
    'waitForImageVersion:Creating',
    'waitForImageVersion:Succeeded',
    'notify:Succeeded',
    'done:Succeeded',
  ]);
  assert.ok(
    statuses.some(
      (s) =>
        typeof s === 'object' &&
        s !== null &&
        'current' in s &&
        (s as { current: { version: string } }).current.version === '1.100',
    ),
    'the series reports which version it is mirroring',
  );
});

/** Steps that record their inputs too. */
function recordingInputs(overrides: Partial<StepBehaviour> = {}) {
  const inputs: Array<[StepName, Record<string, unknown>]> = [];
  const { steps, calls } = recordingSteps(overrides);
  const seen = Object.fromEntries(
    (Object.keys(steps) as StepName[]).map((name) => [
      name,
      (input: unknown) => {
        inputs.push([name, input as Record<string, unknown>]);
        return (steps[name] as (input: unknown) => Promise<unknown>)(input);
      },
    ]),
  ) as unknown as MirrorSteps;
  return { steps: seen, calls, inputs };
}

const HOLDER = {
  holder: 'orchestration mirror-x (pid 7 on app-a)',
  since: '2026-05-04T06:00:00.000Z',
  heartbeatAt: '2026-05-04T06:05:00.000Z',
};

test('the run takes its series first, every step carries that claim, and the series is given back last', async () => {
  const { steps, inputs } = recordingInputs();

  await mirrorOne(steps);

  const [first, ...rest] = inputs;
  assert.equal(first?.[0], 'acquireSeriesLock');
  const claim = first?.[1]['claim'] as { series: string; leaseId: string };
  assert.equal(claim.series, SERIES);
  assert.match(claim.leaseId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(first?.[1]['run'], 'command line');
  assert.deepEqual(inputs.at(-1), ['releaseSeriesLock', { claim }]);
  for (const [name, input] of rest.slice(0, -1))
    assert.deepEqual(input['lock'], claim, `${name} carries no claim`);
});

/** The settings' wait of a minute, looked at every 10 ms (a plain object: no 1 s minimum). */
const WAIT_A_MINUTE = { waitSeconds: 60, pollIntervalSeconds: 0.01 };

test('fault: a series another run holds is waited for, one poll interval at a time, and then mirrored', async () => {
  let looks = 0;
  const { steps, calls } = recordingSteps({
    acquireSeriesLock: () =>
      ++looks < 3
        ? ok({ acquired: false, ...HOLDER, wait: WAIT_A_MINUTE })
        : ok({ acquired: true, wait: WAIT_A_MINUTE }),
  });
  const runner = new InProcessRunner({ steps, log: quietLog(), retryIntervalScale: 0 });

  const output = await runner.runSeries({ series: SERIES });

  assert.equal(output.results[0]?.action, 'created');
  assert.deepEqual(calls.slice(0, 4), [
    'acquireSeriesLock',
    'acquireSeriesLock',
    'acquireSeriesLock',
    'resolveVersions',
  ]);
});

test('fault: a series held beyond the wait ends with one failed result naming the holder; nothing runs, nothing is released', async () => {
  const { steps, calls } = recordingSteps({
    acquireSeriesLock: () => ok({ acquired: false, ...HOLDER, wait: NO_WAIT }),
  });
  const runner = new InProcessRunner({ steps, log: quietLog(), retryIntervalScale: 0 });

  const output = await runner.runSeries({ series: SERIES });

  assert.deepEqual(calls, ['acquireSeriesLock']);
  assert.equal(output.results.length, 1);
  const [result] = output.results;
  assert.equal(result?.action, 'failed');
  assert.equal(result?.step, 'acquireSeriesLock');
  assert.equal(
    result?.error,
    `another run holds series ${SERIES}: ${HOLDER.holder}, since ${HOLDER.since}, last heartbeat ` +
      `${HOLDER.heartbeatAt}; this run waited 0 s and leaves the series to it (BASM_SERIES_LOCK_WAIT_SECONDS)`,
  );
});

test('fault: a step that finds the series taken over fails the version there, and the rest is not attempted', async () => {
  const lost = 'This run no longer holds series x: run b took it over at 2026-05-04T06:30:00.000Z';
  const { steps, calls } = recordingSteps({ uploadVhd: () => ({ ok: false, error: lost }) });

  const { result } = await mirrorOne(steps);

  assert.equal(result.action, 'failed');
  assert.equal(result.step, 'uploadVhd');
  assert.equal(result.error, lost);
  assert.ok(!calls.includes('createImageVersion') && !calls.includes('notify'));
  assert.equal(calls.at(-1), 'releaseSeriesLock');
});

test('a dry run takes no lock', async () => {
  const { steps, calls } = recordingSteps();
  const runner = new InProcessRunner({ steps, log: quietLog(), retryIntervalScale: 0 });

  const output = await runner.runSeries({ series: SERIES, dryRun: true });

  assert.equal(output.results[0]?.action, 'planned');
  assert.deepEqual(calls, ['resolveVersions']);
});

test('the command line records its run as runner cli, with the start time and every result, holding the series', async () => {
  const recorded: Array<StepInputs['recordRun']> = [];
  const { steps, calls } = recordingSteps({
    recordRun: (input) => {
      recorded.push(input);
      return ok({ outcome: 'succeeded' as const });
    },
  });
  const before = Date.now();

  const { result } = await mirrorOne(steps);

  assert.equal(recorded.length, 1);
  const [record] = recorded;
  assert.equal(record?.runner, 'cli');
  assert.equal(record?.series, SERIES);
  assert.ok(Date.parse(record?.startedAt ?? '') >= before - 1000, 'startedAt is this run’s start');
  assert.deepEqual(record?.results, [result]);
  assert.deepEqual(
    calls.slice(-2),
    ['recordRun', 'releaseSeriesLock'],
    'recorded before the series is given back',
  );
});
