/**
 * docs/reliability.md names a test for every fault it lists: each named test must exist, so the table
 * cannot promise a behaviour that no test shows.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/docs/: the repository root is three levels up.
const root = fileURLToPath(new URL('../../../', import.meta.url));

interface NamedTest {
  fault: string;
  file: string;
  name: string;
}

/** The last cell of each table row: `` `path` — test name ``. */
function namedTests(markdown: string): NamedTest[] {
  return markdown
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| ---') && !line.startsWith('| fault'))
    .map((line) => {
      const cells = line.split(' | ').map((cell) => cell.replace(/^\|\s*|\s*\|$/g, '').trim());
      const match = /^`([^`]+)` — (.+)$/.exec(cells.at(-1) ?? '');
      assert.ok(match, `a row without "\`file\` — test name": ${line}`);
      return { fault: cells[0] ?? '', file: match[1] ?? '', name: match[2] ?? '' };
    });
}

/** Test names as the source spells them; typographic and straight apostrophes are the same. */
function normalized(text: string): string {
  return text.replace(/[’‘]/g, "'");
}

const rows = namedTests(readFileSync(join(root, 'docs', 'reliability.md'), 'utf8'));

test('the Reliability table lists at least 30 fault scenarios', () => {
  assert.ok(rows.length >= 30, `only ${rows.length} rows`);
  assert.equal(new Set(rows.map((r) => r.fault)).size, rows.length, 'each fault is listed once');
});

test('every test the Reliability table names exists in the file it names', () => {
  const missing = rows.filter(({ file, name }) => {
    const source = normalized(readFileSync(join(root, file), 'utf8'));
    // `…` stands for the varying part of a table of cases: each fixed piece must be in the source.
    const pieces = normalized(name)
      .split('…')
      .map((piece) => piece.trim())
      .filter((piece) => piece !== '');
    const first = normalized(name).startsWith('fault:') ? pieces[0] : `fault: `;
    return !source.includes(first ?? 'fault: ') || pieces.some((piece) => !source.includes(piece));
  });
  assert.deepEqual(
    missing.map((r) => `${r.file} — ${r.name}`),
    [],
  );
});
