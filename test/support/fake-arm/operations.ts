import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { ArmError, sendJson } from './arm-http.js';
import type { ArmErrorBody } from './arm-http.js';
import { normaliseRegion } from './json.js';
import type { Json } from './json.js';

export type OperationOutcome =
  { status: 'Succeeded' } | { status: 'Canceled' } | { status: 'Failed'; error: ArmErrorBody };

/** An ARM long-running operation, reachable at its `capsOperations` URL until the fake stops. */
interface AsyncOperation {
  id: string;
  startTime: string;
  pollsLeft: number;
  outcome?: Promise<OperationOutcome>;
  settle(): Promise<OperationOutcome>;
  /** What the operation's Location monitor answers once it succeeded: the resource, or nothing for a delete. */
  result?: Json;
}

/**
 * Which status links an accepted write carries. GalleryRP's spec (Azure/azure-rest-api-specs,
 * specification/compute/resource-manager/Microsoft.Compute/GalleryRP/stable/2024-03-03/GalleryRP.json, operations
 * GalleryImages_* and GalleryImageVersions_*) declares `Location` and `Retry-After` on a PUT's 201/202, a PATCH's 200
 * and a DELETE's 202, with `x-ms-long-running-operation-options: { final-state-via: location }`; the Compute resource
 * provider also sends `Azure-AsyncOperation`, as every GalleryRP version before the TypeSpec one did. `both` is what
 * Azure sends; the others are the variants the spec allows a client to meet.
 */
export type StatusLinks = 'azure-async-operation' | 'location' | 'both';

/** The answers of GalleryRP's long-running writes, by operation, as the spec declares their headers. */
export type WriteKind = 'create' | 'replace' | 'patch' | 'delete';

export interface OperationsSite {
  /** The fake's URL, known once its server listens. */
  url(): string;
  subscriptionId: string;
  location: string;
  /** Async-operation polls answered InProgress before the operation completes. */
  pollsUntilDone: number;
  statusLinks: StatusLinks;
  /** The `Retry-After` (seconds) of accepted writes and of polls. */
  retryAfterSeconds: number;
}

/**
 * ARM's long-running operations of the Compute resource provider: the status links of an accepted write, the
 * `capsOperations` status resource (the `Azure-AsyncOperation` body, or the `Location` monitor's 202-then-result),
 * and at most one operation per resource at a time. Resources are keyed by the caller (`definition:<name>`,
 * `version:<def>/<ver>`, lower case).
 */
export class LongRunningOperations {
  private readonly operations = new Map<string, AsyncOperation>();
  private readonly pending = new Map<string, AsyncOperation>();

  constructor(private readonly site: OperationsSite) {}

  start(resourceKey: string, settle: () => Promise<OperationOutcome>, result?: Json): AsyncOperation {
    const operation: AsyncOperation = {
      id: randomUUID(),
      startTime: new Date().toISOString(),
      pollsLeft: this.site.pollsUntilDone,
      settle: async () => {
        try {
          return await settle();
        } finally {
          if (this.pending.get(resourceKey) === operation) this.pending.delete(resourceKey);
        }
      },
    };
    if (result !== undefined) operation.result = result;
    this.operations.set(operation.id, operation);
    this.pending.set(resourceKey, operation);
    return operation;
  }

  /** Reading a resource counts as the passing of time for its pending operation, as polling does. */
  async observe(resourceKey: string): Promise<void> {
    const operation = this.pending.get(resourceKey);
    if (operation !== undefined) await advance(operation);
  }

  cancel(resourceKey: string): void {
    const operation = this.pending.get(resourceKey);
    if (operation === undefined) return;
    operation.outcome ??= Promise.resolve({ status: 'Canceled' });
    this.pending.delete(resourceKey);
  }

  rejectIfPending(resourceKey: string, what: string): void {
    if (this.pending.has(resourceKey)) {
      throw new ArmError(
        409,
        'OperationNotAllowed',
        `Another operation on ${what} is in progress; retry after it completes.`,
      );
    }
  }

  /**
   * GET of `/subscriptions/{id}/providers/Microsoft.Compute/locations/{region}/capsOperations/{id}`: the operation
   * status body (`Azure-AsyncOperation`), or with `monitor=true` the `Location` monitor, which answers 202 while the
   * operation runs and then the operation's result (the resource, or 204 after a delete) or its error.
   */
  async answer(id: string, monitor: boolean, apiVersion: string, res: ServerResponse): Promise<void> {
    const operation = this.operations.get(id);
    if (operation === undefined) throw new ArmError(404, 'NotFound', `The operation '${id}' was not found.`);
    const outcome = await advance(operation);
    if (monitor) {
      this.answerMonitor(operation, outcome, apiVersion, res);
      return;
    }
    const body: Json = { startTime: operation.startTime, status: outcome?.status ?? 'InProgress', name: id };
    if (outcome !== undefined) body['endTime'] = new Date().toISOString();
    if (outcome?.status === 'Failed') body['error'] = outcome.error;
    sendJson(res, 200, body, this.retryAfter());
  }

  /** The headers of an accepted write, and its answer: the resource (or nothing, for a delete). */
  sendAccepted(
    res: ServerResponse,
    kind: WriteKind,
    resource: Json,
    operation: AsyncOperation,
    apiVersion: string,
  ): void {
    const status = kind === 'create' ? 201 : kind === 'delete' ? 202 : 200;
    const headers: Record<string, string> = {};
    const links = this.site.statusLinks;
    if (links !== 'location')
      headers['azure-asyncoperation'] = this.operationUrl(operation, apiVersion, false);
    // A replacing PUT's 200 declares no headers in the spec; Azure-AsyncOperation (when sent) still tracks it.
    if (links !== 'azure-async-operation' && kind !== 'replace') {
      headers['location'] = this.operationUrl(operation, apiVersion, true);
    }
    if (Object.keys(headers).length > 0) Object.assign(headers, this.retryAfter());
    if (kind === 'delete') {
      res.writeHead(status, { 'x-ms-request-id': randomUUID(), 'content-length': 0, ...headers }).end();
      return;
    }
    sendJson(res, status, resource, headers);
  }

  private answerMonitor(
    operation: AsyncOperation,
    outcome: OperationOutcome | undefined,
    apiVersion: string,
    res: ServerResponse,
  ): void {
    if (outcome === undefined) {
      const headers = { location: this.operationUrl(operation, apiVersion, true), ...this.retryAfter() };
      res.writeHead(202, { 'x-ms-request-id': randomUUID(), 'content-length': 0, ...headers }).end();
      return;
    }
    if (outcome.status === 'Failed') {
      sendJson(res, 400, { error: outcome.error });
    } else if (outcome.status === 'Canceled') {
      sendJson(res, 409, { error: { code: 'OperationCanceled', message: 'The operation was canceled.' } });
    } else if (operation.result === undefined) {
      res.writeHead(204, { 'x-ms-request-id': randomUUID() }).end();
    } else {
      sendJson(res, 200, operation.result);
    }
  }

  private operationUrl(operation: AsyncOperation, apiVersion: string, monitor: boolean): string {
    const { subscriptionId, location } = this.site;
    const query = monitor ? `monitor=true&api-version=${apiVersion}` : `api-version=${apiVersion}`;
    return `${this.site.url()}/subscriptions/${subscriptionId}/providers/Microsoft.Compute/locations/${normaliseRegion(location)}/capsOperations/${operation.id}?${query}`;
  }

  private retryAfter(): Record<string, string> {
    return { 'retry-after': String(this.site.retryAfterSeconds) };
  }
}

async function advance(operation: AsyncOperation): Promise<OperationOutcome | undefined> {
  if (operation.outcome !== undefined) return operation.outcome;
  if (operation.pollsLeft > 0) {
    operation.pollsLeft -= 1;
    return undefined;
  }
  operation.outcome = operation.settle();
  return operation.outcome;
}
