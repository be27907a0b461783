/**
 * Runs the built command line: `runStemcellMirror` exactly as an operator does
 * (`npm run --silent stemcell-mirror -- ...`), `runStemcellMirrorDirect` as `node dist/src/cli.js ...`
 * on the same Node 22 binary that runs the tests (no npm start-up, about half a second less per run).
 *
 * Both kill the child (its whole process group: npm's child included) when it runs longer than
 * `timeoutMs` (default 90 s) and fail with what it printed, so a hung CLI cannot hang the suite.
 */

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI_ENTRY = resolve(REPO_ROOT, 'dist/src/cli.js');
export const DEFAULT_CLI_TIMEOUT_MS = 90_000;

/**
 * The Node flags of the `stemcell-mirror` npm script (`node <flags> dist/src/cli.js`): what operators run the
 * CLI with, and what the Functions worker gets through languageWorkers__node__arguments.
 */
export function cliNodeFlags(): string[] {
  const manifest = JSON.parse(readFileSync(resolve(REPO_ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const script = manifest.scripts['stemcell-mirror'] ?? '';
  const words = script.split(/\s+/);
  if (words[0] !== 'node' || words.at(-1) !== 'dist/src/cli.js') {
    throw new Error(`the stemcell-mirror script is not "node [flags] dist/src/cli.js": ${script}`);
  }
  return words.slice(1, -1);
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Kill the run after this long and fail (default 90 s). */
  timeoutMs?: number;
}

/** `npm run --silent stemcell-mirror -- ...args`, from the repository root, exactly as operators run it. */
export function runStemcellMirror(
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions = {},
): Promise<CliRun> {
  return runChild('npm', ['run', '--silent', 'stemcell-mirror', '--', ...args], env, options);
}

/**
 * `npx stemcell-mirror ...args`: the package's bin, as an operator runs it from a clone (no `--` needed);
 * npm puts node_modules/.bin first on PATH, so `#!/usr/bin/env node` finds the project's Node 22.
 */
export function runStemcellMirrorBin(
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions = {},
): Promise<CliRun> {
  return runChild('npx', ['stemcell-mirror', ...args], env, options);
}

/** `node dist/src/cli.js ...args` with the Node 22 binary running the tests (process.execPath). */
export function runStemcellMirrorDirect(
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions = {},
): Promise<CliRun> {
  return runChild(process.execPath, [CLI_ENTRY, ...args], env, options);
}

/** A run still going: its process id, its outcome, and a way to kill it as a crash would. */
export interface RunningCli {
  pid: number;
  /** Settles when the process has exited (after a kill too: with what it printed until then). */
  done: Promise<CliRun & { signal: NodeJS.Signals | null }>;
  /** Sends `signal` to the whole process group. */
  kill(signal: NodeJS.Signals): void;
}

/** Starts `node dist/src/cli.js ...args` and returns at once, for tests that act while it runs. */
export function startStemcellMirrorDirect(
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions = {},
): RunningCli {
  return startChild(process.execPath, [CLI_ENTRY, ...args], env, options);
}

/**
 * As startStemcellMirrorDirect, with the node command run by `wrapper` (`wrapper... node cli.js ...args`),
 * for a CLI that must run in a prepared environment (a private mount namespace, for example).
 */
export function startStemcellMirrorWrapped(
  wrapper: [string, ...string[]],
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions = {},
): RunningCli {
  const [command, ...prefix] = wrapper;
  return startChild(command, [...prefix, process.execPath, CLI_ENTRY, ...args], env, options);
}

// Process groups of children still running, killed if the test process exits first.
const running = new Set<number>();
process.once('exit', () => {
  for (const pid of running) killGroup(pid);
});

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function runChild(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions,
): Promise<CliRun> {
  return startChild(command, args, env, options).done.then(({ status, stdout, stderr }) => ({
    status,
    stdout,
    stderr,
  }));
}

function startChild(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: CliRunOptions,
): RunningCli {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CLI_TIMEOUT_MS;
  let childPid = -1;
  const done = new Promise<CliRun & { signal: NodeJS.Signals | null }>((done, fail) => {
    const child = spawn(command, args, {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a timeout kills npm and the node it started together.
      detached: true,
    });
    const pid = child.pid;
    if (pid !== undefined) {
      running.add(pid);
      childPid = pid;
    }
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) killGroup(pid);
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      if (pid !== undefined) running.delete(pid);
      fail(error);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (pid !== undefined) running.delete(pid);
      if (timedOut) {
        fail(
          new Error(
            `\`${[command, ...args].join(' ')}\` did not finish within ${timeoutMs / 1000} s and was killed` +
              `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
          ),
        );
        return;
      }
      done({ status, stdout, stderr, signal });
    });
  });
  return {
    pid: childPid,
    done,
    kill: (signal) => {
      if (childPid > 0) process.kill(-childPid, signal);
    },
  };
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
