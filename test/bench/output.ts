/** What the bench prints and how: figures, tables, the load average, and the check that a result is right. */

import { loadavg } from 'node:os';

export const MIB = 1024 * 1024;

let jsonMode = false;
/** With --json the JSON alone goes to stdout; the tables go to stderr. */
export function setJsonMode(json: boolean): void {
  jsonMode = json;
}
export const mib = (bytes: number): string => (bytes / MIB).toFixed(0);
export const secs = (seconds: number): string => seconds.toFixed(1);
export const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}x` : '-');
export const log = (line = ''): void => void (jsonMode ? process.stderr : process.stdout).write(`${line}\n`);
export const load = (): number[] => loadavg().map((l) => Math.round(l * 100) / 100);

/** Fails the bench when a result is wrong (never because of a timing). */
export function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`benchmark result is wrong: ${message}`);
}

export function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  for (const row of rows) {
    log(
      row
        .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
        .join('  '),
    );
  }
}
