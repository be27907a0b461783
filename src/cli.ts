/**
 * `npm run --silent stemcell-mirror -- mirror [--series S[,S]] [--version V] [--dry-run] [--json]`
 *
 * Runs the mirror workflow once, in this process, against whatever the environment configures.
 * Results go to stdout (a table, or one JSON document with --json); progress and logs go to stderr.
 * Exit status: 0 when every series succeeded (nothing to do included), 1 when any failed, 2 for bad
 * usage or settings.
 */

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { errorMessage } from './failures.js';
import { InProcessRunner } from './in-process-runner.js';
import { createProgressReporter } from './progress.js';
import { announceSettings, createMirrorServices, type Logger } from './services.js';
import { mirrorSteps } from './steps.js';
import { isStemcellVersion } from './versions.js';
import type { VersionResult, VersionStatus } from './workflow.js';

export const USAGE = `Usage: npm run --silent stemcell-mirror -- mirror [options]

Mirrors the BOSH stemcells the Azure Compute Gallery lacks from bosh.io, once, in this process.

Options:
  --series S[,S]  series to mirror (default: BASM_STEMCELL_SERIES)
  --version V     mirror exactly this version (one series only)
  --dry-run       decide and print what would be mirrored; change nothing
  --json          print one JSON document with the results on stdout
  -h, --help      show this help

Exit status: 0 when every series succeeded (or had nothing to do), 1 when any failed, 2 for bad usage or settings.
`;

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

class UsageError extends Error {}

interface MirrorCommand {
  series?: string;
  version?: string;
  dryRun: boolean;
  json: boolean;
}

function parseCommand(argv: string[]): MirrorCommand | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        series: { type: 'string' },
        version: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length === 0) throw new UsageError('missing command: mirror');
  if (positionals[0] !== 'mirror')
    throw new UsageError(`unknown command "${positionals[0]}"; the command is: mirror`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  const command: MirrorCommand = { dryRun: values['dry-run'], json: values.json };
  if (values.series !== undefined) command.series = values.series;
  if (values.version !== undefined) {
    if (!isStemcellVersion(values.version)) {
      throw new UsageError(`--version "${values.version}" is not a stemcell version (e.g. 1.1364)`);
    }
    command.version = values.version;
  }
  return command;
}

/** Exactly the fields of the README's `--json` contract, in its order: operators script against it. */
function contractFields(r: VersionResult): Record<string, unknown> {
  return {
    series: r.series,
    version: r.version,
    galleryVersion: r.galleryVersion,
    action: r.action,
    ...(r.blobUrl !== undefined ? { blobUrl: r.blobUrl } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}

function formatResult(r: VersionResult): string {
  const what =
    r.version === null
      ? r.series
      : `${r.series} ${r.version}${r.galleryVersion ? ` -> ${r.galleryVersion}` : ''}`;
  const detail = r.error ? `: ${r.error}` : r.blobUrl ? ` (${r.blobUrl})` : '';
  return `${r.action.padEnd(8)} ${what}${detail}`;
}

/** Azure takes minutes to create an image version: say so, once per state, instead of falling silent. */
function reportProvisioning(log: Logger): (status: unknown) => void {
  let last = '';
  return (status) => {
    const s = status as Partial<VersionStatus>;
    if (s.step !== 'waitForImageVersion' || s.provisioningState === undefined) return;
    const line = `${s.series} ${s.version}: image version ${s.galleryVersion} is ${s.provisioningState}`;
    if (line !== last) log.info(line);
    last = line;
  };
}

/** The whole command; returns the exit status instead of exiting, so tests can call it. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let command: MirrorCommand | 'help';
  try {
    command = parseCommand(argv);
  } catch (error) {
    io.stderr.write(`stemcell-mirror: ${errorMessage(error)}\n\n${USAGE}`);
    return 2;
  }
  if (command === 'help') {
    io.stdout.write(USAGE);
    return 0;
  }

  let config;
  try {
    config = loadConfig(io.env, command.series !== undefined ? { series: command.series } : {});
    if (command.version !== undefined && config.series.length > 1) {
      throw new UsageError(
        `--version names one version, so give exactly one series (got ${config.series.join(', ')})`,
      );
    }
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UsageError) {
      io.stderr.write(`stemcell-mirror: ${error.message}\n`);
      return 2;
    }
    throw error;
  }

  const progress = createProgressReporter(io.stderr);
  const log: Logger = {
    info: (message) => progress.line(message),
    warn: (message) => progress.line(`warning: ${message}`),
  };
  announceSettings(config, log, { dryRun: command.dryRun });
  const services = createMirrorServices(config, log, (event) => progress.update(event));
  const runner = new InProcessRunner({
    steps: mirrorSteps(services),
    log,
    onStatus: reportProvisioning(log),
  });

  const results: VersionResult[] = [];
  for (const series of config.series) {
    const request = {
      series,
      dryRun: command.dryRun,
      ...(command.version !== undefined ? { version: command.version } : {}),
    };
    try {
      results.push(...(await runner.runSeries(request)).results);
    } catch (error) {
      results.push({
        series,
        version: command.version ?? null,
        galleryVersion: null,
        action: 'failed',
        error: errorMessage(error),
      });
    }
  }
  progress.done();

  if (command.json) {
    io.stdout.write(`${JSON.stringify({ results: results.map(contractFields) }, null, 2)}\n`);
  } else {
    for (const r of results) io.stdout.write(`${formatResult(r)}\n`);
  }
  return results.some((r) => r.action === 'failed') ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(
        `stemcell-mirror: unexpected failure: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
