import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBar, phaseSummary } from '../../src/progress.js';

const MIB = 1024 * 1024;
const JAMMY = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const download = { series: JAMMY, version: '1.1364', phase: 'download' as const };

test('at 80 columns the bar line keeps the percentage and both sizes, and fits', () => {
  const line = formatBar({ ...download, bytes: 650 * MIB, total: 1300 * MIB }, 80);
  assert.ok(line.length <= 79, `${line.length} characters: ${line}`);
  assert.match(line, / 50% 650\.0 MiB \/ 1\.27 GiB$/);
  assert.match(line, /^bosh-azure-.*-go_agent 1\.1364: download \[#+\.+\] /);
});

test('at 120 columns the full series name and a 30-cell bar show', () => {
  const line = formatBar({ ...download, bytes: 650 * MIB, total: 1300 * MIB }, 120);
  assert.ok(line.length <= 119, line);
  assert.ok(line.startsWith(`${JAMMY} 1.1364: download [${'#'.repeat(15)}${'.'.repeat(15)}]`), line);
});

test('a narrow terminal drops the bar before the percentage and sizes', () => {
  const line = formatBar({ ...download, bytes: 650 * MIB, total: 1300 * MIB }, 50);
  assert.ok(line.length <= 49, line);
  assert.match(line, / 50% 650\.0 MiB \/ 1\.27 GiB$/);
  assert.doesNotMatch(line, /\[/);
});

test('without a total there is no bar, only the bytes so far', () => {
  assert.equal(
    formatBar({ ...download, series: 'noble', bytes: 3 * MIB }, 80),
    'noble 1.1364: download 3.0 MiB',
  );
});

test('a phase summary names the bytes, the seconds and the rate, after the version prefix', () => {
  assert.equal(
    phaseSummary({ series: JAMMY, version: '1.1364', phase: 'upload', bytes: 40 * MIB, total: 40 * MIB }, 2),
    `${JAMMY} 1.1364: uploaded 40.0 MiB in 2.0 s (20.0 MiB/s)`,
  );
});
