import type { IncomingMessage, ServerResponse } from 'node:http';
import { startHttpsServer } from './https-server.js';

export interface DeclaredWorkflow {
  owner: string;
  repo: string;
  /** File name (`mirror.yml`) or numeric id, as callers pass it to the API. */
  workflow: string;
  /**
   * Declared `workflow_dispatch` inputs, as the workflow file's `on.workflow_dispatch.inputs` declares them: only
   * those with `required: true` must be sent, and an input not declared here is refused.
   */
  inputs: Record<string, { required: boolean }>;
  /**
   * The refs (branch or tag names) the repository has and whose copy of the workflow can be dispatched; default
   * ['main']. `refs/heads/<name>` and `refs/tags/<name>` name the same refs.
   */
  refs?: string[];
}

export interface WorkflowDispatch {
  owner: string;
  repo: string;
  /** The declared workflow name from the options, whichever way the caller addressed it. */
  workflow: string;
  ref: string;
  inputs: Record<string, string>;
}

export interface FakeGitHub {
  /** `https://127.0.0.1:PORT`: the value for BASM_NOTIFY_GITHUB_API_URL / Octokit's baseUrl. */
  url: string;
  /** Accepted dispatches only, in order. */
  dispatches: WorkflowDispatch[];
  /** The Authorization header of every request ('' when absent), to check the token was sent as expected. */
  authorizations: string[];
  stop(): Promise<void>;
}

const documentationUrl = 'https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event';
const dispatchRoute = /^\/repos\/([^/]+)\/([^/]+)\/actions\/workflows\/([^/]+)\/dispatches$/;
const firstWorkflowId = 161335;

/** An HTTPS fake of the one GitHub REST endpoint the notifier calls: create a workflow dispatch event. */
export async function startFakeGitHub(options: {
  token: string;
  workflows: DeclaredWorkflow[];
}): Promise<FakeGitHub> {
  const dispatches: WorkflowDispatch[] = [];
  const authorizations: string[] = [];
  // GitHub accepts a workflow's numeric id wherever its file name is accepted.
  const workflows = options.workflows.map((workflow, index) => ({
    ...workflow,
    id: /^\d+$/.test(workflow.workflow) ? workflow.workflow : String(firstWorkflowId + index),
  }));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const authorization = req.headers.authorization ?? '';
    authorizations.push(authorization);
    const body = await readBody(req);
    const token = /^(?:token|bearer)\s+(\S+)$/i.exec(authorization)?.[1];
    if (token !== options.token)
      return sendJson(res, 401, { message: 'Bad credentials', documentation_url: documentationUrl });

    const route = dispatchRoute.exec(new URL(req.url ?? '/', 'https://127.0.0.1').pathname);
    const [owner, repo, workflowId] = (route?.slice(1) ?? []).map(decodeURIComponent);
    const workflow = workflows.find(
      (candidate) =>
        candidate.owner.toLowerCase() === owner?.toLowerCase() &&
        candidate.repo.toLowerCase() === repo?.toLowerCase() &&
        (candidate.workflow === workflowId || candidate.id === workflowId),
    );
    if (req.method !== 'POST' || workflow === undefined) {
      return sendJson(res, 404, { message: 'Not Found', documentation_url: documentationUrl, status: '404' });
    }

    const invalid = (message: string): void =>
      sendJson(res, 422, { message, documentation_url: documentationUrl, status: '422' });
    let payload: unknown;
    try {
      payload = JSON.parse(body);
    } catch {
      return invalid('Problems parsing JSON');
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      return invalid('Invalid request.\n\nInvalid input: object is expected');
    }
    const { ref, inputs = {} } = payload as { ref?: unknown; inputs?: unknown };
    if (typeof ref !== 'string' || ref === '') return invalid(`Invalid request.\n\n"ref" wasn't supplied.`);
    // `ref` is "The git reference for the workflow. The reference can be a branch or tag name."
    // (https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event); anything else, a commit
    // SHA included, is 422 "No ref found for: <ref>" (seen in mongodb/node-mongodb-native#4937 and
    // day8/re-frame2#9287).
    const refName = ref.replace(/^refs\/(?:heads|tags)\//, '');
    if (!(workflow.refs ?? ['main']).includes(refName)) return invalid(`No ref found for: ${ref}`);
    if (typeof inputs !== 'object' || inputs === null || Array.isArray(inputs)) {
      return invalid(
        `Invalid request.\n\nFor 'properties/inputs', ${JSON.stringify(inputs)} is not an object.`,
      );
    }
    const given = inputs as Record<string, unknown>;
    const declared = new Map(Object.entries(workflow.inputs));
    const unexpected = Object.keys(given).filter((name) => !declared.has(name));
    if (unexpected.length > 0) return invalid(`Unexpected inputs provided: ${JSON.stringify(unexpected)}`);
    const missing = [...declared]
      .filter(([, input]) => input.required)
      .map(([name]) => name)
      .find((name) => !(name in given));
    if (missing !== undefined) return invalid(`Required input '${missing}' not provided`);
    for (const [name, value] of Object.entries(given)) {
      if (typeof value !== 'string') {
        return invalid(
          `Invalid request.\n\nFor 'properties/${name}', ${JSON.stringify(value)} is not a string.`,
        );
      }
    }

    dispatches.push({
      owner: workflow.owner,
      repo: workflow.repo,
      workflow: workflow.workflow,
      ref,
      inputs: given as Record<string, string>,
    });
    res.writeHead(204);
    res.end();
  };

  const server = await startHttpsServer(handle);
  return { url: server.url, dispatches, authorizations, stop: () => server.stop() };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
