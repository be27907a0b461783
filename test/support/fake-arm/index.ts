import type { IncomingMessage, ServerResponse } from 'node:http';
import { startHttpsServer } from '../https-server.js';
import {
  allowMethods,
  ArmError,
  notFound,
  parseBody,
  readBody,
  requireApiVersion,
  resourceNotFound,
  sendArmError,
  sendJson,
} from './arm-http.js';
import type { ArmRequest } from './arm-http.js';
import { actionOf, Authorization, infraAssignmentsOf } from './authorization.js';
import type { RoleAssignment } from './authorization.js';
import { galleryPath, galleryResource } from './gallery.js';
import { GallerySharing } from './gallery-sharing.js';
import type { GallerySharingOptions } from './gallery-sharing.js';
import { ImageDefinitions } from './image-definitions.js';
import { ImageVersions } from './image-versions.js';
import { sameName } from './json.js';
import type { Json } from './json.js';
import { LongRunningOperations } from './operations.js';
import type { StatusLinks } from './operations.js';
import { TokenValidator } from './tokens.js';
import { VhdSources } from './vhd-source.js';
import type { VhdStorage } from './vhd-source.js';

/**
 * A local HTTPS stand-in for Azure Resource Manager, limited to one existing Compute Gallery: its
 * image definitions and image versions, with ARM's authentication, api-version, long-running
 * operation and error contracts, and the checks Azure makes on a VHD page-blob source (read from
 * Azurite with the shared key). Each contract lives in a module of this folder; this one routes.
 */
export interface FakeArmOptions {
  subscriptionId: string;
  resourceGroup: string;
  galleryName: string;
  location: string;
  /** The storage account whose blobs may be version sources; the fake reads them to validate VHDs. */
  storage: VhdStorage;
  /** Async-operation polls answered InProgress before the operation completes (default 2). */
  pollsUntilDone?: number;
  /** Items per page of a list answer before a `nextLink` (default 100). */
  listPageSize?: number;
  /**
   * The Entra tenant the subscription belongs to: tokens must be issued by `https://sts.windows.net/<tenantId>/`.
   * Default: the tenant of the first token that reaches the fake, which is the one test/support/identity.ts
   * issues for (it picks a random tenant per endpoint, and a process gets its tokens from one endpoint).
   */
  tenantId?: string;
  /**
   * The object id of the app's managed identity: it holds the roles infra/modules/role-assignments.bicep grants it
   * (infra-roles.ts), at the scopes the Bicep names, and nothing else. Every request is authorized against them.
   */
  appPrincipalId: string;
  /** Status links of accepted writes (default `both`, as Azure sends them; see StatusLinks). */
  statusLinks?: StatusLinks;
  /** `Retry-After` seconds on accepted writes and polls (default 0). */
  retryAfterSeconds?: number;
  /**
   * Reads of a version with `$expand=ReplicationStatus` after its write succeeded until a target region other
   * than the gallery's has its replicas (default 0: with the write).
   */
  replicationReadsUntilDone?: number;
  /** The sharing profile the gallery was deployed with (default private). */
  gallerySharing?: GallerySharingOptions;
}

export interface FakeArm {
  /** `https://127.0.0.1:PORT`: the ARM endpoint. */
  url: string;
  /** Stored image definitions by name, in ARM JSON shape. */
  imageDefinitions: Map<string, Record<string, unknown>>;
  /** The gallery's sharing profile, as the `share` action left it. */
  sharing: GallerySharing;
  /** Stored image versions by `${definition}/${version}`, in ARM JSON shape. */
  imageVersions: Map<string, Record<string, unknown>>;
  requests: Array<{ method: string; path: string; apiVersion: string | null; body?: unknown }>;
  /** The next accepted PUT of that version ends with provisioningState Failed and this error. */
  failNextVersion(definition: string, version: string, error: { code: string; message: string }): void;
  /**
   * The next accepted write of that version fails to replicate to `region`: the region reports Failed with the
   * error's message as details, and the version ends Failed.
   */
  failNextReplication(
    definition: string,
    version: string,
    region: string,
    error: { code: string; message: string },
  ): void;
  /**
   * Who holds which role where: infra's assignments to the app's identity to begin with. A test that needs more
   * (or less) changes this list and says why.
   */
  roleAssignments: RoleAssignment[];
  /** ARM resource ids of the gallery and of the VHD storage account, the scopes of infra's assignments. */
  galleryId: string;
  storageAccountId: string;
  /**
   * Runs `action` once, just before the fake handles the next `method` request whose path ends with `pathEnd`:
   * a test's way to let someone else (a director) act between a client's look and its write.
   */
  beforeNext(method: string, pathEnd: string, action: () => Promise<void>): void;
  /**
   * Answers the next `times` `method` requests whose path ends with `pathEnd` with this ARM error (429
   * TooManyRequests, 503 ServiceUnavailable, ...) and its `Retry-After`, as ARM does when throttling or
   * unavailable; `pendingAnswers()` says how many such answers are still to be given.
   */
  answerNext(
    method: string,
    pathEnd: string,
    error: { status: number; code: string; retryAfterSeconds?: number; times?: number },
  ): void;
  pendingAnswers(): number;
  clearAnswers(): void;
  /** The tenant tokens must come from (undefined until the first token when not configured). */
  readonly tenantId: string | undefined;
  stop(): Promise<void>;
}

export async function startFakeArm(options: FakeArmOptions): Promise<FakeArm> {
  const pageSize = options.listPageSize ?? 100;
  const requests: FakeArm['requests'] = [];
  const cannedAnswers: Array<{
    method: string;
    pathEnd: string;
    status: number;
    code: string;
    retryAfterSeconds: number;
    times: number;
  }> = [];
  const interludes: Array<{ method: string; pathEnd: string; action: () => Promise<void> }> = [];
  let url = '';
  const tokens = new TokenValidator(options.tenantId, () => url);
  const operations = new LongRunningOperations({
    url: () => url,
    subscriptionId: options.subscriptionId,
    location: options.location,
    pollsUntilDone: options.pollsUntilDone ?? 2,
    statusLinks: options.statusLinks ?? 'both',
    retryAfterSeconds: options.retryAfterSeconds ?? 0,
  });
  const galleryId = galleryPath(options);
  const storageAccountId = `/subscriptions/${options.subscriptionId}/resourceGroups/${options.resourceGroup}/providers/Microsoft.Storage/storageAccounts/${options.storage.accountName}`;
  const roleAssignments = infraAssignmentsOf(options.appPrincipalId, {
    subscriptionId: options.subscriptionId,
    resourceGroup: options.resourceGroup,
    names: { gallery: options.galleryName, vhdStorage: options.storage.accountName },
  });
  const authorization = new Authorization(() => roleAssignments);
  const sharing = new GallerySharing(options.gallerySharing);
  const definitions: ImageDefinitions = new ImageDefinitions(
    options,
    operations,
    (definition) => versions.of(definition).length > 0,
  );
  const versions = new ImageVersions(
    options,
    operations,
    definitions,
    new VhdSources(options.storage),
    (principalId, { granted, linked }) => authorization.authorizeLinked(principalId, granted, linked),
  );
  versions.replication.readsUntilDone = options.replicationReadsUntilDone ?? 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestUrl = new URL(req.url ?? '/', url);
    const method = req.method ?? 'GET';
    const apiVersion = requestUrl.searchParams.get('api-version');
    const rawBody = await readBody(req);
    const interlude = interludes.findIndex(
      (candidate) =>
        candidate.method === method &&
        requestUrl.pathname.toLowerCase().endsWith(candidate.pathEnd.toLowerCase()),
    );
    if (interlude >= 0) await interludes.splice(interlude, 1)[0]?.action();
    // ARM authenticates before it throttles or passes a request on: a canned 429/503 never reaches a caller
    // without a valid token.
    try {
      tokens.authenticate(req.headers.authorization);
    } catch (error) {
      if (!(error instanceof ArmError)) throw error;
      requests.push({ method, path: requestUrl.pathname, apiVersion });
      sendArmError(res, error);
      return;
    }
    const canned = cannedAnswers.find(
      (candidate) =>
        candidate.times > 0 &&
        candidate.method === method &&
        requestUrl.pathname.toLowerCase().endsWith(candidate.pathEnd.toLowerCase()),
    );
    if (canned !== undefined) {
      canned.times -= 1;
      sendJson(
        res,
        canned.status,
        {
          error: {
            code: canned.code,
            message: `The fake ARM answers ${canned.status} ${canned.code} as asked.`,
          },
        },
        { 'retry-after': String(canned.retryAfterSeconds) },
      );
      return;
    }
    const record: FakeArm['requests'][number] = { method, path: requestUrl.pathname, apiVersion };
    requests.push(record);
    try {
      const body = parseBody(rawBody);
      if (body !== undefined) record.body = body;
      const principalId = tokens.authenticate(req.headers.authorization);
      requireApiVersion(apiVersion);
      const request: ArmRequest = {
        method,
        url: requestUrl,
        apiVersion: apiVersion ?? '',
        body,
        headers: req.headers,
        principalId,
      };
      await route(request, res);
    } catch (error) {
      if (!(error instanceof ArmError)) throw error;
      sendArmError(res, error);
    }
  }

  async function route(request: ArmRequest, res: ServerResponse): Promise<void> {
    const { method, url: requestUrl, apiVersion } = request;
    const segments = requestUrl.pathname
      .split('/')
      .filter((segment) => segment !== '')
      .map((segment) => decodeURIComponent(segment));
    const at = (index: number) => segments[index]?.toLowerCase();
    if (at(0) !== 'subscriptions' || segments[1] === undefined) throw notFound(requestUrl.pathname);
    if (!sameName(segments[1], options.subscriptionId)) {
      throw new ArmError(
        404,
        'SubscriptionNotFound',
        `The subscription '${segments[1]}' could not be found.`,
      );
    }
    if (
      at(2) === 'providers' &&
      at(3) === 'microsoft.compute' &&
      at(4) === 'locations' &&
      at(6) === 'capsoperations'
    ) {
      if (segments.length !== 8 || method !== 'GET') throw notFound(requestUrl.pathname);
      /*
       * The status of an operation lives under the subscription, outside the resource, and ARM lets only a caller
       * with read on the operation at the resource group level (or above) poll it: a role held on the gallery alone
       * starts the operation but cannot track it ("Track asynchronous Azure operations", section on permissions,
       * learn.microsoft.com/azure/azure-resource-manager/management/async-operations). The fake's operations all
       * belong to its one resource group.
       */
      authorization.authorize(
        request.principalId,
        actionOf(method, requestUrl.pathname),
        requestUrl.pathname,
        `/subscriptions/${options.subscriptionId}/resourceGroups/${options.resourceGroup}`,
      );
      const monitor = requestUrl.searchParams.get('monitor') === 'true';
      await operations.answer(segments[7] ?? '', monitor, apiVersion, res);
      return;
    }
    if (at(2) !== 'resourcegroups' || segments[3] === undefined) throw notFound(requestUrl.pathname);
    // ARM authorizes before the resource provider looks for the resource: no role there is 403, not 404.
    authorization.authorize(request.principalId, actionOf(method, requestUrl.pathname), requestUrl.pathname);
    if (!sameName(segments[3], options.resourceGroup)) {
      throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${segments[3]}' could not be found.`);
    }
    if (
      at(4) !== 'providers' ||
      at(5) !== 'microsoft.compute' ||
      at(6) !== 'galleries' ||
      segments[7] === undefined
    ) {
      throw notFound(requestUrl.pathname);
    }
    if (!sameName(segments[7], options.galleryName)) {
      throw resourceNotFound(`Microsoft.Compute/galleries/${segments[7]}`);
    }
    const definitionName = segments[9];
    const versionName = segments[11];
    const depth = segments.length;
    const query = { apiVersion, skip: Number(requestUrl.searchParams.get('$skiptoken') ?? '0') };
    if (depth === 8 || (depth === 9 && at(8) === 'share')) {
      galleryEndpoint(request, depth === 9, res);
    } else if (depth === 9 && at(8) === 'images') {
      allowMethods(method, ['GET']);
      sendJson(res, 200, page([...definitions.items.values()], requestUrl.pathname, query));
    } else if (depth === 10 && at(8) === 'images' && definitionName !== undefined) {
      await definitions.endpoint(request, definitionName, res);
    } else if (depth === 11 && at(8) === 'images' && at(10) === 'versions' && definitionName !== undefined) {
      allowMethods(method, ['GET']);
      const definition = definitions.requireParent(definitionName);
      sendJson(res, 200, page(versions.of(definition), requestUrl.pathname, query));
    } else if (depth === 12 && at(8) === 'images' && at(10) === 'versions' && definitionName && versionName) {
      await versions.endpoint(request, definitionName, versionName, res);
    } else {
      throw notFound(requestUrl.pathname);
    }
  }

  /** The gallery itself (GET, with its sharing profile) and its `share` action (POST). */
  function galleryEndpoint(request: ArmRequest, share: boolean, res: ServerResponse): void {
    if (share) {
      allowMethods(request.method, ['POST']);
      sendJson(res, 200, sharing.share(request.body));
      return;
    }
    allowMethods(request.method, ['GET']);
    const gallery = galleryResource(options);
    const expand = (request.url.searchParams.get('$expand') ?? '').toLowerCase() === 'sharingprofile/groups';
    const profile = sharing.profile(expand);
    if (profile !== undefined) (gallery['properties'] as Record<string, unknown>)['sharingProfile'] = profile;
    sendJson(res, 200, gallery);
  }

  function page(items: Json[], pathname: string, query: { apiVersion: string; skip: number }): Json {
    const skip = Number.isInteger(query.skip) && query.skip > 0 ? query.skip : 0;
    const result: Json = { value: items.slice(skip, skip + pageSize) };
    if (skip + pageSize < items.length) {
      result['nextLink'] =
        `${url}${pathname}?api-version=${query.apiVersion}&%24skiptoken=${skip + pageSize}`;
    }
    return result;
  }

  const server = await startHttpsServer(handle);
  url = server.url;
  return {
    url,
    imageDefinitions: definitions.items,
    sharing,
    imageVersions: versions.items,
    requests,
    roleAssignments,
    galleryId,
    storageAccountId,
    answerNext: (method, pathEnd, error) =>
      cannedAnswers.push({
        method,
        pathEnd,
        status: error.status,
        code: error.code,
        retryAfterSeconds: error.retryAfterSeconds ?? 0,
        times: error.times ?? 1,
      }),
    pendingAnswers: () => cannedAnswers.reduce((sum, answer) => sum + answer.times, 0),
    clearAnswers: () => void cannedAnswers.splice(0),
    beforeNext: (method, pathEnd, action) => interludes.push({ method, pathEnd, action }),
    failNextVersion: (definition, version, error) => versions.failNext(definition, version, error),
    failNextReplication: (definition, version, region, error) =>
      versions.replication.failNext(`${definition}/${version}`, region, error),
    get tenantId() {
      return tokens.tenantId;
    },
    stop: () => server.stop(),
  };
}
