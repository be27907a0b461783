import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { ensureTestCertificate } from './tls.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface RunningHttpsServer {
  /** `https://127.0.0.1:PORT`, no trailing slash. */
  url: string;
  server: https.Server;
  stop(): Promise<void>;
}

/** Serves `handler` over HTTPS on a free loopback port with the test certificate. */
export async function startHttpsServer(handler: RequestHandler): Promise<RunningHttpsServer> {
  const { cert, key } = ensureTestCertificate();
  const server = https.createServer({ cert, key }, (req, res) => {
    void runHandler(handler, req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    server,
    stop: () => stopServer(server),
  };
}

async function runHandler(handler: RequestHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    await handler(req, res);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (res.headersSent) {
      // Too late for a status code: a broken connection is the only honest signal left.
      res.destroy();
      return;
    }
    const body = JSON.stringify({
      error: `test server handler failed on ${req.method} ${req.url}: ${message}`,
    });
    res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}

/** Closes the listener and every open connection, including keep-alive ones, so tests end promptly. */
export function stopServer(server: https.Server | HttpServer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
