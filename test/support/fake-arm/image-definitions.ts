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
import type { ArmRequest } from './arm-http.js';
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
import { asObject, findKey, text } from './json.js';
import type { Json } from './json.js';
import type { LongRunningOperations, OperationOutcome } from './operations.js';

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

/**
 * The gallery's image definitions (`galleries/{gallery}/images/{name}`): GET, PUT, PATCH and DELETE with the
 * checks GalleryRP makes (identity fixed once created, unique publisher/offer/sku, features by generation).
 */
export class ImageDefinitions {
  /** Stored definitions by name, in ARM JSON shape. */
  readonly items = new Map<string, Json>();

  constructor(
    private readonly gallery: Gallery,
    private readonly operations: LongRunningOperations,
    /** Whether the definition still has image versions (ARM refuses to delete it then). */
    private readonly hasVersions: (definition: string) => boolean,
  ) {}

  /** The stored name of a definition a nested resource names, or ARM's ParentResourceNotFound. */
  requireParent(requested: string): string {
    const name = findKey(this.items, requested);
    if (name === undefined) {
      throw new ArmError(
        404,
        'ParentResourceNotFound',
        `Can not perform requested operation on nested resource. Parent resource '${this.gallery.galleryName}/${requested}' not found.`,
      );
    }
    return name;
  }

  async endpoint(request: ArmRequest, requestedName: string, res: ServerResponse): Promise<void> {
    const { method, body, apiVersion } = request;
    allowMethods(method, ['GET', 'PUT', 'PATCH', 'DELETE']);
    const name = findKey(this.items, requestedName);
    const pendingKey = `definition:${requestedName.toLowerCase()}`;
    const existing = name === undefined ? undefined : this.items.get(name);
    if (method === 'GET') {
      await this.operations.observe(pendingKey);
      const current = name === undefined ? undefined : this.items.get(name);
      if (current === undefined)
        throw resourceNotFound(
          `Microsoft.Compute/galleries/${this.gallery.galleryName}/images/${requestedName}`,
        );
      sendJson(res, 200, current);
      return;
    }
    if (method === 'DELETE') {
      if (name === undefined || existing === undefined) {
        res.writeHead(204).end();
        return;
      }
      if (this.hasVersions(name)) {
        throw new ArmError(
          409,
          'CannotDeleteResource',
          `Can not delete resource before nested resources are deleted: image definition '${name}' still has image versions.`,
        );
      }
      this.operations.cancel(pendingKey);
      setProvisioningState(existing, 'Deleting');
      const operation = this.operations.start(pendingKey, () => {
        this.items.delete(name);
        return Promise.resolve<OperationOutcome>({ status: 'Succeeded' });
      });
      this.operations.sendAccepted(res, 'delete', existing, operation, apiVersion);
      return;
    }
    refuseIfExists(request, existing !== undefined, `image definition '${requestedName}'`);
    this.operations.rejectIfPending(pendingKey, `image definition '${requestedName}'`);
    const requested =
      method === 'PATCH' ? mergePatch(this.gallery, existing, requestedName, body) : asObject(body);
    if (requested === undefined) throw invalidContent('the body is not a JSON object');
    validateTags(requested['tags']);
    const resource = definitionResource(this.gallery, name ?? requestedName, requested);
    if (existing !== undefined) {
      refuseDefinitionChanges(
        existing,
        resource,
        apiVersion,
        asObject(requested['properties'])?.['allowUpdateImage'],
      );
    } else {
      this.refuseDuplicateIdentifier(resource);
    }
    const storedName = name ?? requestedName;
    setProvisioningState(resource, existing === undefined ? 'Creating' : 'Updating');
    this.items.set(storedName, resource);
    const operation = this.operations.start(
      pendingKey,
      () => {
        setProvisioningState(resource, 'Succeeded');
        return Promise.resolve<OperationOutcome>({ status: 'Succeeded' });
      },
      resource,
    );
    const kind = existing === undefined ? 'create' : method === 'PATCH' ? 'patch' : 'replace';
    this.operations.sendAccepted(res, kind, resource, operation, apiVersion);
  }

  private refuseDuplicateIdentifier(resource: Json): void {
    const identifier = JSON.stringify(identifierOf(resource));
    for (const [name, other] of this.items) {
      if (JSON.stringify(identifierOf(other)) === identifier) {
        throw new ArmError(
          409,
          'Conflict',
          `An image definition with the same publisher, offer and sku already exists in gallery '${this.gallery.galleryName}': '${name}'.`,
        );
      }
    }
  }
}

function definitionResource(gallery: Gallery, name: string, body: Json): Json {
  const prefix = 'galleryImage';
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,78}[A-Za-z0-9])?$/.test(name)) {
    throw invalidParameter(
      'galleryImageName',
      `The gallery image name '${name}' is invalid. It must be 1-80 characters of letters, digits, '.', '-' and '_', starting and ending with a letter or digit.`,
    );
  }
  const location = requireLocation(gallery, body, prefix);
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
    `${galleryPath(gallery)}/images/${name}`,
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
    if (hyperVGeneration === 'V1') refuseGeneration2Feature(name, featureValue, `${target}[${index}].value`);
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
