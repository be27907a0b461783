/**
 * HTTP starter `mirrorHttpStart`: `POST /api/mirror` (function key), optional JSON body
 * `{ "series": "...", "version": "..." }`. What it accepts and answers: src/http-start.ts.
 */

import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { answerMirrorRequest } from '../src/http-start.js';

function startMirror(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const starterRequest = {
    url: request.url,
    contentLength: request.headers.get('content-length'),
    text: () => request.text(),
  };
  return answerMirrorRequest(df.getClient(context), starterRequest, process.env, context);
}

app.http('mirrorHttpStart', {
  route: 'mirror',
  methods: ['POST'],
  authLevel: 'function',
  extraInputs: [df.input.durableClient()],
  handler: startMirror,
});
