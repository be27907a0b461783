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
 * - `drop-response`: Azurite writes the pages, then the connection is cut before the answer;
 * - `403`: Azure's refusal (AuthorizationPermissionMismatch), nothing written, not retried by the SDK.
 */
export type PutPageFault = 'pass' | 'hold' | 403 | 500 | 503 | 'drop-request' | 'drop-response';

/** A request to the blob service as it passed the proxy: which operation, and the metadata it set. */
export interface ProxiedRequest {
  method: string;
  /** The `comp` query parameter (`page`, `metadata`, `lease`, ...), absent for a blob's create or delete. */
  comp?: string;
  /** `x-ms-meta-*` headers, by name without the prefix. */
  metadata: Record<string, string>;
}

export interface PutPage {
  /** 0, 1, ... in the order the requests arrived. */
  index: number;
  range: string;
  length: number;
  /** The lease the write is made under (`x-ms-lease-id`), which tells one writer's pages from another's. */
  leaseId?: string;
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
  /** Every request to a blob (not the container's), in the order they arrived, since the last reset. */
  requests: ProxiedRequest[];
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
    requests: [],
    nextHold: () => new Promise((resolve) => holdWaiters.push(resolve)),
    reset() {
      this.writtenBytes = 0;
      this.putPages = [];
      this.requests = [];
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
    if (query.get('restype') !== 'container') proxy.requests.push(proxiedRequest(req, query));
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
      ...(typeof req.headers['x-ms-lease-id'] === 'string' ? { leaseId: req.headers['x-ms-lease-id'] } : {}),
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
      if (fault === 403 || fault === 500 || fault === 503) {
        const [code, message] = ERRORS[fault];
        const xml = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
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

const ERRORS = {
  403: [
    'AuthorizationPermissionMismatch',
    'This request is not authorized to perform this operation using this permission.',
  ],
  500: ['InternalError', 'The server encountered an internal error. Please retry the request.'],
  503: ['ServerBusy', 'The server is busy.'],
} as const;

function proxiedRequest(req: IncomingMessage, query: URLSearchParams): ProxiedRequest {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('x-ms-meta-') && typeof value === 'string') metadata[name.slice(10)] = value;
  }
  const comp = query.get('comp');
  return { method: req.method ?? '', ...(comp !== null ? { comp } : {}), metadata };
}

function collect(req: IncomingMessage, done: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => done(Buffer.concat(chunks)));
}
