/**
 * Runs the built command line the way an operator does: `npm run --silent stemcell-mirror -- ...`.
 */

import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runStemcellMirror(args: string[], env: Record<string, string>): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn('npm', ['run', '--silent', 'stemcell-mirror', '--', ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', fail);
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

/** The `--json` document; fails with the run's output when stdout is not one JSON document. */
export function jsonResults(run: CliRun): Array<Record<string, unknown>> {
  try {
    return (JSON.parse(run.stdout) as { results: Array<Record<string, unknown>> }).results;
  } catch {
    throw new Error(
      `stdout is not one JSON document (exit ${run.status}):\n${run.stdout}\n--- stderr ---\n${run.stderr}`,
    );
  }
}
