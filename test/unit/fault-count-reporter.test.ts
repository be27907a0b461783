import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const reporter = fileURLToPath(new URL('../support/fault-count-reporter.js', import.meta.url));
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fault-count-'));
  await writeFile(
    join(dir, 'a.test.mjs'),
    [
      "import { describe, test } from 'node:test';",
      "test('fault: a corrupt tarball is refused', () => {});",
      "test('a plain behaviour', () => {});",
      "test('fault: not run here', { skip: true }, () => {});",
      "describe('fault: a suite is not a scenario', () => {",
      "  test('fault: a nested scenario counts', () => {});",
      '});',
    ].join('\n'),
  );
  await writeFile(
    join(dir, 'b.test.mjs'),
    "import { test } from 'node:test';\ntest('fault: a failing scenario still counts', () => { throw new Error('x'); });\n",
  );
});

after(() => rm(dir, { recursive: true, force: true }));

async function report(): Promise<string[]> {
  const args = ['--test', `--test-reporter=${reporter}`, join(dir, 'a.test.mjs'), join(dir, 'b.test.mjs')];
  try {
    // Without the runner's own marker, which would make the inner run report to this one instead.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    await promisify(execFile)(process.execPath, args, { env });
  } catch (error) {
    // One fixture test fails on purpose, so the run exits 1; its output is what is checked.
    return (error as { stdout: string }).stdout.trimEnd().split('\n');
  }
  assert.fail('the failing fixture test should have failed the run');
}

test('the run prints how many fault scenarios ran, skipped tests and suites aside', async () => {
  const lines = await report();
  assert.deepEqual(
    lines.filter((line) => line.startsWith('fault scenarios:')),
    ['fault scenarios: 3'],
  );
});

test("Node's TAP closing lines stay on stdout, last, after the fault count", async () => {
  const lines = await report();
  const closing = lines.slice(-8).map((line) => line.replace(/\d+(\.\d+)?$/, 'N'));
  assert.deepEqual(closing, [
    '# tests N',
    '# suites N',
    '# pass N',
    '# fail N',
    '# cancelled N',
    '# skipped N',
    '# todo N',
    '# duration_ms N',
  ]);
  assert.equal(lines.at(-9), 'fault scenarios: 3');
  assert.ok(lines.includes('# tests 5') && lines.includes('# pass 3') && lines.includes('# fail 1'));
});
