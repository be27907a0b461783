/**
 * The last run of a series, as every runner leaves it: one small JSON blob `runs/<series>.json` in the VHD
 * container (every runner that uploads can write there), so `status` on the command line shows what the
 * Functions app did and the other way round.
 */

import type { ContainerClient } from '@azure/storage-blob';
import { VERSION_ACTIONS, type VersionAction, type VersionResult } from './workflow-contract.js';

/** Blob names of run records start with this; no VHD blob does (those are `<series>/<version>/root.vhd`). */
export const RUN_RECORD_PREFIX = 'runs/';

export type Runner = 'cli' | 'functions';

export interface RunVersionOutcome {
  version: string | null;
  galleryVersion: string | null;
  action: VersionAction;
  error?: string;
}

export interface RunRecord {
  series: string;
  runner: Runner;
  startedAt: string;
  finishedAt: string;
  /** `failed` when any version (or the decision itself) failed. */
  outcome: 'succeeded' | 'failed';
  versions: RunVersionOutcome[];
}

// A record is read by every status call: keep it small whatever the errors say.
const MAX_ERROR_CHARS = 400;

export function runRecordBlobName(series: string): string {
  return `${RUN_RECORD_PREFIX}${series}.json`;
}

const ACTIONS: ReadonlySet<string> = new Set<VersionAction>(VERSION_ACTIONS);
// More results than a run has: BASM_MAX_VERSIONS_PER_RUN (at most 50) mirrored and as many extended, plus
// versions to finish and src/retention.ts's MAX_DELETIONS_PER_RUN.
const MAX_VERSIONS = 200;

const text = (value: unknown, max: number): string | null =>
  typeof value === 'string' ? value.slice(0, max) : null;

/**
 * The record of a finished run, from the workflow's results. They arrive as a step's input, which anyone
 * who can start an orchestration can forge: so only their shape is kept, bounded, and anything else refused.
 */
export function runRecordOf(
  series: string,
  runner: unknown,
  startedAt: unknown,
  finishedAt: string,
  results: readonly VersionResult[],
): RunRecord {
  if (runner !== 'cli' && runner !== 'functions')
    throw new Error('a run record names the runner cli or functions');
  if (typeof startedAt !== 'string' || Number.isNaN(Date.parse(startedAt))) {
    throw new Error('a run record needs the time the run started');
  }
  if (!Array.isArray(results) || results.length > MAX_VERSIONS) {
    throw new Error(`a run record holds a list of at most ${MAX_VERSIONS} results`);
  }
  const versions = results.map((r: Partial<VersionResult>): RunVersionOutcome => {
    if (typeof r !== 'object' || r === null || !ACTIONS.has(String(r.action))) {
      throw new Error(`a run record result needs an action: ${[...ACTIONS].join(', ')}`);
    }
    const outcome: RunVersionOutcome = {
      version: text(r.version, 40),
      galleryVersion: text(r.galleryVersion, 40),
      action: r.action as VersionAction,
    };
    const error = text(r.error, MAX_ERROR_CHARS);
    if (error !== null) outcome.error = error;
    return outcome;
  });
  return {
    series,
    runner,
    startedAt,
    finishedAt,
    outcome: versions.some((v) => v.action === 'failed') ? 'failed' : 'succeeded',
    versions,
  };
}

/**
 * The one log line every run ends with. The alerts in infra/modules/alerts.bicep query it, so its shape is
 * a contract: `mirror check of <series>: <succeeded|failed>; <count> <action>, ...`. Counts, not versions:
 * a line about a version starts with `<series> <version>:`, and this one is about the series.
 */
export const RUN_LOG_PREFIX = 'mirror check of ';

export function runLogLine(record: RunRecord): string {
  const counts = new Map<string, number>();
  for (const v of record.versions) counts.set(v.action, (counts.get(v.action) ?? 0) + 1);
  const summary = [...counts].map(([action, count]) => `${count} ${action}`).join(', ');
  return `${RUN_LOG_PREFIX}${record.series}: ${record.outcome}; ${summary}`;
}

/** Replaces the series' record (last run wins); creates the container when a fresh account has none yet. */
export async function writeRunRecord(container: ContainerClient, record: RunRecord): Promise<void> {
  const text = JSON.stringify(record);
  const blob = container.getBlockBlobClient(runRecordBlobName(record.series));
  const options = { blobHTTPHeaders: { blobContentType: 'application/json' } };
  try {
    await blob.upload(text, Buffer.byteLength(text), options);
  } catch (error) {
    if ((error as { statusCode?: unknown }).statusCode !== 404) throw error;
    await container.createIfNotExists();
    await blob.upload(text, Buffer.byteLength(text), options);
  }
}

function isRunRecord(value: unknown, series: string): value is RunRecord {
  const r = value as Partial<RunRecord> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.series === series &&
    (r.runner === 'cli' || r.runner === 'functions') &&
    typeof r.startedAt === 'string' &&
    typeof r.finishedAt === 'string' &&
    (r.outcome === 'succeeded' || r.outcome === 'failed') &&
    Array.isArray(r.versions)
  );
}

/** The series' last run, or null when no runner has recorded one; a record that is not one is an error. */
export async function readRunRecord(container: ContainerClient, series: string): Promise<RunRecord | null> {
  const name = runRecordBlobName(series);
  let text: string;
  try {
    text = (await container.getBlockBlobClient(name).downloadToBuffer()).toString('utf8');
  } catch (error) {
    if ((error as { statusCode?: unknown }).statusCode === 404) return null;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isRunRecord(parsed, series)) {
    throw new Error(
      `${container.containerName}/${name} is not a run record of ${series}; delete it, the next run writes it again`,
    );
  }
  return parsed;
}
