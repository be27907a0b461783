/**
 * What a run shows while it runs: the Durable custom status of a series' orchestration (the CLI shows the
 * same objects). Durable Functions keeps at most 16 KB of custom status, so it is bounded here.
 */

import type { VersionAction, VersionResult } from './workflow.js';

/** The series' status names the first planned versions and the last results, with counts of all. */
export const STATUS_LIMITS = { planVersions: 20, results: 10, messageChars: 400 } as const;

/** A message as a status shows it: at most a few hundred characters. */
export function brief(message: string): string {
  const max = STATUS_LIMITS.messageChars;
  return message.length <= max ? message : `${message.slice(0, max - 1)}…`;
}

function statusResult(result: VersionResult): VersionResult {
  return result.error !== undefined ? { ...result, error: brief(result.error) } : result;
}

/** The custom status of a series' run: bounded however many versions it handles. */
export function seriesStatus(
  series: string,
  plan: readonly string[],
  results: readonly VersionResult[],
  current?: { version: string; instanceId: string },
): Record<string, unknown> {
  const count = (action: VersionAction) => results.filter((r) => r.action === action).length;
  const shownResults = results.slice(-STATUS_LIMITS.results);
  return {
    series,
    plan: plan.slice(0, STATUS_LIMITS.planVersions),
    ...(plan.length > STATUS_LIMITS.planVersions ? { planned: plan.length } : {}),
    ...(current !== undefined ? { current } : {}),
    counts: {
      done: results.length,
      created: count('created'),
      exists: count('exists'),
      deleted: count('deleted'),
      failed: count('failed'),
    },
    results: shownResults.map(statusResult),
    ...(shownResults.length < results.length ? { earlierResults: results.length - shownResults.length } : {}),
  };
}
