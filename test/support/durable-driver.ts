/**
 * Runs an orchestration to its end the way the Durable extension would, in this process: replay the
 * history through the registered orchestrator, run what it scheduled (activities through the registered
 * activity functions, sub-orchestrations the same way, timers fire at once), append the result, replay
 * again. For end-to-end tests of the Functions app against the local services; one task at a time, which
 * is all the mirror's workflow schedules.
 */

import { invokeFunction, jsonData, returnedJson } from './functions-core/host.js';
import { OrchestrationHistory } from './orchestration-history.js';

interface Action {
  actionType: number;
  functionName?: string;
  input?: unknown;
  instanceId?: string;
  fireAt?: string;
}

interface OrchestratorState {
  isDone: boolean;
  actions: Action[][];
  output?: unknown;
  customStatus?: unknown;
  error?: string;
}

export interface DrivenOrchestration {
  output: unknown;
  customStatus: unknown;
}

const MAX_EPISODES = 500;

export async function driveOrchestration(
  name: string,
  instanceId: string,
  input: unknown,
  start: Date = new Date(),
  parentInstanceId = '',
): Promise<DrivenOrchestration> {
  const history = new OrchestrationHistory(name, instanceId, input, start, parentInstanceId);
  for (let episode = 0; episode < MAX_EPISODES; episode++) {
    const { response } = await invokeFunction(name, { orchestrationTrigger: history.trigger() });
    const state = returnedJson(response) as OrchestratorState;
    if (state.error !== undefined) throw new Error(`${name} ${instanceId} failed: ${state.error}`);
    if (state.isDone) return { output: state.output, customStatus: state.customStatus };
    const pending = state.actions.flat().slice(history.scheduledCount);
    const [next] = pending;
    if (next === undefined || pending.length !== 1) {
      throw new Error(`${name} scheduled ${pending.length} tasks at once; this driver runs one at a time`);
    }
    switch (next.actionType) {
      case 0:
      case 1: {
        const activity = next.functionName ?? '';
        const { response: answer } = await invokeFunction(activity, {
          activityTrigger: jsonData(next.input),
        });
        history.activityCompleted(activity, returnedJson(answer));
        break;
      }
      case 2:
      case 3: {
        const sub = next.functionName ?? '';
        const subId = next.instanceId ?? `${instanceId}:${episode}`;
        const result = await driveOrchestration(sub, subId, next.input, history.currentTime, instanceId);
        history.subOrchestrationCompleted(sub, subId, result.output);
        break;
      }
      case 5:
        history.timerFired(new Date(next.fireAt ?? history.currentTime.toISOString()));
        break;
      default:
        throw new Error(`${name} scheduled action type ${next.actionType}, which this driver does not run`);
    }
  }
  throw new Error(`${name} ${instanceId} did not finish within ${MAX_EPISODES} episodes`);
}
