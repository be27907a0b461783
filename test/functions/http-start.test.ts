/**
 * `POST /api/mirror` as the host delivers it: the request and the durable client binding in RPC form,
 * the real DurableClient of durable-functions talking to a fake of the Durable extension's HTTP API.
 */

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  startFakeDurableExtension,
  type FakeDurableExtension,
} from '../support/functions-core/durable-extension.js';
import {
  httpData,
  httpResult,
  invokeFunction,
  loadFunctionsApp,
  type HttpResult,
  type WorkerLogLine,
} from '../support/functions-core/host.js';
import { JAMMY, NOBLE, starterSettings } from '../support/app-settings.js';
import { failingStarts } from '../support/failing-starts.js';

const URL_BASE = 'https://stemcell-mirror.azurewebsites.net/api/mirror?code=functionkey';

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

async function post(body?: string, durableClient = extension.clientBinding()): Promise<HttpResult> {
  return (await postLogged(body, durableClient)).result;
}

async function postLogged(
  body: string | undefined,
  durableClient = extension.clientBinding(),
): Promise<{ result: HttpResult; logs: WorkerLogLine[] }> {
  const init = { method: 'POST', url: URL_BASE, headers: { 'content-type': 'application/json' } };
  const { response, logs } = await invokeFunction('mirrorHttpStart', {
    httpTrigger: httpData(body === undefined ? init : { ...init, body }),
    durableClient,
  });
  return { result: httpResult(response), logs };
}

function json(result: HttpResult): Record<string, unknown> {
  return JSON.parse(result.body) as Record<string, unknown>;
}

describe('accepted requests', () => {
  test('a series and version start that series’ orchestration and answer 202 with the app’s own status URL', async () => {
    const result = await post(JSON.stringify({ series: JAMMY, version: '1.1364' }));

    assert.equal(result.status, 202);
    assert.deepEqual(json(result), {
      id: `mirror-${JAMMY}`,
      series: JAMMY,
      statusUri: `https://stemcell-mirror.azurewebsites.net/api/mirror/${JAMMY}`,
    });
    assert.equal(result.headers.location, `https://stemcell-mirror.azurewebsites.net/api/mirror/${JAMMY}`);
    assert.deepEqual(extension.starts, [
      {
        name: 'mirrorSeries',
        instanceId: `mirror-${JAMMY}`,
        input: { request: { series: JAMMY, version: '1.1364' } },
        accepted: true,
      },
    ]);
  });

  test('no body starts every configured series', async () => {
    const result = await post();

    assert.equal(result.status, 202);
    assert.deepEqual(
      extension.starts.map((s) => s.input),
      [{ request: { series: JAMMY } }, { request: { series: NOBLE } }],
    );
    const instances = json(result).instances as Array<Record<string, unknown>>;
    assert.deepEqual(
      instances.map((i) => [i.series, i.outcome, i.started, i.id]),
      [
        [JAMMY, 'started', true, `mirror-${JAMMY}`],
        [NOBLE, 'started', true, `mirror-${NOBLE}`],
      ],
    );
  });

  test('a series whose last run completed or failed is started again', async () => {
    extension.putInstance(`mirror-${JAMMY}`, 'Failed');

    const result = await post(JSON.stringify({ series: JAMMY }));

    assert.equal(result.status, 202);
    assert.equal(extension.instances.get(`mirror-${JAMMY}`)?.runtimeStatus, 'Pending');
  });
});

describe('a series already being mirrored', () => {
  test('answers 409 with the running instance’s status URL and starts nothing', async () => {
    extension.putInstance(`mirror-${JAMMY}`, 'Running');

    const result = await post(JSON.stringify({ series: JAMMY }));

    assert.equal(result.status, 409);
    const body = json(result);
    assert.match(String(body.error), /already being mirrored.*Running/);
    assert.equal(body.id, `mirror-${JAMMY}`);
    assert.equal(body.statusUri, `https://stemcell-mirror.azurewebsites.net/api/mirror/${JAMMY}`);
    assert.equal(extension.starts.length, 0);
  });

  test('with no body, a running series is skipped and the others start', async () => {
    extension.putInstance(`mirror-${NOBLE}`, 'ContinuedAsNew');

    const result = await post('');

    assert.equal(result.status, 202);
    const instances = json(result).instances as Array<Record<string, unknown>>;
    assert.deepEqual(
      instances.map((i) => [i.series, i.outcome, i.started, i.runtimeStatus]),
      [
        [JAMMY, 'started', true, undefined],
        [NOBLE, 'running', false, 'ContinuedAsNew'],
      ],
    );
    assert.deepEqual(
      extension.starts.map((s) => s.instanceId),
      [`mirror-${JAMMY}`],
    );
  });
});

describe('bad bodies answer 400 and start nothing', () => {
  // Every rule of the body is in test/unit/http-start.test.ts; these show the host answers 400 for them.
  const cases: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"series": ', /not valid JSON/],
    ['an unknown field', JSON.stringify({ series: JAMMY, dryRun: true }), /unknown field/],
    [
      'a valid series this app does not mirror',
      JSON.stringify({ series: 'bosh-aws-xen-hvm-ubuntu-jammy-go_agent' }),
      /not one this app mirrors/,
    ],
    [
      'a version without a series when several are configured',
      JSON.stringify({ version: '1.100' }),
      /"series" is required/,
    ],
  ];
  for (const [what, body, message] of cases) {
    test(`${what}`, async () => {
      const result = await post(body);

      assert.equal(result.status, 400);
      assert.match(String(json(result).error), message);
      assert.equal(extension.starts.length, 0);
    });
  }

  test('a series name with markup reaches the series check, and the error does not repeat it', async () => {
    const result = await post(JSON.stringify({ series: '<script>alert(1)</script>' }));

    assert.equal(result.status, 400);
    assert.match(String(json(result).error), /"series" is not a stemcell series name/);
    assert.doesNotMatch(result.body, /script|alert/);
    assert.equal(extension.starts.length, 0);
  });

  test('a version with markup reaches the version check, and the error does not repeat it', async () => {
    const result = await post(JSON.stringify({ series: JAMMY, version: '<img src=x onerror=alert(1)>' }));

    assert.equal(result.status, 400);
    assert.match(String(json(result).error), /"version" is not a stemcell version/);
    assert.doesNotMatch(result.body, /img|onerror|alert/);
    assert.equal(extension.starts.length, 0);
  });

  test('an unknown field named with markup is not repeated either', async () => {
    const result = await post(JSON.stringify({ series: JAMMY, '<img>': 1 }));

    assert.equal(result.status, 400);
    assert.match(String(json(result).error), /unknown field/);
    assert.doesNotMatch(result.body, /img/);
  });
});

describe('a body larger than 4 KiB', () => {
  test('answers 413, does not repeat it and starts nothing', async () => {
    const body = JSON.stringify({ series: JAMMY, version: '1.1364', padding: 'x'.repeat(5000) });
    assert.ok(Buffer.byteLength(body) > 4096);

    const result = await post(body);

    assert.equal(result.status, 413);
    assert.match(String(json(result).error), /larger than 4096 bytes/);
    assert.doesNotMatch(result.body, /xxxx/);
    assert.equal(extension.starts.length, 0);
  });

  test('a body of exactly 4096 bytes is still read', async () => {
    const prefix = JSON.stringify({ series: JAMMY }).slice(0, -1);
    const body = `${prefix}${' '.repeat(4096 - prefix.length - 1)}}`;
    assert.equal(Buffer.byteLength(body), 4096);

    const result = await post(body);

    assert.equal(result.status, 202);
  });
});

describe('two starts of the same series at once', () => {
  test('the one that loses the race answers 409 with the winner’s status URLs', async () => {
    // Nothing runs when the starter looks, but another start lands between its look and its own start.
    extension.competingStart(`mirror-${JAMMY}`);

    const result = await post(JSON.stringify({ series: JAMMY }));

    assert.equal(result.status, 409);
    const body = json(result);
    assert.match(String(body.error), /already being mirrored.*Pending/);
    assert.equal(body.id, `mirror-${JAMMY}`);
    assert.deepEqual(
      extension.starts.map((s) => [s.instanceId, s.accepted]),
      [[`mirror-${JAMMY}`, false]],
    );
    assert.equal(extension.instances.size, 1, 'one instance, the winner’s');
  });

  test('with no body, a series lost to a race is reported running and the others start', async () => {
    extension.competingStart(`mirror-${NOBLE}`);

    const result = await post();

    assert.equal(result.status, 202);
    const instances = json(result).instances as Array<Record<string, unknown>>;
    assert.deepEqual(
      instances.map((i) => [i.series, i.outcome, i.runtimeStatus]),
      [
        [JAMMY, 'started', undefined],
        [NOBLE, 'running', 'Pending'],
      ],
    );
  });
});

describe('a series whose orchestration cannot be started', () => {
  test('with no body, the others still start; 202 lists each outcome and the failure is logged', async () => {
    const proxy = await failingStarts(extension, [`mirror-${JAMMY}`]);
    try {
      const { result, logs } = await postLogged(undefined, proxy.binding);

      assert.equal(result.status, 202);
      const body = json(result);
      assert.match(String(body.error), /1 of 2 series could not be started/);
      const instances = body.instances as Array<Record<string, unknown>>;
      assert.deepEqual(
        instances.map((i) => [i.series, i.outcome, i.started, i.id]),
        [
          [JAMMY, 'failed', false, `mirror-${JAMMY}`],
          [NOBLE, 'started', true, `mirror-${NOBLE}`],
        ],
      );
      assert.match(String(instances[0]!.error), /could not start .*function log/);
      assert.equal(instances[0]!.statusUri, undefined, 'no status URL for an instance that does not exist');
      assert.equal(instances[1]!.statusUri, `https://stemcell-mirror.azurewebsites.net/api/mirror/${NOBLE}`);
      assert.doesNotMatch(result.body, /task hub storage account/, 'the cause stays in the log');
      assert.deepEqual(proxy.refused, [`mirror-${JAMMY}`]);
      assert.deepEqual(
        extension.starts.map((s) => [s.instanceId, s.accepted]),
        [[`mirror-${NOBLE}`, true]],
      );
      assert.ok(
        logs.some(
          (l) =>
            l.level === 'error' &&
            l.message.includes(`${JAMMY}: could not start the mirror orchestration`) &&
            l.message.includes('task hub storage account'),
        ),
        JSON.stringify(logs),
      );
    } finally {
      await proxy.stop();
    }
  });

  test('when none can start and one failed, 500 lists the running one and the failed one', async () => {
    extension.putInstance(`mirror-${NOBLE}`, 'Running');
    const proxy = await failingStarts(extension, [`mirror-${JAMMY}`]);
    try {
      const result = await post(undefined, proxy.binding);

      assert.equal(result.status, 500);
      const body = json(result);
      assert.match(String(body.error), /no series could be started: 1 failed, 1 already being mirrored/);
      const instances = body.instances as Array<Record<string, unknown>>;
      assert.deepEqual(
        instances.map((i) => [i.series, i.outcome]),
        [
          [JAMMY, 'failed'],
          [NOBLE, 'running'],
        ],
      );
      assert.equal(extension.starts.length, 0);
    } finally {
      await proxy.stop();
    }
  });

  test('fault: one named series that cannot be started answers 500 without the cause', async () => {
    const proxy = await failingStarts(extension, [`mirror-${JAMMY}`]);
    try {
      const result = await post(JSON.stringify({ series: JAMMY }), proxy.binding);

      assert.equal(result.status, 500);
      const body = json(result);
      assert.match(
        String(body.error),
        /could not start the mirror orchestration; the function log has the cause/,
      );
      assert.equal(body.id, `mirror-${JAMMY}`);
      assert.doesNotMatch(result.body, /task hub storage account/);
    } finally {
      await proxy.stop();
    }
  });

  test('every series already running answers 409 with each one listed', async () => {
    extension.putInstance(`mirror-${JAMMY}`, 'Running');
    extension.putInstance(`mirror-${NOBLE}`, 'Suspended');

    const result = await post();

    assert.equal(result.status, 409);
    const instances = json(result).instances as Array<Record<string, unknown>>;
    assert.deepEqual(
      instances.map((i) => [i.series, i.outcome, i.runtimeStatus]),
      [
        [JAMMY, 'running', 'Running'],
        [NOBLE, 'running', 'Suspended'],
      ],
    );
    assert.equal(extension.starts.length, 0);
  });
});

describe('what the answers carry', () => {
  test('fault: no answer of the starter carries the task hub’s system key or a Durable management URL', async () => {
    const answers: HttpResult[] = [];
    answers.push(await post(JSON.stringify({ series: JAMMY }))); // 202, one series
    answers.push(await post(JSON.stringify({ series: JAMMY }))); // 409, it is running now
    extension.instances.clear();
    answers.push(await post()); // 202, every series
    answers.push(await post()); // 409, every series running
    extension.instances.clear();
    const proxy = await failingStarts(extension, [`mirror-${JAMMY}`]);
    try {
      answers.push(await post(undefined, proxy.binding)); // 202 with a failed series
      answers.push(await post(JSON.stringify({ series: JAMMY }), proxy.binding)); // 500
    } finally {
      await proxy.stop();
    }

    assert.deepEqual(
      answers.map((a) => a.status),
      [202, 409, 202, 409, 202, 500],
    );
    for (const answer of answers) {
      const seen = `${JSON.stringify(answer.headers)} ${answer.body}`;
      assert.doesNotMatch(seen, /systemkey|code=|webhooks|durabletask|taskHub|purge|terminate|rewind/i, seen);
    }
  });
});
