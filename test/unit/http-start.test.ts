/**
 * The HTTP starter's rules without the Functions host: what a body may say, and how the starts' outcomes
 * become one answer. test/functions/http-start.test.ts drives the same code through the host.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseMirrorHttpBody, seriesStatusUrl, startAnswer } from '../../src/http-start.js';
import type { SeriesStartOutcome } from '../../src/starts.js';

const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const NOBLE = 'bosh-azure-hyperv-ubuntu-noble';
const CONFIGURED = [JAMMY, NOBLE];

describe('parseMirrorHttpBody', () => {
  const accepted: Array<[string, string, readonly string[], object]> = [
    ['an empty body', '', CONFIGURED, {}],
    ['a blank body', ' \n', CONFIGURED, {}],
    ['an empty object', '{}', CONFIGURED, {}],
    ['a configured series', JSON.stringify({ series: NOBLE }), CONFIGURED, { series: NOBLE }],
    [
      'a series and a version',
      JSON.stringify({ series: JAMMY, version: '1.1364' }),
      CONFIGURED,
      { series: JAMMY, version: '1.1364' },
    ],
    [
      'a version alone when one series is configured',
      JSON.stringify({ version: '1.1' }),
      [JAMMY],
      { version: '1.1' },
    ],
  ];
  for (const [what, text, configured, value] of accepted) {
    test(`accepts ${what}`, () => {
      assert.deepEqual(parseMirrorHttpBody(text, configured), { ok: true, value });
    });
  }

  const refused: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"series": ', /not valid JSON/],
    ['a JSON array', '["bosh"]', /must be a JSON object/],
    ['JSON null', 'null', /must be a JSON object/],
    ['a JSON string', '"bosh-azure-hyperv-ubuntu-jammy-go_agent"', /must be a JSON object/],
    ['an unknown field', JSON.stringify({ series: JAMMY, dryRun: true }), /unknown field/],
    [
      'a series that is not a series name',
      JSON.stringify({ series: '../../etc/passwd' }),
      /not a stemcell series name/,
    ],
    [
      'a valid series this app does not mirror',
      JSON.stringify({ series: 'bosh-aws-xen-hvm-ubuntu-jammy-go_agent' }),
      /not one this app mirrors/,
    ],
    ['a series that is not a string', JSON.stringify({ series: ['a'] }), /"series" must be a string/],
    [
      'a version that is not a version',
      JSON.stringify({ series: JAMMY, version: '1.100-rc1' }),
      /not a stemcell version/,
    ],
    [
      'a version that is a number',
      JSON.stringify({ series: JAMMY, version: 1.1 }),
      /"version" must be a string/,
    ],
    [
      'a version without a series when several are configured',
      JSON.stringify({ version: '1.100' }),
      /"series" is required/,
    ],
  ];
  for (const [what, text, message] of refused) {
    test(`refuses ${what}`, () => {
      const parsed = parseMirrorHttpBody(text, CONFIGURED);
      assert.equal(parsed.ok, false);
      assert.match((parsed as { error: string }).error, message);
    });
  }

  test('refuses a version in BASM_SKIP_VERSIONS, naming the setting', () => {
    const skip = ['1.918', '1.926'];
    const parsed = parseMirrorHttpBody(JSON.stringify({ series: JAMMY, version: '1.918' }), CONFIGURED, skip);
    assert.deepEqual(parsed, {
      ok: false,
      error: '"version" is in BASM_SKIP_VERSIONS: the mirror never mirrors it; remove it there to mirror it',
    });
    const other = parseMirrorHttpBody(JSON.stringify({ series: JAMMY, version: '1.919' }), CONFIGURED, skip);
    assert.deepEqual(other, { ok: true, value: { series: JAMMY, version: '1.919' } });
  });

  test('fault: never repeats what the caller sent', () => {
    for (const text of [
      JSON.stringify({ series: '<script>alert(1)</script>' }),
      JSON.stringify({ series: JAMMY, version: '<img src=x onerror=alert(1)>' }),
      JSON.stringify({ series: JAMMY, '<img>': 1 }),
      '{"<img>": ',
    ]) {
      const parsed = parseMirrorHttpBody(text, CONFIGURED);
      assert.equal(parsed.ok, false, text);
      assert.doesNotMatch((parsed as { error: string }).error, /script|img|alert/, text);
    }
  });
});

describe('startAnswer', () => {
  const REQUEST = 'https://mirror.example.net/api/mirror?code=functionkey';
  const started = (series: string): SeriesStartOutcome => ({
    started: true,
    series,
    instanceId: `mirror-${series}`,
  });
  const running = (series: string): SeriesStartOutcome => ({
    started: false,
    series,
    instanceId: `mirror-${series}`,
    runtimeStatus: 'Running',
  });
  const failed = (series: string): SeriesStartOutcome => ({
    failed: true,
    series,
    instanceId: `mirror-${series}`,
  });

  const statuses: Array<[string, SeriesStartOutcome[], number]> = [
    ['one series started', [started(JAMMY)], 202],
    ['one series already running', [running(JAMMY)], 409],
    ['one series that failed to start', [failed(JAMMY)], 500],
    ['several, all started', [started(JAMMY), started(NOBLE)], 202],
    ['several, one started and one running', [started(JAMMY), running(NOBLE)], 202],
    ['several, one started and one failed', [failed(JAMMY), started(NOBLE)], 202],
    ['several, all running', [running(JAMMY), running(NOBLE)], 409],
    ['several, none started and one failed', [failed(JAMMY), running(NOBLE)], 500],
    ['several, all failed', [failed(JAMMY), failed(NOBLE)], 500],
  ];
  for (const [what, outcomes, status] of statuses) {
    test(`${what}: ${status}`, () => {
      const answer = startAnswer(outcomes, REQUEST);
      assert.equal(answer.status, status);
      assert.doesNotMatch(JSON.stringify(answer), /code=|webhooks|durabletask/);
    });
  }

  test('one started series answers its instance id and the app’s own status URL, without any key', () => {
    const answer = startAnswer([started(JAMMY)], REQUEST);
    const uri = `https://mirror.example.net/api/mirror/${JAMMY}`;
    assert.deepEqual(answer.jsonBody, { id: `mirror-${JAMMY}`, series: JAMMY, statusUri: uri });
    assert.equal(answer.headers?.Location, uri);
  });

  test('the status URL follows the route the caller reached, whatever its prefix', () => {
    assert.equal(
      seriesStatusUrl('https://mirror.example.net/stemcells/mirror/?code=k#x', NOBLE),
      `https://mirror.example.net/stemcells/mirror/${NOBLE}`,
    );
  });

  test('a failed start says where the cause is, and nothing of the cause', () => {
    const answer = startAnswer([failed(JAMMY), started(NOBLE)], REQUEST);
    const body = answer.jsonBody as { error: string; instances: Array<Record<string, unknown>> };
    assert.match(body.error, /1 of 2 series could not be started/);
    assert.deepEqual(body.instances, [
      {
        series: JAMMY,
        outcome: 'failed',
        started: false,
        id: `mirror-${JAMMY}`,
        error: 'could not start the mirror orchestration; the function log has the cause',
      },
      {
        series: NOBLE,
        outcome: 'started',
        started: true,
        id: `mirror-${NOBLE}`,
        statusUri: `https://mirror.example.net/api/mirror/${NOBLE}`,
      },
    ]);
  });
});
