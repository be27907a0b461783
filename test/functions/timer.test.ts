/**
 * The timer trigger as the host fires it: one `mirrorSeries` start per configured series, through the
 * real DurableClient against a fake of the Durable extension's HTTP API.
 */

import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import {
  startFakeDurableExtension,
  type FakeDurableExtension,
} from '../support/functions-core/durable-extension.js';
import {
  invokeFunction,
  jsonData,
  loadFunctionsApp,
  type Invocation,
} from '../support/functions-core/host.js';
import { JAMMY, NOBLE, starterSettings } from '../support/app-settings.js';
import { failingStarts } from '../support/failing-starts.js';

let extension: FakeDurableExtension;

before(async () => {
  Object.assign(process.env, starterSettings(`${JAMMY},${NOBLE}`));
  extension = await startFakeDurableExtension();
  await loadFunctionsApp();
});
after(async () => {
  await extension?.stop();
});
beforeEach(() => {
  extension.instances.clear();
  extension.starts.length = 0;
});

/** The timer's input as the host sends it (PascalCase; the library camel-cases it). */
function fire(): Promise<Invocation> {
  return invokeFunction('mirrorTimer', {
    timerTrigger: jsonData({ Schedule: { AdjustForDST: true }, ScheduleStatus: null, IsPastDue: false }),
    durableClient: extension.clientBinding(),
  });
}

test('starts one mirrorSeries orchestration per configured series', async () => {
  await fire();

  assert.deepEqual(extension.starts, [
    {
      name: 'mirrorSeries',
      instanceId: `mirror-${JAMMY}`,
      input: { request: { series: JAMMY } },
      accepted: true,
    },
    {
      name: 'mirrorSeries',
      instanceId: `mirror-${NOBLE}`,
      input: { request: { series: NOBLE } },
      accepted: true,
    },
  ]);
});

test('skips a series whose orchestration is still running, and logs why', async () => {
  extension.putInstance(`mirror-${JAMMY}`, 'Running');

  const { logs } = await fire();

  assert.deepEqual(
    extension.starts.map((s) => s.instanceId),
    [`mirror-${NOBLE}`],
  );
  assert.ok(
    logs.some((l) => l.category === 'user' && l.message.includes(`mirror-${JAMMY} is still Running`)),
    JSON.stringify(logs),
  );
});

test('restarts a series whose previous orchestration completed', async () => {
  extension.putInstance(`mirror-${JAMMY}`, 'Completed');

  await fire();

  assert.deepEqual(
    extension.starts.map((s) => s.instanceId),
    [`mirror-${JAMMY}`, `mirror-${NOBLE}`],
  );
});

test('fault: a start that loses a race with another start counts as running, not as a failure', async () => {
  extension.competingStart(`mirror-${NOBLE}`);

  await fire();

  assert.deepEqual(
    extension.starts.map((s) => [s.instanceId, s.accepted]),
    [
      [`mirror-${JAMMY}`, true],
      [`mirror-${NOBLE}`, false],
    ],
  );
});

test('fault: fails the invocation, after starting the others, when a series cannot be started', async () => {
  const proxy = await failingStarts(extension, [`mirror-${JAMMY}`]);
  try {
    await assert.rejects(
      invokeFunction('mirrorTimer', {
        timerTrigger: jsonData({ Schedule: { AdjustForDST: true }, ScheduleStatus: null, IsPastDue: false }),
        durableClient: proxy.binding,
      }),
      (error: Error) => {
        assert.match(error.message, new RegExp(`could not start the mirror of ${JAMMY};`));
        assert.doesNotMatch(error.message, /noble/, 'the series that started is not reported as failed');
        return true;
      },
    );

    // The first series failed, and the second was still started after it.
    assert.deepEqual(proxy.refused, [`mirror-${JAMMY}`]);
    assert.deepEqual(extension.starts, [
      {
        name: 'mirrorSeries',
        instanceId: `mirror-${NOBLE}`,
        input: { request: { series: NOBLE } },
        accepted: true,
      },
    ]);
    assert.equal(extension.instances.get(`mirror-${NOBLE}`)?.runtimeStatus, 'Pending');
    assert.equal(extension.instances.has(`mirror-${JAMMY}`), false);
  } finally {
    await proxy.stop();
  }
});
