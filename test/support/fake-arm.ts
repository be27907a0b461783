import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BlobClient, RestError } from '@azure/storage-blob';
import type { StorageSharedKeyCredential } from '@azure/storage-blob';
import { startHttpsServer } from './https-server.js';

/**
 * A local HTTPS stand-in for Azure Resource Manager, limited to one existing Compute Gallery: its
 * image definitions and image versions, with ARM's authentication, api-version, long-running
 * operation and error contracts, and the checks Azure makes on a VHD page-blob source (read from
 * Azurite with the shared key).
 */
export interface FakeArmOptions {
  subscriptionId: string;
  resourceGroup: string;
  galleryName: string;
  location: string;
  /** The storage account whose blobs may be version sources; the fake reads them to validate VHDs. */
  storage: { blobEndpoint: string; accountName: string; sharedKeyCredential: StorageSharedKeyCredential };
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
}

export interface FakeArm {
  /** `https://127.0.0.1:PORT`: the ARM endpoint. */
  url: string;
  /** Stored image definitions by name, in ARM JSON shape. */
  imageDefinitions: Map<string, Record<string, unknown>>;
  /** Stored image versions by `${definition}/${version}`, in ARM JSON shape. */
  imageVersions: Map<string, Record<string, unknown>>;
  requests: Array<{ method: string; path: string; apiVersion: string | null; body?: unknown }>;
  /** The next accepted PUT of that version ends with provisioningState Failed and this error. */
  failNextVersion(definition: string, version: string, error: { code: string; message: string }): void;
  /** The tenant tokens must come from (undefined until the first token when not configured). */
  readonly tenantId: string | undefined;
  stop(): Promise<void>;
}

type Json = Record<string, unknown>;
interface ArmErrorBody {
  code: string;
  message: string;
}
interface VhdInspection {
  error?: ArmErrorBody;
  virtualSize?: number;
}
type OperationOutcome =
  { status: 'Succeeded' } | { status: 'Canceled' } | { status: 'Failed'; error: ArmErrorBody };

/** An ARM long-running operation, reachable at its `capsOperations` URL until the fake stops. */
interface AsyncOperation {
  id: string;
  startTime: string;
  pollsLeft: number;
  outcome?: Promise<OperationOutcome>;
  settle(): Promise<OperationOutcome>;
}

// The version @azure/arm-compute 25.1.1 sends for every gallery call, and earlier real GalleryRP versions.
const supportedApiVersions = [
  '2025-12-03',
  '2025-03-03',
  '2024-03-03',
  '2023-07-03',
  '2022-08-03',
  '2022-03-03',
  '2022-01-03',
  '2021-10-01',
  '2021-07-01',
];
const armAudiences = ['https://management.azure.com', 'https://management.core.windows.net'];
const knownFeatures = [
  'DiskControllerTypes',
  'IsAcceleratedNetworkSupported',
  'IsHibernateSupported',
  'SecurityType',
];
const securityTypes = [
  'Standard',
  'TrustedLaunch',
  'TrustedLaunchSupported',
  'ConfidentialVM',
  'ConfidentialVMSupported',
  'TrustedLaunchAndConfidentialVmSupported',
];
// Security types that make a definition Trusted Launch or Confidential VM capable. Both exist only for generation 2
// VMs: "Azure offers trusted launch as a seamless way to improve the security of generation 2 VMs"
// (https://learn.microsoft.com/azure/virtual-machines/trusted-launch) and confidential VMs run on generation 2 images
// only (https://learn.microsoft.com/azure/confidential-computing/confidential-vm-overview). `Standard` is neither.
const generation2SecurityTypes = new Set(
  securityTypes.filter((type) => type !== 'Standard').map((type) => type.toLowerCase()),
);
// `allowUpdateImage` ("Must be set to true if the gallery image features are being updated") first appears in
// GalleryRP 2024-03-03 (Azure/azure-rest-api-specs, specification/compute/resource-manager/Microsoft.Compute/
// GalleryRP/stable/2024-03-03/examples/galleryExamples/GalleryImage_UpdateFeatures.json; no such example in 2023-07-03).
const apiVersionsWithAllowUpdateImage = new Set(['2025-12-03', '2025-03-03', '2024-03-03']);
/*
 * Azure Resource Manager's tag limits (https://learn.microsoft.com/azure/azure-resource-manager/management/
 * tag-resources#limitations): at most 50 tags, names of at most 512 and values of at most 256 characters, no
 * `<`, `>`, `%`, `&`, `\`, `?`, `/` in names. ARM refuses them before the resource provider sees the request, with
 * 400 and the codes (and wording) that Azure/azure-powershell mirrors for the same checks in
 * src/Migrate/Migrate.Autorest/custom/New-AzMigrateServerReplication.ps1: InvalidTags ("Too many tags specified"),
 * InvalidTagName, InvalidTagNameCharacters ("have reserved characters '<,>,%,&,\,?,/' or control characters"),
 * InvalidTagValueLength; MicrosoftDocs shows the same InvalidTagNameCharacters answer from `az storage account update`.
 */
const maxTags = 50;
const maxTagNameLength = 512;
const maxTagValueLength = 256;
// eslint-disable-next-line no-control-regex
const reservedTagNameCharacters = /[<>%&\\?/\u0000-\u001f\u007f]/;
// Entra ID access tokens are checked with a clock skew of 5 minutes (Microsoft.IdentityModel's default).
const clockSkewSeconds = 300;
const storageAccountTypes = ['Standard_LRS', 'Standard_ZRS', 'Premium_LRS', 'PremiumV2_LRS'];
const int32Max = 2147483647;
const mebibyte = 1024 * 1024;
const gibibyte = 1024 * mebibyte;
const vhdFooterSize = 512;
const vhdDiskTypes: Record<number, string> = { 2: 'Fixed', 3: 'Dynamic', 4: 'Differencing' };

class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly target?: string,
  ) {
    super(message);
  }
}

function invalidParameter(target: string, message: string): ArmError {
  return new ArmError(400, 'InvalidParameter', message, target);
}

function missingParameter(target: string): ArmError {
  return invalidParameter(target, `Required parameter '${target}' is missing (null).`);
}

export async function startFakeArm(options: FakeArmOptions): Promise<FakeArm> {
  const pollsUntilDone = options.pollsUntilDone ?? 2;
  const pageSize = options.listPageSize ?? 100;
  const imageDefinitions = new Map<string, Json>();
  const imageVersions = new Map<string, Json>();
  const requests: FakeArm['requests'] = [];
  const operations = new Map<string, AsyncOperation>();
  // Keyed `definition:<name>` / `version:<def>/<ver>` in lower case: at most one operation per resource.
  const pendingOperations = new Map<string, AsyncOperation>();
  const injectedFailures = new Map<string, ArmErrorBody>();
  // Why each Failed version failed, by lower-case `${definition}/${version}`: Azure reports it on the version
  // itself under `$expand=ReplicationStatus`, so any client (not only the one polling the operation) can read it.
  const failureReasons = new Map<string, ArmErrorBody>();
  let tenantId = options.tenantId;
  let url = '';

  const galleryPath = () =>
    `/subscriptions/${options.subscriptionId}/resourceGroups/${options.resourceGroup}/providers/Microsoft.Compute/galleries/${options.galleryName}`;
  const storageAccountId = `/subscriptions/${options.subscriptionId}/resourceGroups/${options.resourceGroup}/providers/Microsoft.Storage/storageAccounts/${options.storage.accountName}`;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestUrl = new URL(req.url ?? '/', url);
    const method = req.method ?? 'GET';
    const apiVersion = requestUrl.searchParams.get('api-version');
    const rawBody = await readBody(req);
    const record: FakeArm['requests'][number] = { method, path: requestUrl.pathname, apiVersion };
    requests.push(record);
    try {
      const body = parseBody(rawBody);
      if (body !== undefined) record.body = body;
      authenticate(req.headers.authorization);
      requireApiVersion(apiVersion);
      await route(method, requestUrl, apiVersion ?? '', body, res);
    } catch (error) {
      if (!(error instanceof ArmError)) throw error;
      const payload: Json = { code: error.code, message: error.message };
      if (error.target !== undefined) payload['target'] = error.target;
      const headers: Record<string, string> = {};
      if (error.status === 401) {
        headers['www-authenticate'] =
          `Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="${error.code}"`;
      }
      sendJson(res, error.status, { error: payload }, headers);
    }
  }

  function authenticate(authorization: string | undefined): void {
    if (authorization === undefined) {
      throw new ArmError(
        401,
        'AuthenticationFailed',
        "Authentication failed. The 'Authorization' header is missing.",
      );
    }
    const token = /^Bearer\s+(\S+)$/i.exec(authorization)?.[1];
    if (token === undefined) {
      throw new ArmError(
        401,
        'AuthenticationFailed',
        "Authentication failed. The 'Authorization' header is provided in an invalid format.",
      );
    }
    const claims = decodeJwtClaims(token);
    if (claims === undefined) {
      throw new ArmError(401, 'InvalidAuthenticationToken', 'The access token is invalid: it is not a JWT.');
    }
    const allowed = [...armAudiences, url].flatMap((audience) => [audience, `${audience}/`]);
    if (typeof claims['aud'] !== 'string' || !allowed.includes(claims['aud'])) {
      throw new ArmError(
        401,
        'InvalidAuthenticationTokenAudience',
        `The access token has been obtained for wrong audience or resource '${String(claims['aud'])}'. It should exactly match with one of the allowed audiences ${allowed.map((a) => `'${a}'`).join(',')}.`,
      );
    }
    checkTokenLifetime(claims);
    checkIssuer(claims);
  }

  /**
   * ARM refuses a token without `exp` or `nbf`, one not yet valid and one expired (401; the expired one as
   * ExpiredAuthenticationToken, with the message below), each within the usual 5-minute clock skew.
   */
  function checkTokenLifetime(claims: Json): void {
    const now = Date.now() / 1000;
    const exp = claims['exp'];
    const nbf = claims['nbf'];
    if (typeof exp !== 'number' || typeof nbf !== 'number') {
      const missing = typeof exp !== 'number' ? 'exp' : 'nbf';
      throw new ArmError(
        401,
        'InvalidAuthenticationToken',
        `The access token is invalid: it has no numeric '${missing}' claim.`,
      );
    }
    if (nbf - clockSkewSeconds > now) {
      throw new ArmError(
        401,
        'InvalidAuthenticationToken',
        `The access token is not valid yet: its 'nbf' UTC time '${new Date(nbf * 1000).toISOString()}' is later than current UTC time '${new Date().toISOString()}'.`,
      );
    }
    if (exp + clockSkewSeconds < now) {
      throw new ArmError(
        401,
        'ExpiredAuthenticationToken',
        `The access token expiry UTC time '${new Date(exp * 1000).toISOString()}' is earlier than current UTC time '${new Date().toISOString()}'.`,
      );
    }
  }

  /**
   * A subscription belongs to one Entra tenant; ARM takes only tokens that tenant's STS issued
   * (`iss` = `https://sts.windows.net/<tenant>/`, as for v1 managed-identity tokens) and answers a token of another
   * tenant with 401 InvalidAuthenticationTokenTenant ("The access token is from the wrong issuer ...", listed in
   * https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors).
   */
  function checkIssuer(claims: Json): void {
    const issuer = claims['iss'];
    const tenant =
      typeof issuer === 'string'
        ? /^https:\/\/sts\.windows\.net\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/$/i.exec(
            issuer,
          )?.[1]
        : undefined;
    if (tenant === undefined) {
      throw new ArmError(
        401,
        'InvalidAuthenticationToken',
        `The access token is invalid: its issuer '${String(issuer)}' is not an Azure AD token issuer ('https://sts.windows.net/<tenant id>/').`,
      );
    }
    tenantId ??= tenant;
    if (!sameName(tenant, tenantId)) {
      throw new ArmError(
        401,
        'InvalidAuthenticationTokenTenant',
        `The access token is from the wrong issuer '${issuer as string}'. It must match the tenant 'https://sts.windows.net/${tenantId}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/${tenantId}' to get the token.`,
      );
    }
  }

  async function route(
    method: string,
    requestUrl: URL,
    apiVersion: string,
    body: unknown,
    res: ServerResponse,
  ) {
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
      await answerOperation(segments[7] ?? '', res);
      return;
    }
    if (at(2) !== 'resourcegroups' || segments[3] === undefined) throw notFound(requestUrl.pathname);
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
    if (depth === 8) {
      allowMethods(method, ['GET']);
      sendJson(res, 200, galleryResource());
    } else if (depth === 9 && at(8) === 'images') {
      allowMethods(method, ['GET']);
      sendJson(res, 200, page([...imageDefinitions.values()], requestUrl.pathname, query));
    } else if (depth === 10 && at(8) === 'images' && definitionName !== undefined) {
      await definitionEndpoint(method, definitionName, body, apiVersion, res);
    } else if (depth === 11 && at(8) === 'images' && at(10) === 'versions' && definitionName !== undefined) {
      allowMethods(method, ['GET']);
      const definition = requireParentDefinition(definitionName);
      const versions = [...imageVersions.entries()]
        .filter(([key]) => key.startsWith(`${definition}/`))
        .map(([, version]) => version);
      sendJson(res, 200, page(versions, requestUrl.pathname, query));
    } else if (depth === 12 && at(8) === 'images' && at(10) === 'versions' && definitionName && versionName) {
      const expand = requestUrl.searchParams.get('$expand');
      await versionEndpoint(method, definitionName, versionName, body, apiVersion, expand, res);
    } else {
      throw notFound(requestUrl.pathname);
    }
  }

  // ---- image definitions ----

  async function definitionEndpoint(
    method: string,
    requestedName: string,
    body: unknown,
    apiVersion: string,
    res: ServerResponse,
  ): Promise<void> {
    allowMethods(method, ['GET', 'PUT', 'PATCH', 'DELETE']);
    const name = findKey(imageDefinitions, requestedName);
    const pendingKey = `definition:${requestedName.toLowerCase()}`;
    const existing = name === undefined ? undefined : imageDefinitions.get(name);
    if (method === 'GET') {
      await observePending(pendingKey);
      const current = name === undefined ? undefined : imageDefinitions.get(name);
      if (current === undefined)
        throw resourceNotFound(`Microsoft.Compute/galleries/${options.galleryName}/images/${requestedName}`);
      sendJson(res, 200, current);
      return;
    }
    if (method === 'DELETE') {
      if (name === undefined || existing === undefined) {
        res.writeHead(204).end();
        return;
      }
      if ([...imageVersions.keys()].some((key) => key.startsWith(`${name}/`))) {
        throw new ArmError(
          409,
          'CannotDeleteResource',
          `Can not delete resource before nested resources are deleted: image definition '${name}' still has image versions.`,
        );
      }
      cancelPending(pendingKey);
      setProvisioningState(existing, 'Deleting');
      const operation = startOperation(pendingKey, () => {
        imageDefinitions.delete(name);
        return Promise.resolve<OperationOutcome>({ status: 'Succeeded' });
      });
      sendAccepted(res, 202, existing, operation, apiVersion);
      return;
    }
    rejectIfPending(pendingKey, `image definition '${requestedName}'`);
    const requested = method === 'PATCH' ? mergePatch(existing, requestedName, body) : asObject(body);
    if (requested === undefined) throw invalidContent('the body is not a JSON object');
    validateTags(requested['tags']);
    const resource = definitionResource(name ?? requestedName, requested);
    if (existing !== undefined) {
      refuseDefinitionChanges(
        existing,
        resource,
        apiVersion,
        asObject(requested['properties'])?.['allowUpdateImage'],
      );
    } else {
      refuseDuplicateIdentifier(resource);
    }
    const storedName = name ?? requestedName;
    setProvisioningState(resource, existing === undefined ? 'Creating' : 'Updating');
    imageDefinitions.set(storedName, resource);
    const operation = startOperation(pendingKey, () => {
      setProvisioningState(resource, 'Succeeded');
      return Promise.resolve<OperationOutcome>({ status: 'Succeeded' });
    });
    sendAccepted(res, existing === undefined ? 201 : 200, resource, operation, apiVersion);
  }

  function definitionResource(name: string, body: Json): Json {
    const prefix = 'galleryImage';
    if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,78}[A-Za-z0-9])?$/.test(name)) {
      throw invalidParameter(
        'galleryImageName',
        `The gallery image name '${name}' is invalid. It must be 1-80 characters of letters, digits, '.', '-' and '_', starting and ending with a letter or digit.`,
      );
    }
    const location = requireLocation(body, prefix);
    const properties = asObject(body['properties']);
    if (properties === undefined) throw missingParameter(`${prefix}.properties`);
    const osType = enumValue(properties['osType'], ['Linux', 'Windows'], `${prefix}.properties.osType`);
    const osState = enumValue(
      properties['osState'],
      ['Generalized', 'Specialized'],
      `${prefix}.properties.osState`,
    );
    const hyperVGeneration = enumValue(
      properties['hyperVGeneration'],
      ['V1', 'V2'],
      `${prefix}.properties.hyperVGeneration`,
      'V1',
    );
    const architecture = enumValue(
      properties['architecture'],
      ['x64', 'Arm64'],
      `${prefix}.properties.architecture`,
      'x64',
    );
    const identifier = asObject(properties['identifier']);
    if (identifier === undefined) throw missingParameter(`${prefix}.properties.identifier`);
    const limits = { publisher: 128, offer: 64, sku: 64 } as const;
    for (const [part, limit] of Object.entries(limits)) {
      const value = identifier[part];
      const target = `${prefix}.properties.identifier.${part}`;
      if (typeof value !== 'string' || value.trim() === '') throw missingParameter(target);
      if (value.length > limit)
        throw invalidParameter(
          target,
          `The value of parameter '${target}' is longer than ${limit} characters.`,
        );
    }
    if (architecture === 'Arm64' && hyperVGeneration !== 'V2') {
      throw invalidParameter(
        `${prefix}.properties.architecture`,
        "Architecture 'Arm64' is only supported with hyperVGeneration 'V2'.",
      );
    }
    const features = validateFeatures(
      properties['features'],
      hyperVGeneration,
      `${prefix}.properties.features`,
    );
    const stored: Json = {
      ...properties,
      osType,
      osState,
      hyperVGeneration,
      architecture,
      identifier: { publisher: identifier['publisher'], offer: identifier['offer'], sku: identifier['sku'] },
    };
    // A flag of the request, not a property of the definition: the example answer does not carry it.
    delete stored['allowUpdateImage'];
    if (features === undefined) delete stored['features'];
    else stored['features'] = features;
    return armResource(
      `${galleryPath()}/images/${name}`,
      name,
      'Microsoft.Compute/galleries/images',
      location,
      body,
      stored,
    );
  }

  // Azure keeps features of a definition as sent (order and values).
  function validateFeatures(value: unknown, hyperVGeneration: string, target: string): Json[] | undefined {
    if (value === undefined || value === null) return undefined;
    if (!Array.isArray(value))
      throw invalidParameter(target, `The value of parameter '${target}' must be an array.`);
    const seen = new Set<string>();
    return value.map((entry, index) => {
      const feature = asObject(entry);
      const name = feature?.['name'];
      const featureValue = feature?.['value'];
      if (typeof name !== 'string' || name === '') throw missingParameter(`${target}[${index}].name`);
      if (typeof featureValue !== 'string' || featureValue === '')
        throw missingParameter(`${target}[${index}].value`);
      if (!knownFeatures.includes(name)) {
        throw invalidParameter(
          `${target}[${index}].name`,
          `The feature '${name}' is not supported. Supported features are ${knownFeatures.map((f) => `'${f}'`).join(', ')}.`,
        );
      }
      if (seen.has(name))
        throw invalidParameter(
          `${target}[${index}].name`,
          `The feature '${name}' is specified more than once.`,
        );
      seen.add(name);
      validateFeatureValue(name, featureValue, `${target}[${index}].value`);
      if (hyperVGeneration === 'V1')
        refuseGeneration2Feature(name, featureValue, `${target}[${index}].value`);
      return { ...feature };
    });
  }

  /**
   * The identity of a definition never changes. Its features change only where the api-version knows
   * `allowUpdateImage` and the request sets it to true (GalleryImage_UpdateFeatures.json, 2024-03-03 and later);
   * the fake does not model `startsAtVersion`, which lets versions before it keep the old features.
   */
  function refuseDefinitionChanges(
    existing: Json,
    updated: Json,
    apiVersion: string,
    allowUpdateImage: unknown,
  ): void {
    const before = asObject(existing['properties']) ?? {};
    const after = asObject(updated['properties']) ?? {};
    const featuresMayChange = apiVersionsWithAllowUpdateImage.has(apiVersion) && allowUpdateImage === true;
    for (const property of [
      'osType',
      'osState',
      'hyperVGeneration',
      'architecture',
      'identifier',
      'features',
      'purchasePlan',
    ]) {
      if (property === 'features' && featuresMayChange) continue;
      const normalise = (value: unknown) =>
        JSON.stringify(property === 'features' ? featureList(value) : (value ?? null));
      if (normalise(before[property]) !== normalise(after[property])) {
        const hint =
          property !== 'features'
            ? ''
            : apiVersionsWithAllowUpdateImage.has(apiVersion)
              ? " Set 'galleryImage.properties.allowUpdateImage' to true to update the features."
              : ` api-version '${apiVersion}' cannot update features; 2024-03-03 and later can, with 'allowUpdateImage'.`;
        throw new ArmError(
          409,
          'PropertyChangeNotAllowed',
          `Changing property 'galleryImage.properties.${property}' is not allowed.${hint}`,
          `galleryImage.properties.${property}`,
        );
      }
    }
  }

  function refuseDuplicateIdentifier(resource: Json): void {
    const identifier = JSON.stringify(identifierOf(resource));
    for (const [name, other] of imageDefinitions) {
      if (JSON.stringify(identifierOf(other)) === identifier) {
        throw new ArmError(
          409,
          'Conflict',
          `An image definition with the same publisher, offer and sku already exists in gallery '${options.galleryName}': '${name}'.`,
        );
      }
    }
  }

  // ---- image versions ----

  async function versionEndpoint(
    method: string,
    definitionRequested: string,
    versionName: string,
    body: unknown,
    apiVersion: string,
    expand: string | null,
    res: ServerResponse,
  ): Promise<void> {
    allowMethods(method, ['GET', 'PUT', 'PATCH', 'DELETE']);
    const definition = requireParentDefinition(definitionRequested);
    const requestedKey = `${definition}/${versionName}`;
    const key = findKey(imageVersions, requestedKey) ?? requestedKey;
    const pendingKey = `version:${key.toLowerCase()}`;
    const existing = imageVersions.get(key);
    if (method === 'GET') {
      if (expand !== null && !['replicationstatus', 'uefisettings'].includes(expand.toLowerCase())) {
        throw invalidParameter(
          '$expand',
          `The value '${expand}' of parameter '$expand' is not allowed. Allowed values are 'ReplicationStatus', 'UefiSettings'.`,
        );
      }
      await observePending(pendingKey);
      const current = imageVersions.get(key);
      if (current === undefined) {
        throw resourceNotFound(
          `Microsoft.Compute/galleries/${options.galleryName}/images/${definition}/versions/${versionName}`,
        );
      }
      sendJson(
        res,
        200,
        expand?.toLowerCase() === 'replicationstatus'
          ? withReplicationStatus(current, failureReasons.get(key.toLowerCase()))
          : current,
      );
      return;
    }
    if (method === 'DELETE') {
      if (existing === undefined) {
        res.writeHead(204).end();
        return;
      }
      // Azure lets a version that is still being created be deleted; the creation ends Canceled.
      cancelPending(pendingKey);
      setProvisioningState(existing, 'Deleting');
      const operation = startOperation(pendingKey, () => {
        imageVersions.delete(key);
        failureReasons.delete(key.toLowerCase());
        return Promise.resolve<OperationOutcome>({ status: 'Succeeded' });
      });
      sendAccepted(res, 202, existing, operation, apiVersion);
      return;
    }
    rejectIfPending(pendingKey, `image version '${requestedKey}'`);
    const requested = method === 'PATCH' ? mergePatch(existing, requestedKey, body) : asObject(body);
    if (requested === undefined) throw invalidContent('the body is not a JSON object');
    validateTags(requested['tags']);
    const resource = versionResource(definition, versionName, requested);
    let validateSource = true;
    if (existing !== undefined) {
      refuseSourceChange(existing, resource);
      const previous = asObject(existing['properties']);
      // A tags or publishing update of a good version leaves the copied image alone; a Failed one is tried again.
      validateSource = previous?.['provisioningState'] === 'Failed';
      keepPublishedDate(previous, resource);
    }
    setProvisioningState(resource, existing === undefined ? 'Creating' : 'Updating');
    imageVersions.set(key, resource);
    failureReasons.delete(key.toLowerCase());
    const injected = injectedFailures.get(key.toLowerCase());
    injectedFailures.delete(key.toLowerCase());
    const operation = startOperation(pendingKey, async () => {
      const inspection =
        injected !== undefined
          ? { error: injected }
          : validateSource
            ? await inspectVhdSource(sourceOf(resource))
            : {};
      if (inspection.error !== undefined) {
        setProvisioningState(resource, 'Failed');
        failureReasons.set(key.toLowerCase(), inspection.error);
        return { status: 'Failed', error: inspection.error };
      }
      if (inspection.virtualSize !== undefined) recordDiskSize(resource, inspection.virtualSize);
      setProvisioningState(resource, 'Succeeded');
      return { status: 'Succeeded' };
    });
    sendAccepted(res, existing === undefined ? 201 : 200, resource, operation, apiVersion);
  }

  function versionResource(definition: string, name: string, body: Json): Json {
    const prefix = 'galleryImageVersion';
    const parts = /^(\d+)\.(\d+)\.(\d+)$/.exec(name);
    if (parts === null || parts.slice(1).some((part) => Number(part) > int32Max)) {
      throw invalidParameter(
        'galleryImageVersionName',
        `The gallery image version name '${name}' is invalid. It must follow the Major(int32).Minor(int32).Patch(int32) format, e.g. 1.0.0.`,
      );
    }
    const location = requireLocation(body, prefix);
    const properties = asObject(body['properties']);
    if (properties === undefined) throw missingParameter(`${prefix}.properties`);
    const storageProfile = asObject(properties['storageProfile']);
    if (storageProfile === undefined) throw missingParameter(`${prefix}.properties.storageProfile`);
    const fullSource = asObject(storageProfile['source']);
    if (
      fullSource !== undefined &&
      Object.values(fullSource).some((value) => value !== undefined && value !== null)
    ) {
      throw invalidParameter(
        `${prefix}.properties.storageProfile.source`,
        `This fake ARM only mirrors VHD sources: use '${prefix}.properties.storageProfile.osDiskImage.source' with 'storageAccountId' and 'uri'.`,
      );
    }
    const osDiskImage = asObject(storageProfile['osDiskImage']);
    if (osDiskImage === undefined) throw missingParameter(`${prefix}.properties.storageProfile.osDiskImage`);
    const sourceTarget = `${prefix}.properties.storageProfile.osDiskImage.source`;
    const source = asObject(osDiskImage['source']);
    if (source === undefined) throw missingParameter(sourceTarget);
    const uri = source['uri'];
    const accountId = source['storageAccountId'];
    if (typeof uri !== 'string' || uri === '') {
      throw invalidParameter(
        `${sourceTarget}.uri`,
        `Required parameter '${sourceTarget}.uri' is missing (null). Only VHD blob sources ('storageAccountId' and 'uri') are supported for this gallery.`,
      );
    }
    if (typeof accountId !== 'string' || accountId === '')
      throw missingParameter(`${sourceTarget}.storageAccountId`);
    if (source['id'] !== undefined && source['id'] !== null) {
      throw invalidParameter(
        `${sourceTarget}.id`,
        `'${sourceTarget}.id' must not be set for a VHD source; use 'storageAccountId' with 'uri'.`,
      );
    }
    if (accountId.toLowerCase() !== storageAccountId.toLowerCase()) {
      throw invalidParameter(
        `${sourceTarget}.storageAccountId`,
        `The storage account '${accountId}' was not found.`,
      );
    }
    if (!isBlobOfAccount(uri)) {
      throw invalidParameter(
        `${sourceTarget}.uri`,
        `The source uri '${uri}' is not a blob of storage account '${options.storage.accountName}' (${options.storage.blobEndpoint}).`,
      );
    }
    const publishingProfile = publishing(
      asObject(properties['publishingProfile']),
      location,
      `${prefix}.properties.publishingProfile`,
    );
    const stored: Json = {
      ...properties,
      publishingProfile,
      storageProfile: {
        ...storageProfile,
        osDiskImage: { ...osDiskImage, source: { storageAccountId: accountId, uri } },
      },
      safetyProfile: {
        allowDeletionOfReplicatedLocations: true,
        reportedForPolicyViolation: false,
        ...asObject(properties['safetyProfile']),
      },
    };
    return armResource(
      `${galleryPath()}/images/${definition}/versions/${name}`,
      name,
      'Microsoft.Compute/galleries/images/versions',
      location,
      body,
      stored,
    );
  }

  function publishing(profile: Json | undefined, location: string, target: string): Json {
    const replicaCount = profile?.['replicaCount'] ?? 1;
    if (typeof replicaCount !== 'number' || !Number.isInteger(replicaCount) || replicaCount < 1) {
      throw invalidParameter(
        `${target}.replicaCount`,
        `The value of parameter '${target}.replicaCount' must be a positive integer.`,
      );
    }
    const storageAccountType = enumValue(
      profile?.['storageAccountType'],
      storageAccountTypes,
      `${target}.storageAccountType`,
      'Standard_LRS',
    );
    const excludeFromLatest = profile?.['excludeFromLatest'] ?? false;
    if (typeof excludeFromLatest !== 'boolean') {
      throw invalidParameter(
        `${target}.excludeFromLatest`,
        `The value of parameter '${target}.excludeFromLatest' must be a boolean.`,
      );
    }
    const requestedRegions = profile?.['targetRegions'];
    let targetRegions: Json[] = [{ name: location, regionalReplicaCount: replicaCount, storageAccountType }];
    if (requestedRegions !== undefined && requestedRegions !== null) {
      if (!Array.isArray(requestedRegions))
        throw invalidParameter(`${target}.targetRegions`, `'${target}.targetRegions' must be an array.`);
      targetRegions = requestedRegions.map((entry, index) => {
        const region = asObject(entry);
        const name = region?.['name'];
        if (typeof name !== 'string' || name.trim() === '')
          throw missingParameter(`${target}.targetRegions[${index}].name`);
        const count = region?.['regionalReplicaCount'] ?? replicaCount;
        if (typeof count !== 'number' || !Number.isInteger(count) || count < 1) {
          throw invalidParameter(
            `${target}.targetRegions[${index}].regionalReplicaCount`,
            `The value of parameter '${target}.targetRegions[${index}].regionalReplicaCount' must be a positive integer.`,
          );
        }
        const type = enumValue(
          region?.['storageAccountType'],
          storageAccountTypes,
          `${target}.targetRegions[${index}].storageAccountType`,
          storageAccountType,
        );
        return { ...region, name, regionalReplicaCount: count, storageAccountType: type };
      });
      if (!targetRegions.some((region) => sameRegion(String(region['name']), location))) {
        throw invalidParameter(
          `${target}.targetRegions`,
          `The target regions must include the source region '${location}' of the image version.`,
        );
      }
    }
    return {
      ...profile,
      targetRegions,
      replicaCount,
      excludeFromLatest,
      storageAccountType,
      publishedDate: new Date().toISOString(),
    };
  }

  function refuseSourceChange(existing: Json, updated: Json): void {
    const before = sourceOf(existing);
    const after = sourceOf(updated);
    if (before.uri !== after.uri) {
      throw new ArmError(
        409,
        'PropertyChangeNotAllowed',
        "Changing property 'galleryImageVersion.properties.storageProfile.osDiskImage.source.uri' is not allowed.",
        'galleryImageVersion.properties.storageProfile.osDiskImage.source.uri',
      );
    }
    if (before.storageAccountId.toLowerCase() !== after.storageAccountId.toLowerCase()) {
      throw new ArmError(
        409,
        'PropertyChangeNotAllowed',
        "Changing property 'galleryImageVersion.properties.storageProfile.osDiskImage.source.storageAccountId' is not allowed.",
        'galleryImageVersion.properties.storageProfile.osDiskImage.source.storageAccountId',
      );
    }
  }

  function isBlobOfAccount(uri: string): boolean {
    let parsed: URL;
    let endpoint: URL;
    try {
      parsed = new URL(uri);
      endpoint = new URL(options.storage.blobEndpoint);
    } catch {
      return false;
    }
    const endpointPath = endpoint.pathname.replace(/\/$/, '');
    const rest = parsed.pathname.startsWith(`${endpointPath}/`)
      ? parsed.pathname.slice(endpointPath.length + 1)
      : '';
    // container/blob: at least two path segments below the account.
    return parsed.origin.toLowerCase() === endpoint.origin.toLowerCase() && /^[^/]+\/.+/.test(rest);
  }

  /**
   * Azure accepts the PUT (201, Creating) and only reads the blob while it copies the image, so a bad
   * source surfaces as a Failed operation and a Failed version, not as a 400 on the PUT.
   */
  async function inspectVhdSource(source: { uri: string }): Promise<VhdInspection> {
    const { uri } = source;
    const blob = new BlobClient(uri, options.storage.sharedKeyCredential);
    const failed = (message: string): VhdInspection => ({ error: { code: 'InvalidParameter', message } });
    let length: number;
    try {
      const properties = await blob.getProperties();
      if (properties.blobType !== 'PageBlob') {
        return failed(
          `The source blob '${uri}' is a ${properties.blobType ?? 'blob of unknown type'}; only a page blob can be the VHD source of an image version.`,
        );
      }
      length = properties.contentLength ?? 0;
    } catch (error) {
      if (error instanceof RestError && error.statusCode === 404) {
        return failed(
          `The source blob '${uri}' does not exist in storage account '${options.storage.accountName}'.`,
        );
      }
      const reason = error instanceof Error ? error.message : String(error);
      return failed(`The source blob '${uri}' could not be read: ${reason}`);
    }
    if (length < vhdFooterSize) {
      return failed(
        `The blob '${uri}' of ${length} bytes is too small to be a VHD: it cannot hold the 512-byte footer.`,
      );
    }
    const footer = await blob.downloadToBuffer(length - vhdFooterSize, vhdFooterSize);
    const error = checkFixedVhdFooter(uri, footer, length);
    return error === undefined ? { virtualSize: length - vhdFooterSize } : { error };
  }

  // ---- long-running operations ----

  function startOperation(pendingKey: string, settle: () => Promise<OperationOutcome>): AsyncOperation {
    const operation: AsyncOperation = {
      id: randomUUID(),
      startTime: new Date().toISOString(),
      pollsLeft: pollsUntilDone,
      settle: async () => {
        try {
          return await settle();
        } finally {
          if (pendingOperations.get(pendingKey) === operation) pendingOperations.delete(pendingKey);
        }
      },
    };
    operations.set(operation.id, operation);
    pendingOperations.set(pendingKey, operation);
    return operation;
  }

  // Polling the operation and reading the resource both count as the passing of time.
  async function advance(operation: AsyncOperation): Promise<OperationOutcome | undefined> {
    if (operation.outcome !== undefined) return operation.outcome;
    if (operation.pollsLeft > 0) {
      operation.pollsLeft -= 1;
      return undefined;
    }
    operation.outcome = operation.settle();
    return operation.outcome;
  }

  async function observePending(pendingKey: string): Promise<void> {
    const operation = pendingOperations.get(pendingKey);
    if (operation !== undefined) await advance(operation);
  }

  function cancelPending(pendingKey: string): void {
    const operation = pendingOperations.get(pendingKey);
    if (operation === undefined) return;
    operation.outcome ??= Promise.resolve({ status: 'Canceled' });
    pendingOperations.delete(pendingKey);
  }

  function rejectIfPending(pendingKey: string, what: string): void {
    if (pendingOperations.has(pendingKey)) {
      throw new ArmError(
        409,
        'OperationNotAllowed',
        `Another operation on ${what} is in progress; retry after it completes.`,
      );
    }
  }

  async function answerOperation(id: string, res: ServerResponse): Promise<void> {
    const operation = operations.get(id);
    if (operation === undefined) throw new ArmError(404, 'NotFound', `The operation '${id}' was not found.`);
    const outcome = await advance(operation);
    const body: Json = { startTime: operation.startTime, status: outcome?.status ?? 'InProgress', name: id };
    if (outcome !== undefined) body['endTime'] = new Date().toISOString();
    if (outcome?.status === 'Failed') body['error'] = outcome.error;
    sendJson(res, 200, body, { 'retry-after': '0' });
  }

  function sendAccepted(
    res: ServerResponse,
    status: number,
    resource: Json,
    operation: AsyncOperation,
    apiVersion: string,
  ) {
    const operationUrl = `${url}/subscriptions/${options.subscriptionId}/providers/Microsoft.Compute/locations/${normaliseRegion(options.location)}/capsOperations/${operation.id}?api-version=${apiVersion}`;
    sendJson(res, status, resource, { 'azure-asyncoperation': operationUrl, 'retry-after': '0' });
  }

  // ---- shared pieces ----

  function requireParentDefinition(requested: string): string {
    const name = findKey(imageDefinitions, requested);
    if (name === undefined) {
      throw new ArmError(
        404,
        'ParentResourceNotFound',
        `Can not perform requested operation on nested resource. Parent resource '${options.galleryName}/${requested}' not found.`,
      );
    }
    return name;
  }

  function requireLocation(body: Json, prefix: string): string {
    const location = body['location'];
    if (typeof location !== 'string' || location.trim() === '') {
      throw new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
    }
    if (!sameRegion(location, options.location)) {
      throw invalidParameter(
        `${prefix}.location`,
        `The location '${location}' does not match the location '${options.location}' of gallery '${options.galleryName}'.`,
      );
    }
    return location;
  }

  function armResource(
    id: string,
    name: string,
    type: string,
    location: string,
    body: Json,
    properties: Json,
  ): Json {
    const resource: Json = { id, name, type, location };
    if (body['tags'] !== undefined) resource['tags'] = body['tags'];
    resource['properties'] = properties;
    return resource;
  }

  function mergePatch(existing: Json | undefined, name: string, body: unknown): Json {
    if (existing === undefined)
      throw resourceNotFound(`Microsoft.Compute/galleries/${options.galleryName}/images/${name}`);
    const patch = asObject(body);
    if (patch === undefined) throw invalidContent('the body is not a JSON object');
    const merged = deepMerge(structuredClone(existing), patch);
    // ARM PATCH replaces the whole tags object rather than merging it.
    if (patch['tags'] !== undefined) merged['tags'] = patch['tags'];
    const properties = asObject(merged['properties']);
    if (properties !== undefined) delete properties['provisioningState'];
    return merged;
  }

  function galleryResource(): Json {
    return {
      id: galleryPath(),
      name: options.galleryName,
      type: 'Microsoft.Compute/galleries',
      location: options.location,
      properties: {
        identifier: { uniqueName: `${options.subscriptionId}-${options.galleryName.toUpperCase()}` },
        provisioningState: 'Succeeded',
      },
    };
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
    imageDefinitions,
    imageVersions,
    requests,
    failNextVersion(definition, version, error) {
      injectedFailures.set(`${definition}/${version}`.toLowerCase(), {
        code: error.code,
        message: error.message,
      });
    },
    get tenantId() {
      return tenantId;
    },
    stop: () => server.stop(),
  };
}

/** The checks Azure applies to a VHD source: a fixed VHD whose footer matches the blob and whose size is whole MiB. */
function checkFixedVhdFooter(uri: string, footer: Buffer, blobLength: number): ArmErrorBody | undefined {
  const failed = (message: string): ArmErrorBody => ({ code: 'InvalidParameter', message });
  const cookie = footer.subarray(0, 8).toString('latin1');
  if (cookie !== 'conectix') {
    return failed(
      `The specified cookie value in VHD footer indicates that blob '${uri}' is not a supported VHD. The VHD is expected to have cookie value 'conectix', found '${cookie.replace(/[^\x20-\x7e]/g, '?')}'.`,
    );
  }
  const stored = footer.readUInt32BE(64);
  let sum = 0;
  footer.forEach((byte, offset) => {
    if (offset < 64 || offset > 67) sum += byte;
  });
  if (~sum >>> 0 !== stored) {
    return failed(
      `The VHD footer of blob '${uri}' has checksum 0x${stored.toString(16)}, but its content sums to 0x${(~sum >>> 0).toString(16)}.`,
    );
  }
  const diskType = footer.readUInt32BE(60);
  if (diskType !== 2) {
    return failed(
      `The VHD '${uri}' is of type '${vhdDiskTypes[diskType] ?? `unknown (${diskType})`}'. Only fixed VHDs (disk type 2) are supported.`,
    );
  }
  const currentSize = Number(footer.readBigUInt64BE(48));
  if (currentSize + vhdFooterSize !== blobLength) {
    return failed(
      `The VHD '${uri}' is ${blobLength} bytes, but its footer declares a virtual size of ${currentSize} bytes; a fixed VHD is its virtual size plus the 512-byte footer.`,
    );
  }
  if (currentSize % mebibyte !== 0) {
    return failed(
      `The VHD '${uri}' has an unsupported virtual size of ${currentSize} bytes. The size must be a whole number (in MBs).`,
    );
  }
  return undefined;
}

/**
 * The `$expand=ReplicationStatus` view (GalleryRP `ReplicationStatus`: `aggregatedState` Unknown / InProgress /
 * Completed / Failed, and per region `state`, `details`, `progress`). A failed version carries Azure's reason in
 * each failed region's `details`, as in "The failing regions' details are as follows: '{region:northeurope,
 * detail:Failed with internal server error.}'" (Azure/azure-cli#15539): the message, without the error code.
 */
function withReplicationStatus(version: Json, failure: ArmErrorBody | undefined): Json {
  const properties = asObject(version['properties']) ?? {};
  const state = properties['provisioningState'];
  const regionState = state === 'Succeeded' ? 'Completed' : state === 'Failed' ? 'Failed' : 'Replicating';
  const regions = (asObject(properties['publishingProfile'])?.['targetRegions'] as Json[] | undefined) ?? [];
  return {
    ...version,
    properties: {
      ...properties,
      replicationStatus: {
        aggregatedState: regionState === 'Replicating' ? 'InProgress' : regionState,
        summary: regions.map((region) => ({
          region: region['name'],
          state: regionState,
          details: regionState === 'Failed' ? (failure?.message ?? '') : '',
          progress: regionState === 'Completed' ? 100 : 0,
        })),
      },
    },
  };
}

function keepPublishedDate(previous: Json | undefined, resource: Json): void {
  const before = asObject(previous?.['publishingProfile'])?.['publishedDate'];
  const profile = asObject(asObject(resource['properties'])?.['publishingProfile']);
  if (before !== undefined && profile !== undefined) profile['publishedDate'] = before;
}

function setProvisioningState(resource: Json, state: string): void {
  const properties = asObject(resource['properties']);
  if (properties !== undefined) properties['provisioningState'] = state;
}

function recordDiskSize(version: Json, virtualSize: number): void {
  const osDiskImage = asObject(
    asObject(asObject(version['properties'])?.['storageProfile'])?.['osDiskImage'],
  );
  if (osDiskImage !== undefined) osDiskImage['sizeInGB'] = Math.ceil(virtualSize / gibibyte);
}

function sourceOf(version: Json): { uri: string; storageAccountId: string } {
  const source = asObject(
    asObject(asObject(asObject(version['properties'])?.['storageProfile'])?.['osDiskImage'])?.['source'],
  );
  return { uri: text(source?.['uri']), storageAccountId: text(source?.['storageAccountId']) };
}

function identifierOf(definition: Json): unknown {
  const identifier = asObject(asObject(definition['properties'])?.['identifier']) ?? {};
  return ['publisher', 'offer', 'sku'].map((part) => text(identifier[part]).toLowerCase());
}

function featureList(value: unknown): unknown {
  return Array.isArray(value)
    ? value.map((entry) => ({ name: asObject(entry)?.['name'], value: asObject(entry)?.['value'] }))
    : [];
}

function validateFeatureValue(name: string, value: string, target: string): void {
  const allowed = (ok: boolean, expected: string) => {
    if (!ok)
      throw invalidParameter(
        target,
        `The value '${value}' of feature '${name}' is not allowed. Allowed values are ${expected}.`,
      );
  };
  if (name === 'IsAcceleratedNetworkSupported' || name === 'IsHibernateSupported') {
    allowed(['true', 'false'].includes(value.toLowerCase()), "'True', 'False'");
  } else if (name === 'SecurityType') {
    allowed(
      securityTypes.some((type) => type.toLowerCase() === value.toLowerCase()),
      securityTypes.map((t) => `'${t}'`).join(', '),
    );
  } else if (name === 'DiskControllerTypes') {
    const types = value.split(',').map((type) => type.trim().toLowerCase());
    allowed(
      types.every((type) => type === 'scsi' || type === 'nvme') && new Set(types).size === types.length,
      "'SCSI', 'NVMe' or 'SCSI, NVMe'",
    );
  }
}

/** A feature value that only a generation 2 (`hyperVGeneration` V2) definition may carry. */
function refuseGeneration2Feature(name: string, value: string, target: string): void {
  const refuse = (why: string) => {
    throw invalidParameter(
      target,
      `The feature '${name}' with value '${value}' is not supported for an image definition with hyperVGeneration 'V1': ${why}. Use hyperVGeneration 'V2'.`,
    );
  };
  if (name === 'SecurityType' && generation2SecurityTypes.has(value.toLowerCase())) {
    refuse('Trusted Launch and confidential VMs are generation 2 only');
  }
  // "This property is only supported for virtual machines whose operating system disk and VM sku supports
  // Generation 2" (DiskControllerTypes, Microsoft.Compute REST spec and https://aka.ms/azure-diskcontrollertypes).
  // SCSI alone is what a generation 1 VM has anyway; accelerated networking and hibernation carry no such rule.
  if (
    name === 'DiskControllerTypes' &&
    value.split(',').some((type) => type.trim().toLowerCase() === 'nvme')
  ) {
    refuse('the NVMe disk controller is generation 2 only');
  }
}

/** ARM's own checks of `tags`, made before the resource provider sees the request (see maxTags). */
function validateTags(value: unknown): void {
  if (value === undefined || value === null) return;
  const tags = asObject(value);
  if (tags === undefined) throw invalidContent("'tags' is not a JSON object");
  const names = Object.keys(tags);
  if (names.length > maxTags) {
    throw new ArmError(
      400,
      'InvalidTags',
      `Too many tags specified. Requested tag count - '${names.length}'. Maximum number of tags allowed - '${maxTags}'.`,
    );
  }
  for (const [name, tagValue] of Object.entries(tags)) {
    if (name.trim() === '') {
      throw new ArmError(
        400,
        'InvalidTagName',
        'The tag name must be non-null, non-empty and non-whitespace only. Please provide an actual value.',
      );
    }
    if (typeof tagValue !== 'string') {
      throw invalidContent(`the value of tag '${name}' is not a string`);
    }
  }
  const reserved = names.filter((name) => reservedTagNameCharacters.test(name));
  if (reserved.length > 0) {
    throw new ArmError(
      400,
      'InvalidTagNameCharacters',
      `The tag names '${reserved.join(', ')}' have reserved characters '<,>,%,&,\\,?,/' or control characters.`,
    );
  }
  const longNames = names.filter((name) => name.length > maxTagNameLength);
  if (longNames.length > 0) {
    throw new ArmError(
      400,
      'InvalidTagName',
      `Tag key too large. Following tag name '${longNames.join(', ')}' exceeded the maximum length. Maximum allowed length for tag name - '${maxTagNameLength}' characters.`,
    );
  }
  const longValues = Object.values(tags).filter(
    (tagValue) => typeof tagValue === 'string' && tagValue.length > maxTagValueLength,
  );
  if (longValues.length > 0) {
    throw new ArmError(
      400,
      'InvalidTagValueLength',
      `Tag value too large. Following tag value '${longValues.join(', ')}' exceeded the maximum length. Maximum allowed length for tag value - '${maxTagValueLength}' characters.`,
    );
  }
}

function enumValue(value: unknown, allowed: readonly string[], target: string, fallback?: string): string {
  if (value === undefined || value === null) {
    if (fallback !== undefined) return fallback;
    throw missingParameter(target);
  }
  const match =
    typeof value === 'string'
      ? allowed.find((candidate) => candidate.toLowerCase() === value.toLowerCase())
      : undefined;
  if (match === undefined) {
    throw invalidParameter(
      target,
      `The value '${text(value)}' of parameter '${target}' is not allowed. Allowed values are ${allowed.map((a) => `'${a}'`).join(', ')}.`,
    );
  }
  return match;
}

function requireApiVersion(apiVersion: string | null): void {
  if (apiVersion === null || apiVersion === '') {
    throw new ArmError(
      400,
      'MissingApiVersionParameter',
      'The api-version query parameter (?api-version=) is required for all requests.',
    );
  }
  if (!supportedApiVersions.includes(apiVersion)) {
    throw new ArmError(
      400,
      'InvalidApiVersionParameter',
      `The api-version '${apiVersion}' is invalid for resource type 'galleries' in namespace 'Microsoft.Compute'. The supported api-versions are '${supportedApiVersions.join(', ')}'.`,
    );
  }
}

function allowMethods(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) {
    throw new ArmError(
      405,
      'MethodNotAllowed',
      `The HTTP method '${method}' is not supported here. Supported: ${allowed.join(', ')}.`,
    );
  }
}

function notFound(path: string): ArmError {
  return new ArmError(404, 'NotFound', `The fake ARM serves only one Compute Gallery; nothing at '${path}'.`);
}

function resourceNotFound(resource: string): ArmError {
  return new ArmError(
    404,
    'ResourceNotFound',
    `The Resource '${resource}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`,
  );
}

function invalidContent(reason: string): ArmError {
  return new ArmError(
    400,
    'InvalidRequestContent',
    `The request content was invalid and could not be deserialized: ${reason}.`,
  );
}

function parseBody(raw: string): unknown {
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch (error) {
    throw invalidContent(error instanceof Error ? error.message : String(error));
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'x-ms-request-id': randomUUID(),
    ...headers,
  });
  res.end(text);
}

function decodeJwtClaims(token: string): Json | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    return asObject(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
  } catch {
    return undefined;
  }
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? '');
}

function asObject(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

function deepMerge(target: Json, patch: Json): Json {
  for (const [key, value] of Object.entries(patch)) {
    const existing = asObject(target[key]);
    const incoming = asObject(value);
    target[key] = existing !== undefined && incoming !== undefined ? deepMerge(existing, incoming) : value;
  }
  return target;
}

function findKey<V>(map: Map<string, V>, key: string): string | undefined {
  return [...map.keys()].find((candidate) => candidate.toLowerCase() === key.toLowerCase());
}

function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

function normaliseRegion(region: string): string {
  return region.toLowerCase().replace(/\s+/g, '');
}

function sameRegion(a: string, b: string): boolean {
  return normaliseRegion(a) === normaliseRegion(b);
}
