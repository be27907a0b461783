/**
 * An HTTPS proxy in front of Azurite that counts and can disturb Put Page requests (`PUT ?comp=page`),
 * the page writes of a VHD upload: pass them on, hold them unanswered, answer a 5xx in Azure Storage's
 * own error format, or drop the connection before or after Azurite wrote the pages. Every other request
 * passes unchanged, so the proxy's URL can stand for the storage account's blob endpoint.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { startHttpsServer } from './https-server.js';

/**
 * What happens to one Put Page:
 * - `pass`: Azurite writes it and its answer goes back;
 * - `hold`: never answered (the sender waits until the proxy stops or the sender dies);
 * - `500` / `503`: Azure's error answer, nothing written;
 * - `drop-request`: the connection is cut after the first bytes of the body, nothing written;
 * - `drop-response`: Azurite writes the pages, then the connection is cut before the answer.
 */
export type PutPageFault = 'pass' | 'hold' | 500 | 503 | 'drop-request' | 'drop-response';

export interface PutPage {
  /** 0, 1, ... in the order the requests arrived. */
  index: number;
  range: string;
  length: number;
}

export interface StorageProxy {
  /** Stands for the blob endpoint: `https://127.0.0.1:PORT/devstoreaccount1`. */
  blobEndpoint: string;
  /** Decides each Put Page (default: pass). */
  fault: (putPage: PutPage) => PutPageFault;
  /** Body bytes of the Put Pages Azurite accepted (201) through the proxy, since the last reset. */
  writtenBytes: number;
  /** Every Put Page that arrived, with what the proxy did with it, since the last reset. */
  putPages: Array<PutPage & { fault: PutPageFault }>;
  /** Resolves when the next Put Page is held. */
  nextHold(): Promise<PutPage>;
  reset(): void;
  stop(): Promise<void>;
}

export async function startStorageProxy(azuriteBlobEndpoint: string): Promise<StorageProxy> {
  const target = new URL(azuriteBlobEndpoint);
  const held = new Set<ServerResponse>();
  let holdWaiters: Array<(putPage: PutPage) => void> = [];
  let index = 0;

  const proxy: Omit<StorageProxy, 'blobEndpoint' | 'stop'> = {
    fault: () => 'pass',
    writtenBytes: 0,
    putPages: [],
    nextHold: () => new Promise((resolve) => holdWaiters.push(resolve)),
    reset() {
      this.writtenBytes = 0;
      this.putPages = [];
      index = 0;
    },
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    after?: (status: number) => void,
  ) => {
    const upstream = httpsRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const status = answer.statusCode ?? 502;
          after?.(status);
          if (res.destroyed) return;
          res.writeHead(status, answer.headers);
          res.end(Buffer.concat(chunks));
        });
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.end(body);
  };

  const server = await startHttpsServer((req, res) => {
    const query = new URL(req.url ?? '/', 'https://proxy').searchParams;
    const isPutPage =
      req.method === 'PUT' && query.get('comp') === 'page' && req.headers['x-ms-page-write'] !== 'clear';
    if (!isPutPage) {
      collect(req, (body) => forward(req, res, body));
      return;
    }
    const putPage: PutPage = {
      index: index++,
      range: String(req.headers['x-ms-range'] ?? req.headers['range'] ?? ''),
      length: Number(req.headers['content-length'] ?? 0),
    };
    const fault = proxy.fault(putPage);
    proxy.putPages.push({ ...putPage, fault });
    if (fault === 'drop-request') {
      // Cut while the body is still arriving: Azurite never sees the write.
      req.once('data', () => req.socket.destroy());
      return;
    }
    collect(req, (body) => {
      if (fault === 'hold') {
        held.add(res);
        const waiters = holdWaiters;
        holdWaiters = [];
        for (const wake of waiters) wake(putPage);
        return;
      }
      if (fault === 500 || fault === 503) {
        const code = fault === 500 ? 'InternalError' : 'ServerBusy';
        const xml = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${code === 'ServerBusy' ? 'The server is busy.' : 'The server encountered an internal error. Please retry the request.'}</Message></Error>`;
        res.writeHead(fault, { 'content-type': 'application/xml', 'x-ms-error-code': code });
        res.end(xml);
        return;
      }
      forward(req, res, body, (status) => {
        if (status === 201) proxy.writtenBytes += body.length;
        // Written, but the sender never learns it: it has to send the same pages again.
        if (fault === 'drop-response') req.socket.destroy();
      });
    });
  });

  const running: StorageProxy = Object.assign(proxy, {
    blobEndpoint: `${server.url}${target.pathname.replace(/\/$/, '')}`,
    async stop() {
      for (const res of held) res.destroy();
      await server.stop();
    },
  });
  return running;
}

function collect(req: IncomingMessage, done: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => done(Buffer.concat(chunks)));
}
