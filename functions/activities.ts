/**
 * Activities: one per workflow step (src/steps.ts), registered under the step's name. Each invocation
 * runs the step with clients created once per worker and a logger that writes to this invocation's log.
 * Permanent failures come back as `{ ok: false }` values; transient ones are thrown, so the
 * orchestrator's retry policy (STEP_RETRY) applies.
 */

import type { InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { createStepRunner } from '../src/steps.js';
import { STEP_RETRY, type StepName } from '../src/workflow.js';

const runStep = createStepRunner(process.env);

for (const name of Object.keys(STEP_RETRY) as StepName[]) {
  df.app.activity(name, {
    handler: (input: unknown, context: InvocationContext) => runStep(name, input, context),
  });
}
