import type { ServerResponse } from 'node:http';
import {
  allowMethods,
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
  galleryPath,
  mergePatch,
  requireLocation,
  setProvisioningState,
  validateTags,
} from './gallery.js';
import type { Gallery } from './gallery.js';
import type { ImageDefinitions } from './image-definitions.js';
import { asObject, findKey } from './json.js';
import type { Json } from './json.js';
import type { LongRunningOperations } from './operations.js';
import {
  checkEndOfLife,
  keepPublishedDate,
  publishing,
  refusePublishingChange,
  refuseSourceChange,
  sourceOf,
} from './publishing.js';
import { Replication } from './replication.js';
import type { VhdSources } from './vhd-source.js';

/** The check of actions a request needs on a resource it names (see Authorization.authorizeLinked). */
export type LinkedAccessCheck = (
  principalId: string,
  check: { granted: { action: string; scope: string }; linked: { actions: string[]; scope: string } },
) => void;

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
  /**
   * Replication per target region. Why a Failed version failed is reported on the version itself under
   * `$expand=ReplicationStatus`, so any client (not only the one polling the operation) can read it.
   */
  readonly replication: Replication;

  constructor(
    private readonly gallery: Gallery,
    private readonly operations: LongRunningOperations,
    private readonly definitions: ImageDefinitions,
    private readonly sources: VhdSources,
    private readonly linkedAccess: LinkedAccessCheck,
  ) {
    this.replication = new Replication(gallery.location);
  }

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
        expand?.toLowerCase() === 'replicationstatus' ? this.replication.view(key, current) : current,
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
        this.replication.forget(key);
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
    checkEndOfLife(asObject(body), 'galleryImageVersion.properties.publishingProfile');
    const resource = this.versionResource(definition, versionName, requested);
    if (method === 'PUT') this.authorizeSource(request, resource);
    let validateSource = true;
    if (existing !== undefined) {
      refuseSourceChange(existing, resource);
      refusePublishingChange(existing, resource);
      const previous = asObject(existing['properties']);
      // A tags or publishing update of a good version leaves the copied image alone; a Failed one is tried again.
      validateSource = previous?.['provisioningState'] === 'Failed';
      keepPublishedDate(previous, resource);
    }
    setProvisioningState(resource, existing === undefined ? 'Creating' : 'Updating');
    this.items.set(key, resource);
    this.replication.written(key, targetRegionsOf(resource));
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
          this.replication.failEverywhere(key, inspection.error);
          return { status: 'Failed', error: inspection.error };
        }
        if (inspection.virtualSize !== undefined) recordDiskSize(resource, inspection.virtualSize);
        const replicationError = this.replication.settle(key);
        if (replicationError !== undefined) {
          setProvisioningState(resource, 'Failed');
          return { status: 'Failed', error: replicationError };
        }
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

function recordDiskSize(version: Json, virtualSize: number): void {
  const osDiskImage = asObject(
    asObject(asObject(version['properties'])?.['storageProfile'])?.['osDiskImage'],
  );
  if (osDiskImage !== undefined) osDiskImage['sizeInGB'] = Math.ceil(virtualSize / gibibyte);
}

function targetRegionsOf(version: Json): Json[] {
  const profile = asObject(asObject(version['properties'])?.['publishingProfile']);
  return (profile?.['targetRegions'] as Json[] | undefined) ?? [];
}
