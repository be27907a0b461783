/** The steps that take and give back a run's series, and the heartbeat every other step runs under. */

import { hostname } from 'node:os';
import type { MirrorConfig } from './config.js';
import { requireConfiguredSeries } from './provenance.js';
import { seriesLockWait, type MirrorServices } from './services.js';
import { describeHolder, requireClaim, type SeriesLockClaim } from './series-lock.js';
import type { StepInputs, StepOutputs, UnderSeriesLock } from './workflow-contract.js';

/** A lock claim on a series the mirror is configured for, with a GUID lease id; refused otherwise. */
function configuredClaim(config: MirrorConfig, claim: unknown): SeriesLockClaim {
  requireConfiguredSeries(config, (claim as { series?: unknown } | undefined)?.series);
  return requireClaim(claim, undefined);
}

/** First: the series for this run, or who holds it; a holder without heartbeat for the bound is taken over. */
export async function acquireSeriesLock(
  { config, seriesLocks, log }: MirrorServices,
  { claim: named, run }: StepInputs['acquireSeriesLock'],
): Promise<StepOutputs['acquireSeriesLock']> {
  const claim = configuredClaim(config, named);
  const taken = await seriesLocks.acquire(claim, `${String(run)} (pid ${process.pid} on ${hostname()})`);
  if (!taken.acquired) {
    log.info(describeHolder(claim.series, taken));
  } else if (taken.tookOverFrom !== undefined) {
    const dead = taken.tookOverFrom;
    log.warn(
      `took over series ${claim.series} from ${dead.holder} (held since ${dead.since}, no heartbeat since ` +
        `${dead.heartbeatAt}, more than BASM_SERIES_LOCK_STALE_SECONDS ${config.seriesLockStaleSeconds} s)`,
    );
  }
  return { ...taken, wait: seriesLockWait(config) };
}

/** Last: the series back, so the next run need not wait for the lock to go stale. */
export async function releaseSeriesLock(
  { config, seriesLocks, log }: MirrorServices,
  { claim: named }: StepInputs['releaseSeriesLock'],
): Promise<StepOutputs['releaseSeriesLock']> {
  const claim = configuredClaim(config, named);
  const released = await seriesLocks.release(claim);
  if (!released) log.warn(`series ${claim.series}: another run had taken it over before this run ended`);
  return { released };
}

/**
 * A step of a run that holds its series runs only while the run still holds it: a heartbeat first (a run that
 * lost the series stops here, before it uploads, creates or dispatches anything), more while it runs.
 */
export async function underSeriesLock<I, O>(
  services: MirrorServices,
  input: I & UnderSeriesLock,
  step: (services: MirrorServices, input: I) => Promise<O>,
): Promise<O> {
  const { lock, ...own } = input;
  if (lock === undefined) return step(services, input);
  // A claim is checked, never trusted: only the current lease on this step's own series' lock lets it act.
  const claim = requireClaim(lock, (own as { series?: unknown }).series);
  // SeriesLockLost is permanent: the step fails as a value, and the run ends without retrying it.
  return services.seriesLocks.holdDuring(
    claim,
    () => step(services, own as I),
    (message) => services.log.warn(message),
  );
}
