/**
 * Notification: tells a GitHub Actions workflow (workflow_dispatch) that a stemcell version is ready in the gallery.
 */
import { Octokit } from '@octokit/rest';
import type { NotifySettings } from './config.js';
import { errorMessage, httpStatusOf, isTransientError } from './failures.js';

export interface StemcellPublished {
  galleryName: string;
  imageName: string;
  imageVersion: string;
  subscriptionId: string;
  resourceGroup: string;
}

/**
 * A failed dispatch. `transient` (network, timeout, 408, 429, 5xx, a 403 from GitHub's rate limits) means
 * "retry later"; otherwise fix the settings.
 */
export class NotifyError extends Error {
  readonly status?: number;
  readonly transient: boolean;
  constructor(message: string, options: { status?: number; transient: boolean }) {
    super(message);
    this.name = 'NotifyError';
    if (options.status !== undefined) this.status = options.status;
    this.transient = options.transient;
  }
}

export interface NotifyOptions {
  /** The longest the dispatch request may take, answer included; default 30 s. Longer is a transient error. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Dispatches the configured workflow with exactly the five gallery inputs the workflow declares. */
export async function notifyStemcellPublished(
  settings: NotifySettings,
  published: StemcellPublished,
  options: NotifyOptions = {},
): Promise<void> {
  const timeoutMs =
    options.timeoutMs !== undefined && Number.isFinite(options.timeoutMs) && options.timeoutMs > 0
      ? options.timeoutMs
      : DEFAULT_TIMEOUT_MS;
  const octokit = new Octokit({
    auth: settings.token.reveal(),
    baseUrl: settings.apiUrl,
    // Failures come back as one NotifyError; Octokit's own request log would report them a second time.
    log: { debug: () => {}, info: () => {}, warn: console.warn, error: () => {} },
  });
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  try {
    await octokit.rest.actions.createWorkflowDispatch({
      owner: settings.owner,
      repo: settings.repo,
      workflow_id: settings.workflow,
      ref: settings.ref,
      inputs: {
        gallery_name: published.galleryName,
        gallery_image_name: published.imageName,
        gallery_image_version: published.imageVersion,
        gallery_subscription_id: published.subscriptionId,
        gallery_resource_group: published.resourceGroup,
      },
      request: { signal: deadline.signal },
    });
  } catch (error) {
    throw deadline.signal.aborted
      ? timeoutError(timeoutMs, settings, published)
      : notifyError(error, settings, published);
  } finally {
    clearTimeout(timer);
  }
}

function describe(settings: NotifySettings, published: StemcellPublished): string {
  const target = `workflow ${settings.workflow} of ${settings.owner}/${settings.repo} at ref ${settings.ref}`;
  return `Notifying ${target} about ${published.imageName} ${published.imageVersion}`;
}

// Octokit reports an aborted fetch as an AbortError with status 500; say what happened instead.
function timeoutError(
  timeoutMs: number,
  settings: NotifySettings,
  published: StemcellPublished,
): NotifyError {
  const limit = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`;
  const message = `${describe(settings, published)} failed: GitHub (${settings.apiUrl}) gave no answer within ${limit}. This looks temporary; it is retried.`;
  return new NotifyError(redact(message, settings.token.reveal()), { transient: true });
}

function notifyError(error: unknown, settings: NotifySettings, published: StemcellPublished): NotifyError {
  const status = httpStatusOf(error);
  // GitHub's own exception: a 403 from its rate limits passes once the limit resets.
  const rateLimited = status === 403 && isRateLimited(error);
  const transient = rateLimited || isTransientError(error);
  const what = describe(settings, published);
  const advice = rateLimited ? rateLimitAdvice(error) : adviceFor(status, transient);
  const detail = [gitHubMessage(error), status === undefined ? undefined : `HTTP ${status}`]
    .filter(Boolean)
    .join(', ');
  // The token must never travel in an error: GitHub does not echo it, but a proxy or a fetch error might.
  const message = redact(`${what} failed: ${detail}. ${advice}`, settings.token.reveal());
  return new NotifyError(message, status === undefined ? { transient } : { status, transient });
}

function adviceFor(status: number | undefined, transient: boolean): string {
  if (transient) return 'This looks temporary; it is retried.';
  switch (status) {
    case 401:
      return 'BASM_NOTIFY_GITHUB_TOKEN is not accepted: renew it.';
    case 403:
      return 'The token lacks permission: it needs "actions: write" on the repository.';
    case 404:
      return 'Check BASM_NOTIFY_GITHUB_OWNER, _REPO and _WORKFLOW, and that the token can see the repository.';
    case 422:
      return 'Check BASM_NOTIFY_GITHUB_REF and that the workflow declares workflow_dispatch with these inputs.';
    default:
      return 'Fix the notification settings and run the notification again.';
  }
}

function headersOf(error: unknown): Record<string, unknown> {
  if (typeof error !== 'object' || error === null) return {};
  const headers = (error as { response?: { headers?: unknown } }).response?.headers;
  return typeof headers === 'object' && headers !== null ? (headers as Record<string, unknown>) : {};
}

/**
 * GitHub answers 403 (or 429) both for its primary rate limit (`x-ratelimit-remaining: 0`) and for its
 * secondary rate limits (`retry-after`, or a message naming the secondary rate limit); any other 403 is a
 * missing permission.
 */
function isRateLimited(error: unknown): boolean {
  const headers = headersOf(error);
  if (headers['retry-after'] !== undefined) return true;
  const remaining = headers['x-ratelimit-remaining'];
  if (remaining === '0' || remaining === 0) return true;
  return /secondary rate limit/i.test(gitHubMessage(error));
}

function rateLimitAdvice(error: unknown): string {
  const headers = headersOf(error);
  const retryAfter = Number(headers['retry-after']);
  if (headers['retry-after'] !== undefined && Number.isFinite(retryAfter)) {
    return `GitHub's rate limit was hit; it is retried (GitHub asks to wait ${retryAfter} s).`;
  }
  const reset = Number(headers['x-ratelimit-reset']);
  if (Number.isFinite(reset) && reset > 0) {
    return `GitHub's rate limit was hit; it is retried (the limit resets at ${new Date(reset * 1000).toISOString()}).`;
  }
  return "GitHub's rate limit was hit; it is retried.";
}

// GitHub's own explanation ({ message } in the body) when there is one, else the error's text.
function gitHubMessage(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const data = (error as { response?: { data?: unknown } }).response?.data;
    if (typeof data === 'object' && data !== null) {
      const message = (data as { message?: unknown }).message;
      if (typeof message === 'string' && message !== '') return message;
    }
  }
  return errorMessage(error);
}

function redact(text: string, secret: string): string {
  return secret === '' ? text : text.split(secret).join('[redacted]');
}
