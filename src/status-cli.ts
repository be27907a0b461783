/**
 * `npm run --silent stemcell-mirror -- status [--series S[,S]] [--json]`: what the gallery holds per series,
 * what the next run would do and the last run of any runner (src/status.ts). Read-only. Exit status: 0 when
 * everything could be read, 1 when something could not (the rest is still shown), 2 for bad usage or settings.
 */

import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { errorMessage } from './failures.js';
import { createMirrorServices } from './services.js';
import { formatStatus, isComplete, readMirrorStatus } from './status.js';

export const STATUS_USAGE = `Usage: npm run --silent stemcell-mirror -- status [options]

Shows, per series, bosh.io's newest version, every gallery version (state, replication per region, who made
it, director references, notification), what the next run would mirror, defer or skip, and the last run.
Reads only; downloads nothing.

Options:
  --series S[,S]  series to show (default: BASM_STEMCELL_SERIES)
  --json          print one JSON document on stdout
  -h, --help      show this help

Exit status: 0 when everything could be read, 1 when something could not, 2 for bad usage or settings.
`;

interface StatusIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

export async function runStatusCommand(argv: string[], io: StatusIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: {
        series: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    io.stderr.write(`stemcell-mirror: ${errorMessage(error)}\n\n${STATUS_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(STATUS_USAGE);
    return 0;
  }
  let config;
  try {
    config = loadConfig(io.env, values.series !== undefined ? { series: values.series } : {});
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.stderr.write(`stemcell-mirror: ${error.message}\n`);
    return 2;
  }
  const log = {
    info: (message: string) => io.stderr.write(`${message}\n`),
    warn: (message: string) => io.stderr.write(`warning: ${message}\n`),
  };
  const status = await readMirrorStatus(createMirrorServices(config, log), config.series);
  io.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  if (!isComplete(status))
    io.stderr.write('stemcell-mirror: some of the status could not be read (see above)\n');
  return isComplete(status) ? 0 : 1;
}
