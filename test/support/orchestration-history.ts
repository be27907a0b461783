/**
 * Orchestration histories as the Durable extension sends them to the worker: episodes of
 * OrchestratorStarted, the events that woke the orchestrator, the tasks it scheduled and
 * OrchestratorCompleted. Ids follow the replay engine's sequence numbers (one per scheduled task,
 * timer or retry timer), so a history built here replays like a real one.
 */

import type { RpcTypedData } from './functions-core/index.js';

/** HistoryEventType of durable-functions / DurableTask.Core. */
const EventType = {
  ExecutionStarted: 0,
  TaskScheduled: 4,
  TaskCompleted: 5,
  TaskFailed: 6,
  SubOrchestrationInstanceCreated: 7,
  SubOrchestrationInstanceCompleted: 8,
  SubOrchestrationInstanceFailed: 9,
  TimerCreated: 10,
  TimerFired: 11,
  OrchestratorStarted: 12,
  OrchestratorCompleted: 13,
} as const;

type HistoryEvent = { EventType: number; EventId: number; IsPlayed: boolean; Timestamp: string } & Record<
  string,
  unknown
>;

export class OrchestrationHistory {
  readonly events: HistoryEvent[] = [];
  private sequence = 0;
  private now: Date;

  constructor(
    readonly name: string,
    readonly instanceId: string,
    readonly input: unknown,
    start: Date,
    readonly parentInstanceId = '',
  ) {
    this.now = start;
    this.push(EventType.OrchestratorStarted, -1, {});
    this.push(EventType.ExecutionStarted, -1, { Name: name, Input: JSON.stringify(input) });
  }

  /** The orchestration time of the episode the next replay ends in. */
  get currentTime(): Date {
    return this.now;
  }

  private push(type: number, eventId: number, fields: Record<string, unknown>): void {
    this.events.push({
      EventType: type,
      EventId: eventId,
      IsPlayed: false,
      Timestamp: this.now.toISOString(),
      ...fields,
    });
  }

  /** Ends the episode and starts the next one `seconds` later. */
  private nextEpisode(at?: Date): void {
    this.push(EventType.OrchestratorCompleted, -1, {});
    this.now = at ?? new Date(this.now.getTime() + 1000);
    this.push(EventType.OrchestratorStarted, -1, {});
  }

  /** An activity the orchestrator scheduled, which then returned `result`. */
  activityCompleted(name: string, result: unknown): this {
    const id = this.sequence++;
    this.push(EventType.TaskScheduled, id, { Name: name });
    this.nextEpisode();
    this.push(EventType.TaskCompleted, -1, { TaskScheduledId: id, Result: JSON.stringify(result) });
    return this;
  }

  /** An activity the orchestrator scheduled, which then threw. */
  activityFailed(name: string, reason: string): this {
    const id = this.sequence++;
    this.push(EventType.TaskScheduled, id, { Name: name });
    this.nextEpisode();
    this.push(EventType.TaskFailed, -1, { TaskScheduledId: id, Reason: reason, Details: `Error: ${reason}` });
    return this;
  }

  /** The retry timer the extension creates after a failed attempt of an activity with a retry policy. */
  retryTimerFired(delayMs: number): this {
    return this.timerFired(new Date(this.now.getTime() + delayMs));
  }

  /** A durable timer the orchestrator (or a retry policy) created, which then fired. */
  timerFired(fireAt: Date): this {
    const id = this.sequence++;
    this.push(EventType.TimerCreated, id, { FireAt: fireAt.toISOString() });
    this.nextEpisode(fireAt);
    this.push(EventType.TimerFired, -1, { TimerId: id, FireAt: fireAt.toISOString() });
    return this;
  }

  /** A sub-orchestration the orchestrator started, which then returned `result`. */
  subOrchestrationCompleted(name: string, instanceId: string, result: unknown): this {
    const id = this.sequence++;
    this.push(EventType.SubOrchestrationInstanceCreated, id, { Name: name, InstanceId: instanceId });
    this.nextEpisode();
    this.push(EventType.SubOrchestrationInstanceCompleted, -1, {
      TaskScheduledId: id,
      Result: JSON.stringify(result),
    });
    return this;
  }

  /** A sub-orchestration the orchestrator started, which then failed (threw) with `reason`. */
  subOrchestrationFailed(name: string, instanceId: string, reason: string): this {
    const id = this.sequence++;
    this.push(EventType.SubOrchestrationInstanceCreated, id, { Name: name, InstanceId: instanceId });
    this.nextEpisode();
    this.push(EventType.SubOrchestrationInstanceFailed, -1, {
      TaskScheduledId: id,
      Reason: reason,
      Details: `Error: ${reason}`,
    });
    return this;
  }

  /** How many tasks, timers and sub-orchestrations the history shows the orchestrator scheduled. */
  get scheduledCount(): number {
    const scheduling: number[] = [
      EventType.TaskScheduled,
      EventType.SubOrchestrationInstanceCreated,
      EventType.TimerCreated,
    ];
    return this.events.filter((e) => scheduling.includes(e.EventType)).length;
  }

  /** The orchestration trigger's data, as the extension (replay schema V4) sends it. */
  trigger(): RpcTypedData {
    const lastStart = this.events.map((e) => e.EventType).lastIndexOf(EventType.OrchestratorStarted);
    const history = this.events.map((e, i) => ({ ...e, IsPlayed: i < lastStart }));
    return {
      string: JSON.stringify({
        history,
        input: this.input,
        instanceId: this.instanceId,
        isReplaying: lastStart > 1,
        parentInstanceId: this.parentInstanceId,
        maximumShortTimerDuration: '6.00:00:00',
        longRunningTimerIntervalDuration: '3.00:00:00',
        defaultHttpAsyncRequestSleepTimeMillseconds: 30000,
        upperSchemaVersion: 2,
        upperSchemaVersionNew: 3,
      }),
    };
  }
}
