import type { ServerResponse } from 'node:http';
import {
  allowMethods,
  ArmError,
  invalidContent,
  invalidParameter,
  missingParameter,
  refuseIfExists,
  resourceNotFound,
  sendJson,
} from './arm-http.js';
import type { ArmErrorBody, ArmRequest } from './arm-http.js';
import {
  armResource,
  enumValue,
  galleryPath,
  mergePatch,
  requireLocation,
  setProvisioningState,
  validateTags,
} from './gallery.js';
import type { Gallery } from './gallery.js';
import type { ImageDefinitions } from './image-definitions.js';
import { asObject, findKey, sameRegion, text } from './json.js';
import type { Json } from './json.js';
import type { LongRunningOperations } from './operations.js';
import type { VhdSources } from './vhd-source.js';

/** The check of actions a request needs on a resource it names (see Authorization.authorizeLinked). */
export type LinkedAccessCheck = (
  principalId: string,
  check: { granted: { action: string; scope: string }; linked: { actions: string[]; scope: string } },
) => void;

const storageAccountTypes = ['Standard_LRS', 'Standard_ZRS', 'Premium_LRS', 'PremiumV2_LRS'];
const int32Max = 2147483647;
const gibibyte = 1024 * 1024 * 1024;

/**
 * The image versions of the gallery's definitions (`images/{definition}/versions/{version}`): GET (with
 * `$expand`), PUT, PATCH and DELETE, a VHD source that is validated while the version is created, and the
 * failures a test injects.
 */
export class ImageVersions {
  /** Stored versions by `${definition}/${version}`, in ARM JSON shape. */
  readonly items = new Map<string, Json>();
  private readonly injectedFailures = new Map<string, ArmErrorBody>();
  // Why each Failed version failed, by lower-case `${definition}/${version}`: Azure reports it on the version
  // itself under `$expand=ReplicationStatus`, so any client (not only the one polling the operation) can read it.
  private readonly failureReasons = new Map<string, ArmErrorBody>();

  constructor(
    private readonly gallery: Gallery,
    private readonly operations: LongRunningOperations,
    private readonly definitions: ImageDefinitions,
    private readonly sources: VhdSources,
    private readonly linkedAccess: LinkedAccessCheck,
  ) {}

  /** The next accepted PUT of that version ends with provisioningState Failed and this error. */
  failNext(definition: string, version: string, error: ArmErrorBody): void {
    this.injectedFailures.set(`${definition}/${version}`.toLowerCase(), {
      code: error.code,
      message: error.message,
    });
  }

  of(definition: string): Json[] {
    return [...this.items.entries()]
      .filter(([key]) => key.startsWith(`${definition}/`))
      .map(([, version]) => version);
  }

  async endpoint(
    request: ArmRequest,
    definitionRequested: string,
    versionName: string,
    res: ServerResponse,
  ): Promise<void> {
    const { method, body, apiVersion } = request;
    const expand = request.url.searchParams.get('$expand');
    allowMethods(method, ['GET', 'PUT', 'PATCH', 'DELETE']);
    const definition = this.definitions.requireParent(definitionRequested);
    const requestedKey = `${definition}/${versionName}`;
    const key = findKey(this.items, requestedKey) ?? requestedKey;
    const pendingKey = `version:${key.toLowerCase()}`;
    const existing = this.items.get(key);
    if (method === 'GET') {
      if (expand !== null && !['replicationstatus', 'uefisettings'].includes(expand.toLowerCase())) {
        throw invalidParameter(
          '$expand',
          `The value '${expand}' of parameter '$expand' is not allowed. Allowed values are 'ReplicationStatus', 'UefiSettings'.`,
        );
      }
      await this.operations.observe(pendingKey);
      const current = this.items.get(key);
      if (current === undefined) {
        throw resourceNotFound(
          `Microsoft.Compute/galleries/${this.gallery.galleryName}/images/${definition}/versions/${versionName}`,
        );
      }
      sendJson(
        res,
        200,
        expand?.toLowerCase() === 'replicationstatus'
          ? withReplicationStatus(current, this.failureReasons.get(key.toLowerCase()))
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
      this.operations.cancel(pendingKey);
      setProvisioningState(existing, 'Deleting');
      const operation = this.operations.start(pendingKey, () => {
        this.items.delete(key);
        this.failureReasons.delete(key.toLowerCase());
        return Promise.resolve({ status: 'Succeeded' as const });
      });
      this.operations.sendAccepted(res, 'delete', existing, operation, apiVersion);
      return;
    }
    refuseIfExists(request, existing !== undefined, `image version '${requestedKey}'`);
    this.operations.rejectIfPending(pendingKey, `image version '${requestedKey}'`);
    const requested =
      method === 'PATCH' ? mergePatch(this.gallery, existing, requestedKey, body) : asObject(body);
    if (requested === undefined) throw invalidContent('the body is not a JSON object');
    validateTags(requested['tags']);
    const resource = this.versionResource(definition, versionName, requested);
    if (method === 'PUT') this.authorizeSource(request, resource);
    let validateSource = true;
    if (existing !== undefined) {
      refuseSourceChange(existing, resource);
      const previous = asObject(existing['properties']);
      // A tags or publishing update of a good version leaves the copied image alone; a Failed one is tried again.
      validateSource = previous?.['provisioningState'] === 'Failed';
      keepPublishedDate(previous, resource);
    }
    setProvisioningState(resource, existing === undefined ? 'Creating' : 'Updating');
    this.items.set(key, resource);
    this.failureReasons.delete(key.toLowerCase());
    const injected = this.injectedFailures.get(key.toLowerCase());
    this.injectedFailures.delete(key.toLowerCase());
    const operation = this.operations.start(
      pendingKey,
      async () => {
        const inspection =
          injected !== undefined
            ? { error: injected }
            : validateSource
              ? await this.sources.inspect(sourceOf(resource).uri)
              : {};
        if (inspection.error !== undefined) {
          setProvisioningState(resource, 'Failed');
          this.failureReasons.set(key.toLowerCase(), inspection.error);
          return { status: 'Failed', error: inspection.error };
        }
        if (inspection.virtualSize !== undefined) recordDiskSize(resource, inspection.virtualSize);
        setProvisioningState(resource, 'Succeeded');
        return { status: 'Succeeded' };
      },
      resource,
    );
    const kind = existing === undefined ? 'create' : method === 'PATCH' ? 'patch' : 'replace';
    this.operations.sendAccepted(res, kind, resource, operation, apiVersion);
  }

  /**
   * Creating an image version from a VHD needs, besides write on the version, `listKeys` and `write` on the source
   * storage account (the gallery reads the blob with the account's keys on the caller's behalf): ARM's linked
   * access check refuses the PUT before GalleryRP sees it.
   */
  private authorizeSource(request: ArmRequest, version: Json): void {
    this.linkedAccess(request.principalId, {
      granted: { action: 'Microsoft.Compute/galleries/images/versions/write', scope: request.url.pathname },
      linked: {
        actions: [
          'Microsoft.Storage/storageAccounts/listKeys/action',
          'Microsoft.Storage/storageAccounts/write',
        ],
        scope: sourceOf(version).storageAccountId,
      },
    });
  }

  private versionResource(definition: string, name: string, body: Json): Json {
    const prefix = 'galleryImageVersion';
    const parts = /^(\d+)\.(\d+)\.(\d+)$/.exec(name);
    if (parts === null || parts.slice(1).some((part) => Number(part) > int32Max)) {
      throw invalidParameter(
        'galleryImageVersionName',
        `The gallery image version name '${name}' is invalid. It must follow the Major(int32).Minor(int32).Patch(int32) format, e.g. 1.0.0.`,
      );
    }
    const location = requireLocation(this.gallery, body, prefix);
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
    const source = this.vhdSource(
      asObject(osDiskImage['source']),
      `${prefix}.properties.storageProfile.osDiskImage.source`,
    );
    const publishingProfile = publishing(
      asObject(properties['publishingProfile']),
      location,
      `${prefix}.properties.publishingProfile`,
    );
    const stored: Json = {
      ...properties,
      publishingProfile,
      storageProfile: { ...storageProfile, osDiskImage: { ...osDiskImage, source } },
      safetyProfile: {
        allowDeletionOfReplicatedLocations: true,
        reportedForPolicyViolation: false,
        ...asObject(properties['safetyProfile']),
      },
    };
    return armResource(
      `${galleryPath(this.gallery)}/images/${definition}/versions/${name}`,
      name,
      'Microsoft.Compute/galleries/images/versions',
      location,
      body,
      stored,
    );
  }

  /** A VHD source names a blob of the one storage account the fake knows, by its ARM id and blob URL. */
  private vhdSource(source: Json | undefined, sourceTarget: string): Json {
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
    const { subscriptionId, resourceGroup } = this.gallery;
    const storageAccountId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Storage/storageAccounts/${this.sources.accountName}`;
    if (accountId.toLowerCase() !== storageAccountId.toLowerCase()) {
      throw invalidParameter(
        `${sourceTarget}.storageAccountId`,
        `The storage account '${accountId}' was not found.`,
      );
    }
    if (!this.sources.isBlobOfAccount(uri)) {
      throw invalidParameter(
        `${sourceTarget}.uri`,
        `The source uri '${uri}' is not a blob of storage account '${this.sources.accountName}' (${this.sources.blobEndpoint}).`,
      );
    }
    return { storageAccountId: accountId, uri };
  }
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
