import {
  ArmError,
  invalidContent,
  invalidParameter,
  missingParameter,
  resourceNotFound,
} from './arm-http.js';
import { asObject, deepMerge, sameRegion, text } from './json.js';
import type { Json } from './json.js';

/** The one existing Compute Gallery the fake serves, and the ARM resource rules its children share. */
export interface Gallery {
  subscriptionId: string;
  resourceGroup: string;
  galleryName: string;
  location: string;
}

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

export function galleryPath(gallery: Gallery): string {
  return `/subscriptions/${gallery.subscriptionId}/resourceGroups/${gallery.resourceGroup}/providers/Microsoft.Compute/galleries/${gallery.galleryName}`;
}

export function galleryResource(gallery: Gallery): Json {
  return {
    id: galleryPath(gallery),
    name: gallery.galleryName,
    type: 'Microsoft.Compute/galleries',
    location: gallery.location,
    properties: {
      identifier: { uniqueName: `${gallery.subscriptionId}-${gallery.galleryName.toUpperCase()}` },
      provisioningState: 'Succeeded',
    },
  };
}

export function requireLocation(gallery: Gallery, body: Json, prefix: string): string {
  const location = body['location'];
  if (typeof location !== 'string' || location.trim() === '') {
    throw new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
  }
  if (!sameRegion(location, gallery.location)) {
    throw invalidParameter(
      `${prefix}.location`,
      `The location '${location}' does not match the location '${gallery.location}' of gallery '${gallery.galleryName}'.`,
    );
  }
  return location;
}

export function armResource(
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

export function mergePatch(gallery: Gallery, existing: Json | undefined, name: string, body: unknown): Json {
  if (existing === undefined)
    throw resourceNotFound(`Microsoft.Compute/galleries/${gallery.galleryName}/images/${name}`);
  const patch = asObject(body);
  if (patch === undefined) throw invalidContent('the body is not a JSON object');
  const merged = deepMerge(structuredClone(existing), patch);
  // ARM PATCH replaces the whole tags object rather than merging it.
  if (patch['tags'] !== undefined) merged['tags'] = patch['tags'];
  const properties = asObject(merged['properties']);
  if (properties !== undefined) delete properties['provisioningState'];
  return merged;
}

export function setProvisioningState(resource: Json, state: string): void {
  const properties = asObject(resource['properties']);
  if (properties !== undefined) properties['provisioningState'] = state;
}

/** ARM's own checks of `tags`, made before the resource provider sees the request (see maxTags). */
export function validateTags(value: unknown): void {
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

export function enumValue(
  value: unknown,
  allowed: readonly string[],
  target: string,
  fallback?: string,
): string {
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
