/**
 * Timer trigger `mirrorTimer`: starts one `mirrorSeries` orchestration per configured series, on the
 * schedule of app setting BASM_TIMER_SCHEDULE (default daily at 06:00 UTC).
 */

import { app, type InvocationContext, type Timer } from '@azure/functions';
import * as df from 'durable-functions';
import { loadConfig } from '../src/config.js';
import { startScheduledMirrors, timerSchedule } from '../src/starts.js';

async function mirrorOnSchedule(timer: Timer, context: InvocationContext): Promise<void> {
  if (timer.isPastDue)
    context.warn('the mirror timer is running late (the app was down or busy at the scheduled time)');
  await startScheduledMirrors(df.getClient(context), loadConfig(process.env), context);
}

app.timer('mirrorTimer', {
  schedule: timerSchedule(process.env),
  runOnStartup: false,
  extraInputs: [df.input.durableClient()],
  handler: mirrorOnSchedule,
});
