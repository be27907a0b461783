/**
 * Orchestrators `mirrorSeries` and `mirrorVersion`: the generators of src/workflow.ts, run by the
 * Durable Functions replay engine. This file only maps the workflow's port onto `context.df`; it must stay
 * deterministic (no I/O, no clock, no randomness): every replay has to make the same calls in the same order.
 */

import * as df from 'durable-functions';
import type { OrchestrationContext, OrchestrationHandler } from 'durable-functions';
import {
  ORCHESTRATORS,
  STEP_RETRY,
  mirrorSeries,
  mirrorVersion,
  type MirrorSeriesInput,
  type MirrorVersionInput,
  type RetryPolicy,
  type Workflow,
  type WorkflowContext,
} from '../src/workflow.js';

function retryOptions(policy: RetryPolicy): df.RetryOptions {
  const options = new df.RetryOptions(policy.firstRetryIntervalMs, policy.maxAttempts);
  options.backoffCoefficient = policy.backoffCoefficient;
  options.maxRetryIntervalInMilliseconds = policy.maxRetryIntervalMs;
  return options;
}

/** The workflow's view of the runtime, over the replay engine's context. */
export function durableWorkflowContext(context: OrchestrationContext): WorkflowContext {
  const orchestration = context.df;
  return {
    callStep: (name, input) =>
      orchestration.callActivityWithRetry(name, retryOptions(STEP_RETRY[name]), input),
    callMirrorVersion: (input, instanceId) =>
      orchestration.callSubOrchestrator(ORCHESTRATORS.mirrorVersion, input, instanceId),
    createTimer: (fireAt) => orchestration.createTimer(fireAt),
    currentTime: () => orchestration.currentUtcDateTime,
    setStatus: (status) => orchestration.setCustomStatus(status),
    newGuid: (name) => orchestration.newGuid(name),
    runName: () => `orchestration ${orchestration.instanceId}`,
    runner: 'functions',
  };
}

/** The workflow yields the engine's own tasks (through the context above), which is what the engine requires. */
function orchestrator<I, R>(run: (ctx: WorkflowContext, input: I) => Workflow<R>): OrchestrationHandler {
  return function* (context: OrchestrationContext) {
    return yield* run(durableWorkflowContext(context), context.df.getInput<I>());
  } as OrchestrationHandler;
}

df.app.orchestration(
  ORCHESTRATORS.mirrorSeries,
  orchestrator<MirrorSeriesInput, unknown>((ctx, input) => mirrorSeries(ctx, input.request)),
);

df.app.orchestration(
  ORCHESTRATORS.mirrorVersion,
  orchestrator<MirrorVersionInput, unknown>((ctx, input) => mirrorVersion(ctx, input)),
);
