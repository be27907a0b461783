/**
 * A durable client binding whose starts of chosen instances fail: a proxy in front of the fake Durable
 * extension answers 500 to `POST durabletask/orchestrators/{name}/{instanceId}` for those ids (as the
 * extension does when, say, its task hub storage is unreachable) and passes every other request through.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FakeDurableExtension } from './functions-core/durable-extension.js';
import type { RpcTypedData } from './functions-core/index.js';

export interface FailingStarts {
  /** The durable client binding data, pointing the client at the proxy. */
  binding: RpcTypedData;
  /** Instance ids whose start the proxy refused, in order. */
  refused: string[];
  stop(): Promise<void>;
}

export async function failingStarts(
  extension: FakeDurableExtension,
  failing: readonly string[],
): Promise<FailingStarts> {
  const original = JSON.parse(extension.clientBinding().string ?? '{}') as { rpcBaseUrl: string };
  const target = new URL(original.rpcBaseUrl);
  const refused: string[] = [];

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', target);
      const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      const instanceId = parts[3];
      if (
        req.method === 'POST' &&
        parts[1] === 'orchestrators' &&
        instanceId !== undefined &&
        failing.includes(instanceId)
      ) {
        refused.push(instanceId);
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ Message: 'The task hub storage account could not be reached.' }));
        return;
      }
      const body = Buffer.concat(chunks);
      fetch(url, {
        method: req.method ?? 'GET',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
        ...(body.length > 0 ? { body } : {}),
      })
        .then(async (answer) => {
          const text = await answer.text();
          res.writeHead(answer.status, {
            'content-type': answer.headers.get('content-type') ?? 'application/json',
          });
          res.end(text);
        })
        .catch((error: unknown) => {
          res.writeHead(502);
          res.end(String(error));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const rpcBaseUrl = `http://127.0.0.1:${port}${target.pathname}`;

  return {
    binding: { string: JSON.stringify({ ...original, rpcBaseUrl }) },
    refused,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
