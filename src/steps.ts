/**
 * The workflow's activities: each one first looks at what already exists and does only what is
 * missing, so running it twice (as Durable Functions may) gives the same result. Permanent failures come
 * back as `{ ok: false }` values; transient ones are thrown, for the caller's retry policy. Each concern's
 * steps live in its own `steps-*` module; here they are bound to one set of clients.
 */

import { ConfigError, loadConfig } from './config.js';
import { signInErrorOf } from './credentials.js';
import { errorMessage, isTransientError } from './failures.js';
import { announceSettings, createMirrorServices, type Logger, type MirrorServices } from './services.js';
import {
  adoptImageVersion,
  createImageVersion,
  ensureImageDefinition,
  extendImageVersion,
  getImageVersionState,
} from './steps-gallery.js';
import { acquireSeriesLock, releaseSeriesLock, underSeriesLock } from './steps-lock.js';
import { notify, recordRun } from './steps-notify.js';
import { requireConfiguredStemcell } from './provenance.js';
import { resolveVersions } from './steps-plan.js';
import { deleteImageVersion, deleteSourceBlob } from './steps-retention.js';
import { cleanup, downloadAndExtract, uploadVhd } from './steps-stemcell.js';
import type { StepInputs, StepName, StepOutcome, StepOutputs, UnderSeriesLock } from './workflow-contract.js';

export type MirrorSteps = {
  [N in StepName]: (input: StepInputs[N] & UnderSeriesLock) => Promise<StepOutcome<StepOutputs[N]>>;
};

async function outcome<T>(log: Logger, work: () => Promise<T>): Promise<StepOutcome<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    // Nobody signed in: one line for the result, the credential chain's answers for whoever asks.
    const signIn = signInErrorOf(error);
    if (signIn !== undefined) {
      log.detail?.(signIn.details);
      return { ok: false, error: signIn.message };
    }
    if (isTransientError(error)) throw error;
    return { ok: false, error: errorMessage(error) };
  }
}

const NOT_HELD =
  'deleteImageVersion deletes only in a run that holds its series lock; this step carries no claim';

/** A deletion without a claim: refused like every step refuses a series it is not configured for, else as unheld. */
function refuseUnheld(
  { config }: MirrorServices,
  { series, version }: StepInputs['deleteImageVersion'],
): Promise<StepOutputs['deleteImageVersion']> {
  requireConfiguredStemcell(config, series, version);
  return Promise.reject(new Error(NOT_HELD));
}

/** The activities, bound to one set of clients. */
export function mirrorSteps(services: MirrorServices): MirrorSteps {
  const bind =
    <I, O>(step: (services: MirrorServices, input: I) => Promise<O>) =>
    (input: I & UnderSeriesLock): Promise<StepOutcome<O>> =>
      outcome(services.log, () => underSeriesLock(services, input, step));
  return {
    acquireSeriesLock: bind(acquireSeriesLock),
    releaseSeriesLock: bind(releaseSeriesLock),
    resolveVersions: bind(resolveVersions),
    downloadAndExtract: bind(downloadAndExtract),
    uploadVhd: bind(uploadVhd),
    ensureImageDefinition: bind(ensureImageDefinition),
    createImageVersion: bind(createImageVersion),
    adoptImageVersion: bind(adoptImageVersion),
    getImageVersionState: bind(getImageVersionState),
    extendImageVersion: bind(extendImageVersion),
    notify: bind(notify),
    deleteSourceBlob: bind(deleteSourceBlob),
    // Deleting is only for a run that holds its series: a step without a claim refuses before it looks.
    deleteImageVersion: (input) =>
      input.lock === undefined ? bind(refuseUnheld)(input) : bind(deleteImageVersion)(input),
    cleanup: bind(cleanup),
    recordRun: bind(recordRun),
  };
}

/**
 * Runs steps by name, as the activities do: the settings are read and the clients made on first use (not
 * at load, so a bad setting fails the step that needs it, as a permanent failure: retrying cannot fix it),
 * then kept for every later step; each step logs to the logger it is given.
 */
export function createStepRunner(
  env: NodeJS.ProcessEnv,
): (name: StepName, input: unknown, log: Logger) => Promise<StepOutcome<unknown>> {
  let shared: MirrorServices | undefined;
  return async (name, input, log) => {
    if (shared === undefined) {
      let config;
      try {
        config = loadConfig(env);
      } catch (error) {
        if (error instanceof ConfigError) return { ok: false, error: error.message };
        throw error;
      }
      // Said once per worker, not once per version.
      announceSettings(config, log);
      shared = createMirrorServices(config, log);
    }
    // The Functions log keeps the details a terminal shows only with --verbose.
    const detailed: Logger = {
      info: (message) => log.info(message),
      warn: (message) => log.warn(message),
      detail: (message) => (log.detail ? log.detail(message) : log.info(message)),
    };
    const step = mirrorSteps({ ...shared, log: detailed })[name] as (
      input: unknown,
    ) => Promise<StepOutcome<unknown>>;
    return step(input);
  };
}
