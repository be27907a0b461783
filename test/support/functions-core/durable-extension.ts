/**
 * A fake of the Durable Functions extension's side of the durable client binding: the binding data the
 * host hands a client function, and the extension's local HTTP API behind `rpcBaseUrl` that the real
 * `DurableClient` of durable-functions calls (start an orchestration, read an instance's status).
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RpcTypedData } from './index.js';

export const TASK_HUB = 'StemcellMirror';
/** The public webhook base the host advertises (getClient rewrites it to localhost:7071 outside Azure). */
const WEBHOOK_BASE = 'http://localhost:7071/runtime/webhooks/durabletask';
const KEY_QUERY = `taskHub=${TASK_HUB}&connection=Storage&code=systemkey`;

export interface InstanceRecord {
  name: string;
  instanceId: string;
  runtimeStatus: string;
  input: unknown;
  output: unknown;
  customStatus: unknown;
  createdTime: string;
  lastUpdatedTime: string;
}

export interface FakeDurableExtension {
  /** The durable client input binding's data, as the host sends it to the worker. */
  clientBinding(): RpcTypedData;
  /** Instances of the task hub; tests put existing ones here. */
  instances: Map<string, InstanceRecord>;
  /** Every start request the extension accepted or refused, in order. */
  starts: Array<{ name: string; instanceId: string; input: unknown; accepted: boolean }>;
  /** Puts an instance in the task hub as if it had been started earlier. */
  putInstance(instanceId: string, runtimeStatus: string, name?: string): void;
  /** The next start of this id loses a race: another client's start lands just before it. */
  competingStart(instanceId: string): void;
  stop(): Promise<void>;
}

/** Statuses whose instance id a new start may not take over (overridableExistingInstanceStates: NonRunningStates). */
const ACTIVE = new Set(['Pending', 'Running', 'ContinuedAsNew', 'Suspended']);

function managementUrls(instanceId: string): Record<string, string> {
  const instance = `${WEBHOOK_BASE}/instances/${instanceId}`;
  return {
    id: instanceId,
    purgeHistoryDeleteUri: `${instance}?${KEY_QUERY}`,
    sendEventPostUri: `${instance}/raiseEvent/{eventName}?${KEY_QUERY}`,
    statusQueryGetUri: `${instance}?${KEY_QUERY}`,
    terminatePostUri: `${instance}/terminate?reason={text}&${KEY_QUERY}`,
    suspendPostUri: `${instance}/suspend?reason={text}&${KEY_QUERY}`,
    resumePostUri: `${instance}/resume?reason={text}&${KEY_QUERY}`,
    rewindPostUri: `${instance}/rewind?reason={text}&${KEY_QUERY}`,
    restartPostUri: `${instance}/restart?${KEY_QUERY}`,
  };
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

export async function startFakeDurableExtension(): Promise<FakeDurableExtension> {
  const instances = new Map<string, InstanceRecord>();
  const starts: FakeDurableExtension['starts'] = [];
  const competing = new Set<string>();
  const now = (): string => new Date().toISOString();

  const putInstance = (instanceId: string, runtimeStatus: string, name = 'mirrorSeries'): void => {
    const time = now();
    instances.set(instanceId, {
      name,
      instanceId,
      runtimeStatus,
      input: null,
      output: null,
      customStatus: null,
      createdTime: time,
      lastUpdatedTime: time,
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== 'durabletask') return sendJson(res, 404, { message: 'not found' });

    // POST durabletask/orchestrators/{functionName}[/{instanceId}]
    if (req.method === 'POST' && parts[1] === 'orchestrators' && (parts.length === 3 || parts.length === 4)) {
      const name = parts[2] ?? '';
      const instanceId = parts[3] ?? crypto.randomUUID().replaceAll('-', '');
      const text = await readText(req);
      const input: unknown = text === '' ? null : JSON.parse(text);
      if (competing.delete(instanceId)) putInstance(instanceId, 'Pending', name);
      const existing = instances.get(instanceId);
      if (existing !== undefined && ACTIVE.has(existing.runtimeStatus)) {
        starts.push({ name, instanceId, input, accepted: false });
        return sendJson(res, 500, {
          Message: `An Orchestration instance with the status ${existing.runtimeStatus} already exists.`,
        });
      }
      starts.push({ name, instanceId, input, accepted: true });
      const time = now();
      instances.set(instanceId, {
        name,
        instanceId,
        runtimeStatus: 'Pending',
        input,
        output: null,
        customStatus: null,
        createdTime: time,
        lastUpdatedTime: time,
      });
      return sendJson(res, 202, managementUrls(instanceId));
    }

    // GET durabletask/instances/{instanceId}
    if (req.method === 'GET' && parts[1] === 'instances' && parts.length === 3) {
      const instance = instances.get(parts[2] ?? '');
      if (instance === undefined) return sendJson(res, 404, null);
      return sendJson(res, 200, instance);
    }
    return sendJson(res, 404, { message: `no route for ${req.method} ${url.pathname}` });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => sendJson(res, 500, { Message: String(error) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const rpcBaseUrl = `http://127.0.0.1:${port}/durabletask/`;

  return {
    clientBinding: () => ({
      string: JSON.stringify({
        taskHubName: TASK_HUB,
        creationUrls: {
          createNewInstancePostUri: `${WEBHOOK_BASE}/orchestrators/{functionName}[/{instanceId}]?code=systemkey`,
          createAndWaitOnNewInstancePostUri:
            `${WEBHOOK_BASE}/orchestrators/{functionName}[/{instanceId}]` +
            '?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&code=systemkey',
        },
        managementUrls: managementUrls('INSTANCEID'),
        baseUrl: WEBHOOK_BASE,
        requiredQueryStringParameters: 'code=systemkey',
        rpcBaseUrl,
        httpBaseUrl: '',
        maxGrpcMessageSizeInBytes: 0,
        grpcHttpClientTimeout: '00:01:40',
      }),
    }),
    instances,
    starts,
    putInstance,
    competingStart: (instanceId) => void competing.add(instanceId),
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
