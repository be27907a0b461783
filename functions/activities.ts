/**
 * Activities: one per workflow step (src/steps.ts), registered under the step's name. Each invocation
 * runs the step with clients created once per worker and a logger that writes to this invocation's log.
 * Permanent failures come back as `{ ok: false }` values; transient ones are thrown, so the
 * orchestrator's retry policy (STEP_RETRY) applies.
 */

import type { InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { ConfigError, loadConfig } from '../src/config.js';
import { createMirrorServices, mirrorSteps, type Logger, type MirrorServices } from '../src/steps.js';
import { STEP_RETRY, type StepName, type StepOutcome } from '../src/workflow.js';

let sharedServices: MirrorServices | undefined;

/** Clients are created on first use, not at load: a bad setting then fails the step that needs it. */
function servicesFor(log: Logger): MirrorServices {
  if (sharedServices === undefined) {
    const config = loadConfig(process.env);
    // Said once per worker, not once per version.
    for (const warning of config.warnings) log.warn(warning);
    if (!config.notify) log.info('notifications are off: BASM_NOTIFY_GITHUB_TOKEN is not set');
    sharedServices = createMirrorServices(config, log);
  }
  return { ...sharedServices, log };
}

function invocationLogger(context: InvocationContext): Logger {
  return { info: (message) => context.info(message), warn: (message) => context.warn(message) };
}

async function runStep(
  name: StepName,
  input: unknown,
  context: InvocationContext,
): Promise<StepOutcome<unknown>> {
  let services: MirrorServices;
  try {
    services = servicesFor(invocationLogger(context));
  } catch (error) {
    // Retrying cannot fix a setting: report it as the step's permanent failure.
    if (error instanceof ConfigError) return { ok: false, error: error.message };
    throw error;
  }
  const step = mirrorSteps(services)[name] as (input: unknown) => Promise<StepOutcome<unknown>>;
  return step(input);
}

for (const name of Object.keys(STEP_RETRY) as StepName[]) {
  df.app.activity(name, {
    handler: (input: unknown, context: InvocationContext) => runStep(name, input, context),
  });
}
