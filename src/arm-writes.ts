/**
 * ARM's long-running writes, waited for by reading the resource itself. Azure's status URLs for them
 * (`.../providers/Microsoft.Compute/locations/{region}/capsOperations/{id}`, in Azure-AsyncOperation and Location)
 * lie under the subscription, and ARM lets only a role at the resource group read them; the app's identity holds
 * its role on the gallery alone (least privilege), so it never reads them.
 */
import { GalleryError, duration } from './gallery-error.js';

/** The options of an SDK write this module passes: a look at the response, and extra request headers. */
export interface WriteOptions {
  onResponse?: (response: { headers: { get(name: string): string | undefined } }) => void;
  requestOptions?: { headers: Record<string, string> };
}

/** What an SDK write returns: a poller, of which only the initial request is used. */
export interface AcceptedOperation {
  submitted(): Promise<void>;
  operationState?: { status: string; error?: Error };
}

/**
 * Sends a long-running write and returns once Azure accepted it, with the wait it asked for before the first
 * look (Retry-After, in ms). The SDK's poller is never awaited, so nothing reads the status URLs.
 */
export async function acceptedWrite(
  send: (options: WriteOptions) => AcceptedOperation,
  headers?: Record<string, string>,
): Promise<number | undefined> {
  let retryAfter: string | undefined;
  const options: WriteOptions = {
    onResponse: (response) => {
      retryAfter = response.headers.get('retry-after');
    },
  };
  if (headers !== undefined) options.requestOptions = { headers };
  const poller = send(options);
  await poller.submitted();
  if (poller.operationState?.status === 'failed') {
    throw poller.operationState.error ?? new Error('Azure reported the operation failed without details');
  }
  return retryAfterMs(retryAfter);
}

/** Reads the resource every `intervalMs` until `settled` holds; after `timeoutMs` a transient GalleryError. */
export async function untilSettled<T>(wait: {
  read: () => Promise<T | undefined>;
  settled: (current: T | undefined) => boolean;
  intervalMs: number;
  timeoutMs: number;
  what: string;
  sleep?: (ms: number) => Promise<void>;
}): Promise<T | undefined> {
  const sleep = wait.sleep ?? delay;
  const deadline = Date.now() + wait.timeoutMs;
  for (;;) {
    if (Date.now() + wait.intervalMs > deadline) {
      throw new GalleryError(
        `${wait.what} is still running after ${duration(wait.timeoutMs)}: Azure has not finished the operation yet (it goes on in Azure). This looks temporary; it is retried.`,
        { code: 'OperationTimeout', transient: true },
      );
    }
    await sleep(wait.intervalMs);
    const current = await wait.read();
    if (wait.settled(current)) return current;
  }
}

/** Provisioning states of a resource whose write goes on; anything else (Succeeded, Failed, Canceled) has ended. */
export function isBusy(state: string | undefined): boolean {
  return (
    state === 'Creating' ||
    state === 'Updating' ||
    state === 'Deleting' ||
    state === 'Migrating' ||
    state === 'Accepted'
  );
}

/** `Retry-After` as ms: whole seconds (an HTTP date is rare in ARM and ignored); 0 or absent: our own interval. */
function retryAfterMs(value: string | undefined): number | undefined {
  const seconds = value === undefined ? NaN : Number(value.trim());
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
