import { ArmError, invalidParameter, missingParameter } from './arm-http.js';
import { enumValue } from './gallery.js';
import { asObject, normaliseRegion, sameRegion, text } from './json.js';
import type { Json } from './json.js';

/**
 * An image version's `publishingProfile` and `storageProfile` as GalleryRP checks them on a write: target
 * regions (the gallery's region among them, each once, replica counts within Azure's limit, storage types it
 * knows), `endOfLifeDate` in the future, and on an update what the spec calls "not updatable" (the source,
 * the storage account types) and the removal of a replicated region where the safety profile forbids it.
 */

const storageAccountTypes = ['Standard_LRS', 'Standard_ZRS', 'Premium_LRS', 'PremiumV2_LRS'];
/** Azure's documented limit on replicas of an image version per region. */
const maxRegionalReplicas = 100;

export function publishing(profile: Json | undefined, location: string, target: string): Json {
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
    targetRegions = requestedRegions.map((entry, index) =>
      targetRegion(asObject(entry), `${target}.targetRegions[${index}]`, replicaCount, storageAccountType),
    );
    const names = targetRegions.map((region) => normaliseRegion(String(region['name'])));
    const twice = names.find((name, index) => names.indexOf(name) !== index);
    if (twice !== undefined) {
      throw invalidParameter(
        `${target}.targetRegions`,
        `The target region '${twice}' is specified more than once.`,
      );
    }
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

function targetRegion(
  region: Json | undefined,
  target: string,
  replicaCount: number,
  storageAccountType: string,
): Json {
  const name = region?.['name'];
  if (typeof name !== 'string' || name.trim() === '') throw missingParameter(`${target}.name`);
  const count = region?.['regionalReplicaCount'] ?? replicaCount;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > maxRegionalReplicas) {
    throw invalidParameter(
      `${target}.regionalReplicaCount`,
      `The value of parameter '${target}.regionalReplicaCount' must be an integer from 1 to ${maxRegionalReplicas}.`,
    );
  }
  const type = enumValue(
    region?.['storageAccountType'],
    storageAccountTypes,
    `${target}.storageAccountType`,
    storageAccountType,
  );
  return { ...region, name, regionalReplicaCount: count, storageAccountType: type };
}

/** GalleryRP refuses an end of life that is not a date in the future (checked only when the request sets it). */
export function checkEndOfLife(requested: Json | undefined, target: string): void {
  const value = asObject(asObject(requested?.['properties'])?.['publishingProfile'])?.['endOfLifeDate'];
  if (value === undefined || value === null) return;
  const date = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(date)) {
    throw invalidParameter(`${target}.endOfLifeDate`, `The value '${text(value)}' is not a valid date-time.`);
  }
  if (date <= Date.now()) {
    throw invalidParameter(
      `${target}.endOfLifeDate`,
      `The end of life date '${text(value)}' of the gallery image version must be in the future.`,
    );
  }
}

/**
 * An update of a version's target regions: a region's storage account type (and the profile's) is not
 * updatable, and a replicated region may only be dropped where `safetyProfile.allowDeletionOfReplicatedLocations`
 * allows it.
 */
export function refusePublishingChange(existing: Json, updated: Json): void {
  const before = profileOf(existing);
  const after = profileOf(updated);
  const target = 'galleryImageVersion.properties.publishingProfile';
  if (String(before?.['storageAccountType']) !== String(after?.['storageAccountType'])) {
    throw notUpdatable(`${target}.storageAccountType`);
  }
  const regionsAfter = (after?.['targetRegions'] as Json[] | undefined) ?? [];
  for (const region of (before?.['targetRegions'] as Json[] | undefined) ?? []) {
    const name = String(region['name']);
    const kept = regionsAfter.find((r) => sameRegion(String(r['name']), name));
    if (kept === undefined) {
      const safety = asObject(asObject(existing['properties'])?.['safetyProfile']);
      if (safety?.['allowDeletionOfReplicatedLocations'] === false) {
        throw new ArmError(
          409,
          'OperationNotAllowed',
          `Removing replicated region '${name}' is not allowed: safetyProfile.allowDeletionOfReplicatedLocations is false.`,
          `${target}.targetRegions`,
        );
      }
    } else if (String(kept['storageAccountType']) !== String(region['storageAccountType'])) {
      throw notUpdatable(`${target}.targetRegions.storageAccountType`);
    }
  }
}

function profileOf(version: Json): Json | undefined {
  return asObject(asObject(version['properties'])?.['publishingProfile']);
}

function notUpdatable(property: string): ArmError {
  return new ArmError(
    409,
    'PropertyChangeNotAllowed',
    `Changing property '${property}' is not allowed.`,
    property,
  );
}

export function refuseSourceChange(existing: Json, updated: Json): void {
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

export function keepPublishedDate(previous: Json | undefined, resource: Json): void {
  const before = asObject(previous?.['publishingProfile'])?.['publishedDate'];
  const profile = asObject(asObject(resource['properties'])?.['publishingProfile']);
  if (before !== undefined && profile !== undefined) profile['publishedDate'] = before;
}

export function sourceOf(version: Json): { uri: string; storageAccountId: string } {
  const source = asObject(
    asObject(asObject(asObject(version['properties'])?.['storageProfile'])?.['osDiskImage'])?.['source'],
  );
  return { uri: text(source?.['uri']), storageAccountId: text(source?.['storageAccountId']) };
}
