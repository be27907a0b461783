import { createHash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stopServer } from './https-server.js';

/**
 * A local stand-in for the App Service / Functions managed identity endpoint. Note: msal-node caches the
 * managed identity source (endpoint and header) and its tokens per process, so one process gets its
 * tokens from the first endpoint it used; start this once per test process, before the first token.
 */
export interface IdentityEndpoint {
  /** `http://127.0.0.1:PORT/msi/token`: plain http on loopback, as the real one. */
  endpoint: string;
  /** The secret IDENTITY_HEADER value the endpoint expects in `X-IDENTITY-HEADER`. */
  header: string;
  tenantId: string;
  /** The object id (`oid`) of the system-assigned identity. */
  principalId: string;
  /** Token requests that were answered, in order. */
  requests: Array<{ resource: string; clientId?: string }>;
  env(): { IDENTITY_ENDPOINT: string; IDENTITY_HEADER: string };
  stop(): Promise<void>;
}

const supportedApiVersion = '2019-08-01';
const tokenLifetimeSeconds = 60 * 60;
const tokenPath = '/msi/token';

export async function startIdentityEndpoint(): Promise<IdentityEndpoint> {
  const header = randomBytes(16).toString('hex');
  const tenantId = randomUUID();
  const principalId = randomUUID();
  const systemClientId = randomUUID();
  const requests: IdentityEndpoint['requests'] = [];

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== tokenPath)
      return sendJson(res, 404, error('NotFound', `no such path ${url.pathname}`));
    if (req.method !== 'GET')
      return sendJson(res, 405, error('MethodNotAllowed', `${req.method} is not supported`));
    if (req.headers['x-identity-header'] !== header) {
      return sendJson(res, 401, error('Unauthorized', 'X-IDENTITY-HEADER is missing or does not match'));
    }
    const apiVersion = url.searchParams.get('api-version');
    if (apiVersion !== supportedApiVersion) {
      return sendJson(res, 400, error('BadRequest', `api-version '${apiVersion}' is not supported`));
    }
    const requested = url.searchParams.get('resource');
    if (!requested) return sendJson(res, 400, error('BadRequest', 'resource is required'));
    const resource = requested.replace(/\/\.default$/, '');
    const clientId = url.searchParams.get('client_id') ?? undefined;
    requests.push(clientId === undefined ? { resource } : { resource, clientId });

    const appId = clientId ?? systemClientId;
    const now = Math.floor(Date.now() / 1000);
    const expiresOn = now + tokenLifetimeSeconds;
    const accessToken = unsignedJwt({
      aud: resource,
      iss: `https://sts.windows.net/${tenantId}/`,
      iat: now,
      nbf: now - 300,
      exp: expiresOn,
      oid: clientId === undefined ? principalId : uuidFrom(clientId),
      sub: clientId === undefined ? principalId : uuidFrom(clientId),
      appid: appId,
      tid: tenantId,
      idtyp: 'app',
      ver: '1.0',
    });
    sendJson(res, 200, {
      access_token: accessToken,
      expires_on: String(expiresOn),
      resource,
      token_type: 'Bearer',
      client_id: appId,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}${tokenPath}`;
  return {
    endpoint,
    header,
    tenantId,
    principalId,
    requests,
    env: () => ({ IDENTITY_ENDPOINT: endpoint, IDENTITY_HEADER: header }),
    stop: () => stopServer(server),
  };
}

/** The payload of a JWT, without checking its signature (the fakes only need the claims). */
export function decodeJwt(token: string): Record<string, unknown> {
  const payload = token.split('.')[1];
  if (payload === undefined)
    throw new Error(`not a JWT (expected header.payload.signature): ${token.slice(0, 20)}...`);
  const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
    throw new Error('JWT payload is not a JSON object');
  }
  return claims as Record<string, unknown>;
}

function unsignedJwt(claims: Record<string, unknown>): string {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims)}.`;
}

// A stable object id for a user-assigned identity, so repeated tokens carry the same oid.
function uuidFrom(clientId: string): string {
  const hex = createHash('sha256').update(clientId).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function error(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message: `managed identity test endpoint: ${message}` } };
}

function sendJson(res: ServerResponse<IncomingMessage>, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
