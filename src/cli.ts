#!/usr/bin/env -S node --max-semi-space-size=1
/**
 * `stemcell-mirror mirror [--series S[,S]] [--version V] [--dry-run] [--json] [--verbose]`, the package's
 * bin (also `npm run --silent stemcell-mirror -- mirror ...`).
 *
 * Runs the mirror workflow once, in this process, against whatever the environment configures.
 * Results go to stdout (a table, or one JSON document with --json); progress and logs go to stderr.
 * Exit status: 0 when every series succeeded (nothing to do included), 1 when any failed, 2 for bad
 * usage or settings.
 */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { errorMessage, isUnreachableError } from './failures.js';
import { InProcessRunner } from './in-process-runner.js';
import { isSkippedVersion, skippedVersionRefusal } from './plan.js';
import { createProgressReporter } from './progress.js';
import { announceSettings, createMirrorServices, type Logger } from './services.js';
import { runStatusCommand } from './status-cli.js';
import { describeReplication } from './target-regions.js';
import { mirrorSteps } from './steps.js';
import { isStemcellVersion } from './versions.js';
import type { VersionResult, VersionStatus } from './workflow.js';

/** The one usage line a usage error prints. */
export const USAGE_LINE =
  'Usage: stemcell-mirror mirror [--series S[,S]] [--version V] [--dry-run] [--json] [--verbose]';

export const USAGE = `${USAGE_LINE}
   or: npm run --silent stemcell-mirror -- mirror [options]

Mirrors the BOSH stemcells the Azure Compute Gallery lacks from bosh.io, once, in this process,
signed in as your \`az login\` (or the managed identity of AZURE_MANAGED_IDENTITY_ID in Azure).

Other command: status (see "status --help").

Options:
  --series S[,S]  series to mirror (default: BASM_STEMCELL_SERIES)
  --version V     mirror exactly this version (one series only)
  --dry-run       decide and print what would be mirrored; change nothing
  --json          print one JSON document with the results on stdout
  --verbose       also print diagnostic details (what each Azure credential said)
  -h, --help      show this help

Required settings (environment variables): AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_REGION,
AZURE_STORAGE_ACCOUNT_NAME, AZURE_GALLERY_NAME. Every setting, with defaults and allowed values:
docs/configuration.md.

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
  verbose: boolean;
}

const OPTIONS = {
  series: { type: 'string' },
  version: { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The tool's own words for what Node's parser would explain in its terms. */
function checkOptions(tokens: ReturnType<typeof parseArgs>['tokens'] & object): void {
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const known = (OPTIONS as Record<string, { type: 'string' | 'boolean' }>)[token.name];
    if (known === undefined) throw new UsageError(`unknown option ${token.rawName}`);
    if (known.type === 'boolean' && token.value !== undefined) {
      throw new UsageError(`${token.rawName} takes no value`);
    }
    if (known.type === 'string' && (token.value === undefined || token.value.startsWith('-'))) {
      throw new UsageError(`${token.rawName} needs a value`);
    }
  }
}

function parseCommand(argv: string[]): MirrorCommand | 'help' {
  // Not strict: checkOptions says what is wrong in this tool's words (Node's messages talk about its parser).
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    tokens: true,
    options: OPTIONS,
  });
  checkOptions(tokens);
  if (values.help === true) return 'help';
  if (positionals.length === 0) throw new UsageError('missing command: mirror');
  if (positionals[0] !== 'mirror')
    throw new UsageError(`unknown command "${positionals[0]}"; the commands are: mirror, status`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  const command: MirrorCommand = {
    dryRun: values['dry-run'] === true,
    json: values.json === true,
    verbose: values.verbose === true,
  };
  if (typeof values.series === 'string') command.series = values.series;
  if (typeof values.version === 'string') {
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
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
  };
}

function formatResult(r: VersionResult): string {
  const what =
    r.version === null
      ? r.series
      : `${r.series} ${r.version}${r.galleryVersion ? ` -> ${r.galleryVersion}` : ''}`;
  const detail = r.error ? `: ${r.error}` : r.blobUrl ? ` (${r.blobUrl})` : r.reason ? ` (${r.reason})` : '';
  return `${r.action.padEnd(8)} ${what}${detail}`;
}

/** Azure takes minutes to create an image version: say so, once per state, instead of falling silent. */
function reportProvisioning(log: Logger): (status: unknown) => void {
  let last = '';
  return (status) => {
    // A series run shows the version it extends under `extending`; a version's own run shows itself.
    const s = ((status as { extending?: VersionStatus }).extending ?? status) as Partial<VersionStatus>;
    if (s.step !== 'waitForImageVersion' || s.provisioningState === undefined) return;
    const regions =
      s.regions !== undefined && s.regions.length > 1 ? ` (${describeReplication(s.regions)})` : '';
    const line = `${s.series} ${s.version}: image version ${s.galleryVersion} is ${s.provisioningState}${regions}`;
    if (line !== last) log.info(line);
    last = line;
  };
}

/** A warning about a version keeps the version's prefix first, like every other line about it. */
function warningLine(message: string): string {
  const aboutVersion = /^(\S+ \d[\d.]*: )([\s\S]*)$/.exec(message);
  return aboutVersion ? `${aboutVersion[1]}warning: ${aboutVersion[2]}` : `warning: ${message}`;
}

function failedSeries(series: string, version: string | undefined, error: unknown): VersionResult {
  return {
    series,
    version: version ?? null,
    galleryVersion: null,
    action: 'failed',
    error: errorMessage(error),
  };
}

/** What an operator needs when a series had nothing to do, on stderr (stdout keeps the results). */
function nothingToDo(series: string, results: VersionResult[]): string | undefined {
  const [only, ...rest] = results;
  if (only === undefined || rest.length > 0 || only.action !== 'exists') return undefined;
  return `${series}: nothing to do: the gallery already has ${only.version ?? 'the version'} (${only.galleryVersion ?? ''})`;
}

async function mirrorEverySeries(
  command: MirrorCommand,
  config: ReturnType<typeof loadConfig>,
  log: Logger,
  onProgress: Parameters<typeof createMirrorServices>[2],
): Promise<VersionResult[]> {
  announceSettings(config, log, { dryRun: command.dryRun });
  const services = createMirrorServices(config, log, onProgress);
  const runner = new InProcessRunner({
    steps: mirrorSteps(services),
    log,
    onStatus: reportProvisioning(log),
    // On a workstation an unknown host or a refused connection is a typo or no network: say so in seconds.
    givesUpOn: isUnreachableError,
  });
  const results: VersionResult[] = [];
  for (const series of config.series) {
    const request = {
      series,
      dryRun: command.dryRun,
      ...(command.version !== undefined ? { version: command.version } : {}),
    };
    let seriesResults: VersionResult[];
    try {
      seriesResults = (await runner.runSeries(request)).results;
    } catch (error) {
      seriesResults = [failedSeries(series, command.version, error)];
    }
    const idle = nothingToDo(series, seriesResults);
    if (idle !== undefined) log.info(idle);
    results.push(...seriesResults);
  }
  return results;
}

/** The whole command; returns the exit status instead of exiting, so tests can call it. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  if (argv[0] === 'status') return runStatusCommand(argv.slice(1), io);
  let command: MirrorCommand | 'help';
  try {
    command = parseCommand(argv);
  } catch (error) {
    io.stderr.write(`stemcell-mirror: ${errorMessage(error)}\n${USAGE_LINE}\nMore: stemcell-mirror --help\n`);
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
    if (command.version !== undefined && isSkippedVersion(command.version, config.skipVersions)) {
      throw new UsageError(`--version: ${skippedVersionRefusal(config.series[0] ?? '', command.version)}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`stemcell-mirror: ${error.message}\n${USAGE_LINE}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      const settings = error.problems.some((p) => !p.name.startsWith('--'));
      io.stderr.write(
        `stemcell-mirror: ${error.message}\n${settings ? 'Every setting: docs/configuration.md\n' : USAGE_LINE + '\n'}`,
      );
      return 2;
    }
    throw error;
  }

  const progress = createProgressReporter(io.stderr);
  const log: Logger = {
    info: (message) => progress.line(message),
    warn: (message) => progress.line(warningLine(message)),
    ...(command.verbose ? { detail: (message: string) => progress.line(message) } : {}),
  };
  let results: VersionResult[];
  try {
    results = await mirrorEverySeries(command, config, log, (event) => progress.update(event));
  } catch (error) {
    // Whatever broke, stdout still holds one result per series (or one JSON document).
    const version = command.version;
    results = config.series.map((series) => failedSeries(series, version, error));
  }
  progress.done();

  if (command.json) {
    io.stdout.write(`${JSON.stringify({ results: results.map(contractFields) }, null, 2)}\n`);
  } else {
    for (const r of results) io.stdout.write(`${formatResult(r)}\n`);
  }
  return results.some((r) => r.action === 'failed') ? 1 : 0;
}

/** Run as a program (the bin links here through a symlink, so compare real paths), not when imported. */
function isMainModule(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isMainModule()) {
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
