/**
 * Runs the workflow's orchestrators in this process, without Durable Functions: the command line's
 * engine. Same generators, same activities, same retry policies; what it lacks is the checkpointing,
 * so an interrupted run starts over (and the activities' idempotence makes that cheap).
 */

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from './failures.js';
import type { Logger } from './services.js';
import type { MirrorSteps } from './steps.js';
import {
  STEP_RETRY,
  mirrorSeries,
  mirrorVersion,
  type MirrorRequest,
  type MirrorVersionInput,
  type SeriesResult,
  type StepName,
  type Workflow,
  type WorkflowContext,
} from './workflow.js';

type Task =
  | { kind: 'step'; name: StepName; input: unknown }
  | { kind: 'version'; input: MirrorVersionInput; instanceId: string }
  | { kind: 'timer'; fireAt: Date };

export interface InProcessOptions {
  steps: MirrorSteps;
  log: Logger;
  onStatus?: (status: unknown) => void;
  /** Scales every retry interval (tests make retries instant with 0). */
  retryIntervalScale?: number;
  /** Errors not worth a retry here even though a server would wait them out (the CLI: unreachable hosts). */
  givesUpOn?: (error: unknown) => boolean;
}

/** `<series> <version>`, or `<series>`, of a step's input: every log line about a version starts so. */
function subjectOf(input: unknown): string | undefined {
  const { series, version } = (input ?? {}) as { series?: unknown; version?: unknown };
  if (typeof series !== 'string') return undefined;
  return typeof version === 'string' ? `${series} ${version}` : series;
}

export class InProcessRunner {
  constructor(private readonly options: InProcessOptions) {}

  runSeries(request: MirrorRequest): Promise<SeriesResult> {
    return this.drive(mirrorSeries(this.context(), request));
  }

  private context(): WorkflowContext {
    return {
      callStep: (name, input): Task => ({ kind: 'step', name, input }),
      callMirrorVersion: (input, instanceId): Task => ({ kind: 'version', input, instanceId }),
      createTimer: (fireAt): Task => ({ kind: 'timer', fireAt }),
      currentTime: () => new Date(),
      setStatus: (status) => this.options.onStatus?.(status),
      // Nothing is replayed here: a fresh GUID per call is what determinism asks of it.
      newGuid: () => randomUUID(),
      runName: () => 'command line',
      runner: 'cli',
    };
  }

  /** Feeds each yielded task's result back into the generator, or throws its error there. */
  private async drive<R>(workflow: Workflow<R>): Promise<R> {
    let next = workflow.next();
    while (!next.done) {
      let result: unknown;
      let failure: { error: unknown } | undefined;
      try {
        result = await this.execute(next.value as Task);
      } catch (error) {
        failure = { error };
      }
      next = failure ? workflow.throw(failure.error) : workflow.next(result);
    }
    return next.value;
  }

  private async execute(task: Task): Promise<unknown> {
    switch (task.kind) {
      case 'step':
        return this.callWithRetry(task.name, task.input);
      case 'version':
        return this.drive(mirrorVersion(this.context(), task.input));
      case 'timer': {
        const wait = task.fireAt.getTime() - Date.now();
        if (wait > 0) await sleep(wait);
        return undefined;
      }
    }
  }

  private async callWithRetry(name: StepName, input: unknown): Promise<unknown> {
    const policy = STEP_RETRY[name];
    const scale = this.options.retryIntervalScale ?? 1;
    const run = this.options.steps[name] as (input: unknown) => Promise<unknown>;
    let interval = policy.firstRetryIntervalMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await run(input);
      } catch (error) {
        if (attempt >= policy.maxAttempts || this.options.givesUpOn?.(error) === true) throw error;
        const subject = subjectOf(input);
        this.options.log.warn(
          `${subject !== undefined ? `${subject}: ` : ''}${name} failed (attempt ${attempt} of ${policy.maxAttempts}), retrying in ${Math.round((interval * scale) / 1000)} s: ${errorMessage(error)}`,
        );
        await sleep(interval * scale);
        interval = Math.min(interval * policy.backoffCoefficient, policy.maxRetryIntervalMs);
      }
    }
  }
}
