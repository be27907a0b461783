/**
 * Read-only status `mirrorStatus`: `GET /api/mirror/{series}` and `GET /api/mirror` (function key).
 * What it answers: src/http-status.ts.
 */

import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { answerStatusRequest } from '../src/http-status.js';

function mirrorStatus(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return answerStatusRequest(df.getClient(context), request.params.series, process.env, context);
}

app.http('mirrorStatus', {
  route: 'mirror/{series?}',
  methods: ['GET'],
  authLevel: 'function',
  extraInputs: [df.input.durableClient()],
  handler: mirrorStatus,
});
