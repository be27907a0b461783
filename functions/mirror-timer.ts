/**
 * Timer trigger `mirrorTimer`: starts one `mirrorSeries` orchestration per configured series, on the
 * schedule of app setting BASM_TIMER_SCHEDULE (default daily at 06:00 UTC).
 */

import { app, type InvocationContext, type Timer } from '@azure/functions';
import * as df from 'durable-functions';
import { loadConfig } from '../src/config.js';
import { errorMessage } from '../src/failures.js';
import { monitorSettings, startSeriesMirror } from './series-start.js';

export const DEFAULT_TIMER_SCHEDULE = '0 0 6 * * *';

/** NCRONTAB with seconds, as the Functions timer trigger wants it: `{second} {minute} {hour} {day} {month} {day-of-week}`. */
const NCRONTAB = /^[\w*/,-]+(?:\s+[\w*/,-]+){5}$/;

/** Read when the app loads: the schedule is part of the function's binding, fixed until the next restart. */
function timerSchedule(env: NodeJS.ProcessEnv): string {
  const value = env.BASM_TIMER_SCHEDULE?.trim();
  if (!value) return DEFAULT_TIMER_SCHEDULE;
  if (!NCRONTAB.test(value)) {
    throw new Error(
      `Invalid configuration (1 setting):\n  BASM_TIMER_SCHEDULE: "${value}" is not valid; expected a six-field ` +
        `NCRONTAB expression "{second} {minute} {hour} {day} {month} {day-of-week}" such as "${DEFAULT_TIMER_SCHEDULE}"`,
    );
  }
  return value;
}

async function mirrorOnSchedule(timer: Timer, context: InvocationContext): Promise<void> {
  if (timer.isPastDue)
    context.warn('the mirror timer is running late (the app was down or busy at the scheduled time)');
  const config = loadConfig(process.env);
  for (const warning of config.warnings) context.warn(warning);
  const client = df.getClient(context);
  const monitor = monitorSettings(config);
  const failed: string[] = [];
  for (const series of config.series) {
    try {
      const start = await startSeriesMirror(client, { request: { series }, monitor });
      if (start.started) context.info(`${series}: started orchestration ${start.instanceId}`);
      else
        context.info(
          `${series}: orchestration ${start.instanceId} is still ${start.runtimeStatus}; not starting another`,
        );
    } catch (error) {
      context.error(`${series}: could not start the mirror orchestration: ${errorMessage(error)}`);
      failed.push(series);
    }
  }
  if (failed.length > 0)
    throw new Error(`could not start the mirror of ${failed.join(', ')}; see the errors above`);
}

app.timer('mirrorTimer', {
  schedule: timerSchedule(process.env),
  runOnStartup: false,
  extraInputs: [df.input.durableClient()],
  handler: mirrorOnSchedule,
});
