/**
 * What the Functions host sees when it loads the app: every function's name and bindings, as handed to
 * `@azure/functions-core` (the stand-in records them).
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import { STEP_RETRY } from '../../src/workflow.js';
import {
  bindingOf,
  loadFunctionsApp,
  registeredFunction,
  registeredFunctions,
} from '../support/functions-core/host.js';
import type { RpcFunctionMetadata } from '../support/functions-core/index.js';
import { JAMMY, starterSettings } from '../support/app-settings.js';

const SCHEDULE = '0 30 2 * * *';

before(async () => {
  Object.assign(process.env, starterSettings(JAMMY), { BASM_TIMER_SCHEDULE: SCHEDULE });
  await loadFunctionsApp();
});

/** Loads the app in a fresh process (settings read at load time) and returns what it registered. */
function registrationsWith(env: Record<string, string>): {
  status: number | null;
  stderr: string;
  functions: RpcFunctionMetadata[];
} {
  const script = fileURLToPath(new URL('../support/functions-core/print-registrations.js', import.meta.url));
  const child = spawnSync(process.execPath, [script], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
  });
  return {
    status: child.status,
    stderr: child.stderr,
    functions: child.status === 0 ? (JSON.parse(child.stdout) as RpcFunctionMetadata[]) : [],
  };
}

function withoutNames(binding: Record<string, unknown>): Record<string, unknown> {
  const { name: _name, properties: _properties, ...rest } = binding;
  return rest;
}

test('registers the timer, the HTTP starter, the status endpoint, both orchestrators and one activity per step, and nothing else', () => {
  assert.deepEqual(
    registeredFunctions()
      .map((f) => f.metadata.name)
      .sort(),
    [
      'mirrorHttpStart',
      'mirrorSeries',
      'mirrorStatus',
      'mirrorTimer',
      'mirrorVersion',
      ...Object.keys(STEP_RETRY),
    ].sort(),
  );
});

describe('mirrorTimer', () => {
  test('fires on BASM_TIMER_SCHEDULE and not when the app starts', () => {
    assert.deepEqual(withoutNames(bindingOf('mirrorTimer', 'timerTrigger')), {
      type: 'timerTrigger',
      direction: 'in',
      schedule: SCHEDULE,
      runOnStartup: false,
    });
  });

  test('has a durable client input', () => {
    assert.deepEqual(withoutNames(bindingOf('mirrorTimer', 'durableClient')), {
      type: 'durableClient',
      direction: 'in',
    });
  });

  test('defaults to daily at 06:00 without BASM_TIMER_SCHEDULE', () => {
    const loaded = registrationsWith(starterSettings(JAMMY));

    assert.equal(loaded.status, 0, loaded.stderr);
    const timer = loaded.functions.find((f) => f.name === 'mirrorTimer');
    const trigger = Object.values(timer?.bindings ?? {}).find((b) => b.type === 'timerTrigger');
    assert.equal(trigger?.schedule, '0 0 6 * * *');
  });

  test('fault: refuses to load with a BASM_TIMER_SCHEDULE that is not a six-field NCRONTAB expression', () => {
    const loaded = registrationsWith({ ...starterSettings(JAMMY), BASM_TIMER_SCHEDULE: '0 6 * * *' });

    assert.notEqual(loaded.status, 0);
    assert.match(
      loaded.stderr,
      /BASM_TIMER_SCHEDULE: "0 6 \* \* \*" is not valid; expected a six-field NCRONTAB/,
    );
  });
});

describe('mirrorHttpStart', () => {
  test('answers POST /api/mirror with a function key', () => {
    assert.deepEqual(withoutNames(bindingOf('mirrorHttpStart', 'httpTrigger')), {
      type: 'httpTrigger',
      direction: 'in',
      route: 'mirror',
      methods: ['POST'],
      authLevel: 'function',
    });
  });

  test('returns its HTTP response and has a durable client input', () => {
    assert.equal(registeredFunction('mirrorHttpStart').metadata.bindings.$return?.type, 'http');
    assert.deepEqual(withoutNames(bindingOf('mirrorHttpStart', 'durableClient')), {
      type: 'durableClient',
      direction: 'in',
    });
  });
});

describe('mirrorStatus', () => {
  test('answers GET /api/mirror and GET /api/mirror/{series} with a function key, read-only', () => {
    assert.deepEqual(withoutNames(bindingOf('mirrorStatus', 'httpTrigger')), {
      type: 'httpTrigger',
      direction: 'in',
      route: 'mirror/{series?}',
      methods: ['GET'],
      authLevel: 'function',
    });
  });
});

test('the orchestrators have exactly one binding, their orchestration trigger', () => {
  for (const name of ['mirrorSeries', 'mirrorVersion']) {
    const bindings = Object.values(registeredFunction(name).metadata.bindings);
    assert.deepEqual(bindings.map(withoutNames), [{ type: 'orchestrationTrigger', direction: 'in' }], name);
  }
});

test('each activity has exactly one binding, its activity trigger', () => {
  for (const name of Object.keys(STEP_RETRY)) {
    const bindings = Object.values(registeredFunction(name).metadata.bindings);
    assert.deepEqual(bindings.map(withoutNames), [{ type: 'activityTrigger', direction: 'in' }], name);
  }
});
