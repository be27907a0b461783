/**
 * The BOSH Azure CPI's conventions, kept as its `compute_gallery_manager.rb` keeps them apart from its REST
 * client: image definition names, identifiers and features, the version tags a director reads back
 * (`image`, `image_sha256`, `stemcell_references`, ...), when a director adopts a version, Azure's tag
 * limits, and the mirror's own tags beside them.
 */
import type { GalleryNaming } from './config.js';
import { GalleryError } from './gallery-error.js';
import type { CloudProperties, StemcellManifest } from './manifest.js';
import { galleryVersionName } from './versions.js';

export interface ImageDefinitionSpec {
  name: string;
  publisher: string;
  offer: string;
  sku: string;
  osType: 'Linux' | 'Windows';
  osState: 'Generalized';
  hyperVGeneration: 'V1' | 'V2';
  architecture: 'x64' | 'Arm64';
  features?: Array<{ name: string; value: string }>;
}

/**
 * The value the mirror puts in `stemcell_references`. The CPI deletes a version when a director's
 * `delete-stemcell` removes the last reference; director stemcell ids are `bosh-stemcell-<uuid>`, so this
 * entry is never removed and the mirrored version outlives every director that adopts it. Its presence
 * also tells the CPI the version is BOSH-shaped ("not created by BOSH CPI" is raised only without it).
 */
export const MIRROR_STEMCELL_REFERENCE = 'bosh-azure-stemcell-mirror';

/**
 * Version tag the mirror sets once a version's run is complete: the time of the GitHub dispatch, or `off`
 * when notifications are not configured. A version of the mirror's without it has an unfinished run.
 */
export const MIRROR_NOTIFIED_TAG = 'mirror_notified';

// The CPI's list format for `stemcell_references`: names joined by ',' (read back with split(',') + strip).
function stemcellReferenceList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((reference) => reference.trim())
    .filter((reference) => reference !== '');
}

/**
 * The `stemcell_references` value with MIRROR_STEMCELL_REFERENCE added, in the CPI's format (as its
 * `build_updated_tags` writes it: the existing references, then `stemcell_name` if it is not among them,
 * then the new one, joined by ','); undefined when the mirror's reference is already there.
 */
export function stemcellReferencesWith(tags: Readonly<Record<string, string>>): string | undefined {
  const references = stemcellReferenceList(tags['stemcell_references']);
  if (references.includes(MIRROR_STEMCELL_REFERENCE)) return undefined;
  const stemcellName = tags['stemcell_name'];
  if (stemcellName !== undefined && stemcellName !== '' && !references.includes(stemcellName)) {
    references.push(stemcellName);
  }
  references.push(MIRROR_STEMCELL_REFERENCE);
  return references.join(',');
}

/** The mirror created it: its reference comes first (the CPI appends a director's; adoption appends ours). */
export function isCreatedByMirror(tags: Readonly<Record<string, string>>): boolean {
  return stemcellReferenceList(tags['stemcell_references'])[0] === MIRROR_STEMCELL_REFERENCE;
}

/** Who made a gallery version, as its tags tell: the mirror, a director's CPI, a director's version the mirror adopted, or neither. */
export type VersionOrigin = 'mirror' | 'director' | 'adopted' | 'other';

export function versionOrigin(tags: Readonly<Record<string, string>>): VersionOrigin {
  if (isCreatedByMirror(tags)) return 'mirror';
  if (stemcellReferenceList(tags['stemcell_references']).includes(MIRROR_STEMCELL_REFERENCE))
    return 'adopted';
  return isAdoptableByCpi(tags) ? 'director' : 'other';
}

/** How many directors use the version: the `stemcell_references` entries other than the mirror's own. */
export function directorReferenceCount(tags: Readonly<Record<string, string>>): number {
  return stemcellReferenceList(tags['stemcell_references']).filter((r) => r !== MIRROR_STEMCELL_REFERENCE)
    .length;
}

/**
 * Why a director may be using the version, or undefined when none is: a `stemcell_references` entry other
 * than the mirror's (the CPI appends its stemcell id when a director adopts the version, and removes it on
 * `delete-stemcell`), or a `stemcell_name` tag (how CPIs before `stemcell_references` recorded their stemcell).
 * The one rule for "in use": retention never deletes such a version, nor does a run to recreate it.
 */
export function directorUse(tags: Readonly<Record<string, string>>): string | undefined {
  const references = directorReferenceCount(tags);
  if (references > 0) {
    return `${references} director${references === 1 ? '' : 's'} reference${references === 1 ? 's' : ''} it (stemcell_references)`;
  }
  const stemcellName = tags['stemcell_name'];
  if (stemcellName !== undefined && stemcellName !== '' && stemcellName !== MIRROR_STEMCELL_REFERENCE) {
    return `a director's stemcell ${stemcellName} names it (stemcell_name)`;
  }
  return undefined;
}

/**
 * Whether a director's CPI would adopt this existing version on `bosh upload-stemcell` rather than refuse it
 * as "not created by BOSH CPI" (it needs a `stemcell_references` or a `stemcell_name` tag). With
 * `imageSha256`, also false when the version's `image_sha256` tag names other content (the CPI's SHA256
 * mismatch); a missing tag on either side passes, as in the CPI.
 */
export function isAdoptableByCpi(tags: Readonly<Record<string, string>>, imageSha256?: string): boolean {
  if (tags['stemcell_references'] === undefined && tags['stemcell_name'] === undefined) return false;
  const existing = tags['image_sha256'];
  return existing === undefined || imageSha256 === undefined || existing === imageSha256;
}

const DEFAULT_GENERATION = 'gen1';
// The CPI's own constant for the `image` tag; the definition's identifier may differ when overridden.
const CPI_PUBLISHER = 'bosh';

// Azure resource tag limits (Azure Resource Manager, "Tag resources"): names and values beyond these are refused.
export const MAX_TAGS = 50;
const MAX_TAG_NAME = 512;
export const MAX_TAG_VALUE = 256;
// ARM refuses these characters, and control characters, in tag names.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_TAG_NAME_CHARS = /[<>%&\\?/\u0000-\u001f\u007f]/;

/** What Azure would refuse in these tags (names, characters, lengths), one phrase per problem; [] when none. */
export function tagProblems(tags: Readonly<Record<string, string>>): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(tags)) {
    if (name.trim() === '') problems.push('a tag has an empty name');
    else if (name.length > MAX_TAG_NAME)
      problems.push(`name ${name.slice(0, 40)}... is ${name.length} characters (at most ${MAX_TAG_NAME})`);
    else if (FORBIDDEN_TAG_NAME_CHARS.test(name))
      problems.push(`name ${name} contains one of < > % & \\ ? /`);
    if (typeof value !== 'string') problems.push(`${name} has no text value`);
    else if (value.length > MAX_TAG_VALUE)
      problems.push(`${name} has a value of ${value.length} characters (at most ${MAX_TAG_VALUE})`);
  }
  return problems;
}

function generationOf(cloudProperties: CloudProperties): string {
  const generation = cloudProperties.generation?.trim();
  return generation === undefined || generation === '' ? DEFAULT_GENERATION : generation;
}

function isGen1(generation: string): boolean {
  return generation.toLowerCase() === DEFAULT_GENERATION;
}

/** CPI: the stemcell name for gen1, `<name>-<generation>` otherwise; `BASM_GALLERY_IMAGE_NAME` overrides both. */
export function imageDefinitionName(
  series: string,
  generation: string | undefined,
  naming: GalleryNaming,
): string {
  if (naming.imageName !== undefined && naming.imageName !== '') return naming.imageName;
  const effective = generation === undefined || generation.trim() === '' ? DEFAULT_GENERATION : generation;
  return isGen1(effective) ? series : `${series}-${effective}`;
}

/**
 * Which definition names belong to a series, decided before the stemcell (and so its generation) is known:
 * the gen1 name, `<series>-gen<N>`, and `<series>-gen<N>-<arch>` (the naming a proposed CPI change uses);
 * Azure compares resource names without case. With an override, only the override.
 */
export function candidateDefinitionNames(series: string, naming: GalleryNaming): (name: string) => boolean {
  if (naming.imageName !== undefined && naming.imageName !== '') {
    const override = naming.imageName.toLowerCase();
    return (name) => name.toLowerCase() === override;
  }
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escaped}(-gen\\d+(-(x64|arm64))?)?$`, 'i');
  return (name) => pattern.test(name);
}

function osTypeOf(manifest: StemcellManifest): 'Linux' | 'Windows' {
  const raw = manifest.cloudProperties.osType;
  const normalized = raw.charAt(0).toUpperCase() + raw.slice(1).toLowerCase();
  if (normalized === 'Linux' || normalized === 'Windows') return normalized;
  throw new GalleryError(
    `Stemcell ${manifest.name} ${manifest.version} has cloud_properties.os_type "${raw}"; the gallery accepts linux or windows. Use an Azure stemcell.`,
  );
}

function hyperVGenerationOf(manifest: StemcellManifest, generation: string): 'V1' | 'V2' {
  const hyperV = `V${generation.toLowerCase().replace(/^gen/, '')}`;
  if (hyperV === 'V1' || hyperV === 'V2') return hyperV;
  throw new GalleryError(
    `Stemcell ${manifest.name} ${manifest.version} has cloud_properties.generation "${generation}"; Azure knows gen1 (V1) and gen2 (V2) only.`,
  );
}

function architectureOf(manifest: StemcellManifest): 'x64' | 'Arm64' {
  const raw = manifest.cloudProperties.architecture;
  switch (raw.toLowerCase()) {
    case 'x86_64':
    case 'amd64':
    case 'x64':
      return 'x64';
    case 'arm64':
    case 'aarch64':
      return 'Arm64';
    default:
      throw new GalleryError(
        `Stemcell ${manifest.name} ${manifest.version} has cloud_properties.architecture "${raw}"; the gallery accepts x86_64 (x64) or arm64 (Arm64).`,
      );
  }
}

// CPI: scsi -> SCSI, nvme -> NVMe, anything else passes unchanged.
function diskControllerName(controller: string): string {
  switch (controller.toLowerCase()) {
    case 'scsi':
      return 'SCSI';
    case 'nvme':
      return 'NVMe';
    default:
      return controller;
  }
}

/** The CPI's feature list: same names, values and order (Azure refuses to change features later). */
function featuresOf(cloudProperties: CloudProperties): Array<{ name: string; value: string }> | undefined {
  const features: Array<{ name: string; value: string }> = [];
  const controllers = cloudProperties.diskControllerTypes;
  if (controllers !== undefined && controllers.length > 0) {
    features.push({ name: 'DiskControllerTypes', value: controllers.map(diskControllerName).join(',') });
  }
  if (cloudProperties.acceleratedNetworking !== undefined) {
    features.push({
      name: 'IsAcceleratedNetworkSupported',
      value: cloudProperties.acceleratedNetworking ? 'True' : 'False',
    });
  }
  if (cloudProperties.hibernation !== undefined) {
    features.push({ name: 'IsHibernateSupported', value: cloudProperties.hibernation ? 'True' : 'False' });
  }
  if (cloudProperties.securityType !== undefined) {
    features.push({ name: 'SecurityType', value: cloudProperties.securityType });
  }
  return features.length > 0 ? features : undefined;
}

/** The image definition the CPI would create for this stemcell (publisher/offer/sku overridable by settings). */
export function imageDefinitionFor(manifest: StemcellManifest, naming: GalleryNaming): ImageDefinitionSpec {
  const cloudProperties = manifest.cloudProperties;
  const generation = generationOf(cloudProperties);
  const name = imageDefinitionName(cloudProperties.name, generation, naming);
  const spec: ImageDefinitionSpec = {
    name,
    publisher: naming.publisher,
    offer: naming.offer ?? name,
    sku: naming.sku ?? generation,
    osType: osTypeOf(manifest),
    osState: 'Generalized',
    hyperVGeneration: hyperVGenerationOf(manifest, generation),
    architecture: architectureOf(manifest),
  };
  // The CPI sends features only for non-gen1 images, and none at all when the list would be empty.
  const features = isGen1(generation) ? undefined : featuresOf(cloudProperties);
  if (features !== undefined) spec.features = features;
  return spec;
}

// Ruby's Array#to_s, which the CPI's encode_metadata applies to list-valued cloud properties.
function rubyArrayText(items: readonly string[]): string {
  return `[${items.map((item) => JSON.stringify(item)).join(', ')}]`;
}

/**
 * The version tags the CPI writes: every cloud property as text, `image` (the identifier as JSON),
 * `compute_gallery_name`, `compute_gallery_image_definition`, `image_sha256` (SHA-256 of the `image` file,
 * which the CPI compares on upload) and `stemcell_references` (see MIRROR_STEMCELL_REFERENCE), plus
 * `stemcell_source_url`. Within Azure's limits: the CPI-required tags must fit or this throws; any other
 * tag that is too long is left out rather than cut (a cut value would look real), and beyond 50 tags the
 * last cloud properties are left out.
 */
/** Tags only the mirror writes (lowercase), whatever a stemcell's cloud_properties say. */
const MIRROR_OWN_TAGS: readonly string[] = [
  'image',
  'compute_gallery_name',
  'compute_gallery_image_definition',
  'image_sha256',
  'stemcell_references',
  'stemcell_source_url',
  MIRROR_NOTIFIED_TAG,
];

export function imageVersionTags(input: {
  manifest: StemcellManifest;
  imageSha256: string;
  galleryName: string;
  definitionName: string;
  sourceUrl?: string;
}): Record<string, string> {
  const { manifest, imageSha256, galleryName, definitionName, sourceUrl } = input;
  const cloudProperties = manifest.cloudProperties;
  const all = new Map<string, string>();
  // Azure compares tag names without case: a property spelled like one of the mirror's own tags, in any case,
  // would replace it (or mark the run finished), so it is left out; of two spellings of one name, the first.
  const taken = new Set(MIRROR_OWN_TAGS);
  for (const [name, value] of Object.entries(cloudProperties.raw)) {
    if (taken.has(name.toLowerCase())) continue;
    taken.add(name.toLowerCase());
    all.set(name, String(value));
  }
  if (!all.has('name')) all.set('name', cloudProperties.name);
  if (!all.has('version')) all.set('version', cloudProperties.version);
  if (cloudProperties.diskControllerTypes !== undefined && !all.has('disk_controller_types')) {
    all.set('disk_controller_types', rubyArrayText(cloudProperties.diskControllerTypes));
  }
  const identifier = {
    publisher: CPI_PUBLISHER,
    offer: definitionName,
    sku: generationOf(cloudProperties),
    version: galleryVersionName(cloudProperties.version),
  };
  const required = new Map<string, string>([
    ['image', JSON.stringify(identifier)],
    ['compute_gallery_name', galleryName],
    ['compute_gallery_image_definition', definitionName],
    ['image_sha256', imageSha256],
    ['stemcell_references', MIRROR_STEMCELL_REFERENCE],
  ]);
  for (const [name, value] of required) all.set(name, value);
  if (sourceUrl !== undefined) all.set('stemcell_source_url', sourceUrl);

  const requiredNames = new Set(['name', 'version', ...required.keys()]);
  const tooLong = [...requiredNames]
    .map((name) => ({ name, length: (all.get(name) ?? '').length }))
    .filter(({ length }) => length > MAX_TAG_VALUE);
  if (tooLong.length > 0) {
    const list = tooLong.map(({ name, length }) => `${name} (${length})`).join(', ');
    throw new GalleryError(
      `Tags of stemcell ${manifest.name} ${manifest.version} exceed Azure's ${MAX_TAG_VALUE} characters: ${list}. Use a shorter gallery or image definition name.`,
    );
  }
  // One tag stays free for the mirror's record of the finished run (mirror_notified).
  let room = MAX_TAGS - requiredNames.size - 1;
  const tags: Record<string, string> = {};
  for (const [name, value] of all) {
    if (requiredNames.has(name)) {
      tags[name] = value;
      continue;
    }
    const fits =
      name.length <= MAX_TAG_NAME && value.length <= MAX_TAG_VALUE && !FORBIDDEN_TAG_NAME_CHARS.test(name);
    if (fits && room > 0) {
      tags[name] = value;
      room--;
    }
  }
  return tags;
}
