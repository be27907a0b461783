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
}

export interface OperationsSite {
  /** The fake's URL, known once its server listens. */
  url(): string;
  subscriptionId: string;
  location: string;
  /** Async-operation polls answered InProgress before the operation completes. */
  pollsUntilDone: number;
}

/**
 * ARM's long-running operations of the Compute resource provider: the `Azure-AsyncOperation` header of a
 * 200/201/202, the `capsOperations` status resource, and at most one operation per resource at a time.
 * Resources are keyed by the caller (`definition:<name>`, `version:<def>/<ver>`, lower case).
 */
export class LongRunningOperations {
  private readonly operations = new Map<string, AsyncOperation>();
  private readonly pending = new Map<string, AsyncOperation>();

  constructor(private readonly site: OperationsSite) {}

  start(resourceKey: string, settle: () => Promise<OperationOutcome>): AsyncOperation {
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

  /** GET of `/subscriptions/{id}/providers/Microsoft.Compute/locations/{region}/capsOperations/{id}`. */
  async answer(id: string, res: ServerResponse): Promise<void> {
    const operation = this.operations.get(id);
    if (operation === undefined) throw new ArmError(404, 'NotFound', `The operation '${id}' was not found.`);
    const outcome = await advance(operation);
    const body: Json = { startTime: operation.startTime, status: outcome?.status ?? 'InProgress', name: id };
    if (outcome !== undefined) body['endTime'] = new Date().toISOString();
    if (outcome?.status === 'Failed') body['error'] = outcome.error;
    sendJson(res, 200, body, { 'retry-after': '0' });
  }

  sendAccepted(
    res: ServerResponse,
    status: number,
    resource: Json,
    operation: AsyncOperation,
    apiVersion: string,
  ): void {
    const { subscriptionId, location } = this.site;
    const operationUrl = `${this.site.url()}/subscriptions/${subscriptionId}/providers/Microsoft.Compute/locations/${normaliseRegion(location)}/capsOperations/${operation.id}?api-version=${apiVersion}`;
    sendJson(res, status, resource, { 'azure-asyncoperation': operationUrl, 'retry-after': '0' });
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
