/**
 * Notification: tells a GitHub Actions workflow (workflow_dispatch) that a stemcell version is ready in the gallery.
 */
import { Octokit } from '@octokit/rest';
import type { NotifySettings } from './config.js';

export interface StemcellPublished {
  galleryName: string;
  imageName: string;
  imageVersion: string;
  subscriptionId: string;
  resourceGroup: string;
}

/** A failed dispatch. `transient` (network, 408, 429, 5xx) means "retry later"; otherwise fix the settings. */
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

/** Dispatches the configured workflow with exactly the five gallery inputs the workflow declares. */
export async function notifyStemcellPublished(
  settings: NotifySettings,
  published: StemcellPublished,
): Promise<void> {
  const octokit = new Octokit({
    auth: settings.token.reveal(),
    baseUrl: settings.apiUrl,
    // Failures come back as one NotifyError; Octokit's own request log would report them a second time.
    log: { debug: () => {}, info: () => {}, warn: console.warn, error: () => {} },
  });
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
    });
  } catch (error) {
    throw notifyError(error, settings, published);
  }
}

function notifyError(error: unknown, settings: NotifySettings, published: StemcellPublished): NotifyError {
  const status = statusOf(error);
  const transient = status === undefined || status === 0 || status === 408 || status === 429 || status >= 500;
  const target = `workflow ${settings.workflow} of ${settings.owner}/${settings.repo} at ref ${settings.ref}`;
  const what = `Notifying ${target} about ${published.imageName} ${published.imageVersion}`;
  const advice = adviceFor(status, transient);
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

function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as { status?: unknown }).status;
  return typeof status === 'number' ? status : undefined;
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
  return error instanceof Error ? error.message : String(error);
}

function redact(text: string, secret: string): string {
  return secret === '' ? text : text.split(secret).join('[redacted]');
}
