/**
 * Azure Compute Gallery: image definition and image version names, tags and features exactly as the
 * BOSH Azure CPI (`compute_gallery_manager.rb`) creates them, and the ARM calls that make them exist.
 */
import { ComputeManagementClient } from '@azure/arm-compute';
import type { GalleryImage, GalleryImageVersion } from '@azure/arm-compute';
import type { TokenCredential } from '@azure/identity';
import { errorMessage } from './failures.js';
import type { GalleryNaming } from './config.js';
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

export type KnownProvisioningState =
  'Creating' | 'Updating' | 'Succeeded' | 'Failed' | 'Deleting' | 'Migrating';

export interface ImageVersionState {
  name: string;
  /** Azure's provisioning state: Creating, Updating, Succeeded, Failed, Deleting, Migrating, or a newer one. */
  provisioningState: KnownProvisioningState | (string & Record<never, never>);
  tags: Record<string, string>;
  sourceUri?: string;
  errorMessage?: string;
}

/** A failed gallery call. `transient` (network, 408, 429, 5xx) means "retry later"; otherwise fix the cause first. */
export class GalleryError extends Error {
  readonly code?: string;
  readonly statusCode?: number;
  readonly transient: boolean;
  constructor(message: string, options: { code?: string; statusCode?: number; transient?: boolean } = {}) {
    super(message);
    this.name = 'GalleryError';
    if (options.code !== undefined) this.code = options.code;
    if (options.statusCode !== undefined) this.statusCode = options.statusCode;
    this.transient = options.transient ?? false;
  }
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
const MAX_TAGS = 50;
const MAX_TAG_NAME = 512;
const MAX_TAG_VALUE = 256;
// ARM refuses these characters, and control characters, in tag names.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_TAG_NAME_CHARS = /[<>%&\\?/\u0000-\u001f\u007f]/;

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
  for (const [name, value] of Object.entries(cloudProperties.raw)) all.set(name, String(value));
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

export interface ComputeGalleryOptions {
  subscriptionId: string;
  resourceGroup: string;
  galleryName: string;
  /** The gallery's region: location of new definitions and versions, and the single target region. */
  region: string;
  /** `https://management.azure.com` or a sovereign cloud / test endpoint. */
  resourceManagerEndpoint: string;
  /** ARM id of the storage account holding the VHD page blobs. */
  storageAccountId: string;
  credential: TokenCredential;
  /** How often waits (definition creation, deletion) poll when ARM sends no Retry-After; default 2 s. */
  pollIntervalMs?: number;
  /**
   * The longest any single ARM request (each attempt, each poll, each page) may take until its answer is read;
   * default 60 s. One that takes longer is abandoned and reported as a transient GalleryError.
   */
  requestTimeoutMs?: number;
  /**
   * The longest a wait for a long-running operation (definition creation, version deletion, tag update) may
   * take; default 30 minutes. Then a transient GalleryError says the operation is still running in Azure.
   */
  operationTimeoutMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
const DEFAULT_OPERATION_TIMEOUT_MS = 30 * 60_000;

type VersionPoller = ReturnType<ComputeManagementClient['galleryImageVersions']['createOrUpdate']>;

/** One Azure Compute Gallery, seen through the operations the mirror needs. */
export class ComputeGallery {
  readonly #client: ComputeManagementClient;
  readonly #options: ComputeGalleryOptions;
  /**
   * Creations started by this instance. A failed version's reason is read from its replication status;
   * the operation's own error, reachable only through the poller, is the fallback when that says nothing.
   */
  readonly #started = new Map<string, VersionPoller>();

  constructor(options: ComputeGalleryOptions) {
    this.#options = options;
    const endpoint = options.resourceManagerEndpoint.replace(/\/+$/, '');
    // The token audience follows the endpoint, so sovereign clouds and local fakes get tokens meant for them.
    this.#client = new ComputeManagementClient(options.credential, options.subscriptionId, {
      endpoint,
      credentials: { scopes: [`${endpoint}/.default`] },
    });
    // Inside the retry loop, so every attempt, poll and page is bounded on its own.
    this.#client.pipeline.addPolicy(
      requestTimeoutPolicy(positive(options.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS)),
      { afterPhase: 'Retry' },
    );
  }

  get #where(): string {
    return `gallery ${this.#options.galleryName} (resource group ${this.#options.resourceGroup})`;
  }

  /** Versions of every definition that belongs to the series (see candidateDefinitionNames); [] when none. */
  async listSeriesVersions(
    series: string,
    naming: GalleryNaming,
  ): Promise<Array<ImageVersionState & { definitionName: string }>> {
    const { resourceGroup, galleryName } = this.#options;
    const belongs = candidateDefinitionNames(series, naming);
    const result: Array<ImageVersionState & { definitionName: string }> = [];
    try {
      for await (const definition of this.#client.galleryImages.listByGallery(resourceGroup, galleryName)) {
        const definitionName = definition.name;
        if (definitionName === undefined || !belongs(definitionName)) continue;
        const versions = this.#client.galleryImageVersions.listByGalleryImage(
          resourceGroup,
          galleryName,
          definitionName,
        );
        for await (const version of versions) result.push({ ...versionState(version), definitionName });
      }
    } catch (error) {
      throw galleryError(error, `Listing the image versions of series ${series} in ${this.#where}`);
    }
    return result;
  }

  /** Creates the definition and waits; an existing one must agree on OS type/state, generation and architecture. */
  async ensureImageDefinition(spec: ImageDefinitionSpec): Promise<'created' | 'exists'> {
    const { resourceGroup, galleryName, region } = this.#options;
    const existing = await this.#getImageDefinition(spec.name);
    if (existing !== undefined) {
      assertCompatible(existing, spec, this.#where);
      return 'exists';
    }
    const definition: GalleryImage = {
      location: region,
      osType: spec.osType,
      osState: spec.osState,
      hyperVGeneration: spec.hyperVGeneration,
      architecture: spec.architecture,
      identifier: { publisher: spec.publisher, offer: spec.offer, sku: spec.sku },
    };
    if (spec.features !== undefined) definition.features = spec.features;
    const what = `Creating image definition ${spec.name} in ${this.#where}`;
    try {
      const created = await this.#untilDone(
        this.#client.galleryImages.createOrUpdate(
          resourceGroup,
          galleryName,
          spec.name,
          definition,
          this.#pollOptions(),
        ),
        what,
      );
      if (created.provisioningState !== undefined && created.provisioningState !== 'Succeeded') {
        throw new GalleryError(
          `${what} ended in provisioning state ${created.provisioningState}. Check the definition in the portal and run again.`,
        );
      }
    } catch (error) {
      throw galleryError(error, what);
    }
    return 'created';
  }

  /** The version's state, or undefined when it (or its definition) does not exist. */
  async getImageVersion(definitionName: string, versionName: string): Promise<ImageVersionState | undefined> {
    const { resourceGroup, galleryName } = this.#options;
    try {
      // ReplicationStatus carries Azure's explanation when provisioning failed.
      const version = await this.#client.galleryImageVersions.get(
        resourceGroup,
        galleryName,
        definitionName,
        versionName,
        {
          expand: 'ReplicationStatus',
        },
      );
      const state = versionState(version);
      const key = versionKey(definitionName, versionName);
      if (state.provisioningState === 'Failed' && state.errorMessage === undefined) {
        state.errorMessage = (await this.#operationFailure(key)) ?? NO_REASON;
      }
      if (state.provisioningState === 'Succeeded' || state.provisioningState === 'Failed')
        this.#started.delete(key);
      return state;
    } catch (error) {
      if (statusCodeOf(error) === 404) return undefined;
      throw galleryError(error, `Reading image version ${definitionName}/${versionName} in ${this.#where}`);
    }
  }

  /** Sends the PUT and returns once Azure accepted it; provisioning (minutes) is watched with getImageVersion. */
  async startImageVersion(input: {
    definitionName: string;
    versionName: string;
    blobUrl: string;
    tags: Record<string, string>;
  }): Promise<void> {
    const { resourceGroup, galleryName, region, storageAccountId } = this.#options;
    const version: GalleryImageVersion = {
      location: region,
      tags: input.tags,
      publishingProfile: {
        targetRegions: [{ name: region, regionalReplicaCount: 1, storageAccountType: 'Standard_LRS' }],
        replicaCount: 1,
        excludeFromLatest: false,
      },
      // Like the CPI: source by storage account id and uri (not the deprecated `id`), no hostCaching.
      storageProfile: { osDiskImage: { source: { storageAccountId, uri: input.blobUrl } } },
    };
    const what = `Starting image version ${input.definitionName}/${input.versionName} from ${input.blobUrl} in ${this.#where}`;
    try {
      const poller = this.#client.galleryImageVersions.createOrUpdate(
        resourceGroup,
        galleryName,
        input.definitionName,
        input.versionName,
        version,
      );
      // Resolves with the initial response; the poller is never awaited, so nothing polls in the background.
      await poller.submitted();
      if (poller.operationState?.status === 'failed') {
        throw poller.operationState.error ?? new Error('Azure reported the operation failed without details');
      }
      this.#started.set(versionKey(input.definitionName, input.versionName), poller);
    } catch (error) {
      throw galleryError(error, what);
    }
  }

  /** Deletes the version and waits until it is gone; a missing version is fine. */
  async deleteImageVersion(definitionName: string, versionName: string): Promise<void> {
    const { resourceGroup, galleryName } = this.#options;
    this.#started.delete(versionKey(definitionName, versionName));
    const what = `Deleting image version ${definitionName}/${versionName} in ${this.#where}`;
    try {
      await this.#untilDone(
        this.#client.galleryImageVersions.delete(
          resourceGroup,
          galleryName,
          definitionName,
          versionName,
          this.#pollOptions(),
        ),
        what,
      );
    } catch (error) {
      if (statusCodeOf(error) === 404) return;
      throw galleryError(error, what);
    }
  }

  /**
   * Merges `tags` into the version's current tags and returns the merged set (e.g. `mirror_notified`, or a
   * `stemcell_references` value from stemcellReferencesWith). ARM's PATCH replaces the whole tags object, so
   * the version is read first and the merged set is sent; a tag name that differs only in case replaces the
   * existing one (Azure compares tag names without case). Nothing is sent when every tag already has its
   * value. Waits until Azure has applied the update. Azure's limits (50 tags, names of 512 and values of
   * 256 characters, no `<>%&\?/` in names) are checked first. A version that Azure is still creating or
   * updating is a transient error; a missing one is a permanent error with status 404. Not atomic: a tag
   * written by someone else between the read and the update is lost.
   */
  async tagImageVersion(
    definitionName: string,
    versionName: string,
    tags: Record<string, string>,
  ): Promise<Record<string, string>> {
    const { resourceGroup, galleryName } = this.#options;
    const what = `Tagging image version ${definitionName}/${versionName} in ${this.#where}`;
    checkTags(tags, what);
    try {
      const version = await this.#client.galleryImageVersions.get(
        resourceGroup,
        galleryName,
        definitionName,
        versionName,
      );
      const current = { ...(version.tags ?? {}) };
      const state = version.provisioningState ?? 'Unknown';
      const merged = mergeTags(current, tags);
      if (sameTags(merged, current)) return merged;
      if (Object.keys(merged).length > MAX_TAGS) {
        throw new GalleryError(
          `${what} failed: the version has ${Object.keys(current).length} tags and the merge would make ${Object.keys(merged).length}; Azure allows ${MAX_TAGS}. Remove tags from the version first.`,
          { code: 'TooManyTags' },
        );
      }
      if (state === 'Deleting') {
        throw new GalleryError(`${what} failed: Azure is deleting the version.`, { code: 'VersionDeleting' });
      }
      if (state === 'Creating' || state === 'Updating' || state === 'Migrating') {
        throw new GalleryError(
          `${what} failed: the version is ${state}; Azure takes no tag update until that ends. This looks temporary; it is retried.`,
          { code: 'VersionBusy', transient: true },
        );
      }
      const updated = await this.#untilDone(
        this.#client.galleryImageVersions.update(
          resourceGroup,
          galleryName,
          definitionName,
          versionName,
          { tags: merged },
          this.#pollOptions(),
        ),
        what,
      );
      return { ...(updated.tags ?? merged) };
    } catch (error) {
      throw galleryError(error, what);
    }
  }

  async #getImageDefinition(name: string): Promise<GalleryImage | undefined> {
    const { resourceGroup, galleryName } = this.#options;
    try {
      return await this.#client.galleryImages.get(resourceGroup, galleryName, name);
    } catch (error) {
      // 404 with ParentResourceNotFound means the gallery itself is missing: that must not look like "absent".
      if (statusCodeOf(error) === 404 && codeOf(error) !== 'ParentResourceNotFound') return undefined;
      throw galleryError(error, `Reading image definition ${name} in ${this.#where}`);
    }
  }

  // One poll of the creation's async operation; a failed operation throws with Azure's code and message.
  async #operationFailure(key: string): Promise<string | undefined> {
    const poller = this.#started.get(key);
    if (poller === undefined) return undefined;
    try {
      await poller.poll();
      return poller.operationState?.error?.message;
    } catch (error) {
      const message = errorMessage(error);
      return message.replace(/^The long-running operation has failed\.\s*/, '');
    }
  }

  /** Waits for a long-running operation, at most operationTimeoutMs; then it stops polling and says so. */
  async #untilDone<T>(poller: Waitable<T>, what: string): Promise<T> {
    const limit = positive(this.#options.operationTimeoutMs, DEFAULT_OPERATION_TIMEOUT_MS);
    const stop = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new GalleryError(
            `${what} is still running after ${duration(limit)}: Azure has not finished the operation yet (it goes on in Azure). This looks temporary; it is retried.`,
            { code: 'OperationTimeout', transient: true },
          ),
        );
        stop.abort();
      }, limit);
    });
    const done = poller.pollUntilDone({ abortSignal: stop.signal });
    // After the deadline the poller rejects (aborted) with nobody waiting for it.
    done.catch(() => undefined);
    try {
      return await Promise.race([done, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  #pollOptions(): { updateIntervalInMs?: number } {
    return this.#options.pollIntervalMs === undefined
      ? {}
      : { updateIntervalInMs: this.#options.pollIntervalMs };
  }
}

const NO_REASON = 'Azure gave no reason here; see the activity log of the image version';

interface Waitable<T> {
  pollUntilDone(options?: { abortSignal?: AbortSignal }): Promise<T>;
}

type PipelinePolicy = Parameters<ComputeManagementClient['pipeline']['addPolicy']>[0];

/** One ARM request that got no complete answer in time. */
class RequestTimeoutError extends Error {
  readonly code = 'RequestTimeout';
  constructor(method: string, url: string, timeoutMs: number) {
    super(`Azure Resource Manager gave no answer to ${method} ${urlPath(url)} within ${duration(timeoutMs)}`);
    this.name = 'RequestTimeoutError';
  }
}

/**
 * Bounds one request (headers and body) by its own abort signal; core-rest-pipeline's `request.timeout` stops
 * at the headers and surfaces as an AbortError that says nothing of a timeout.
 */
function requestTimeoutPolicy(timeoutMs: number): PipelinePolicy {
  return {
    name: 'basmRequestTimeout',
    async sendRequest(request, next) {
      const outer = request.abortSignal;
      const controller = new AbortController();
      const forward = () => controller.abort();
      if (outer?.aborted === true) controller.abort();
      else outer?.addEventListener('abort', forward);
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new RequestTimeoutError(request.method, request.url, timeoutMs));
          controller.abort();
        }, timeoutMs);
      });
      request.abortSignal = controller.signal;
      try {
        const sent = next(request);
        sent.catch(() => undefined);
        return await Promise.race([sent, deadline]);
      } finally {
        clearTimeout(timer);
        outer?.removeEventListener('abort', forward);
        request.abortSignal = outer;
      }
    },
  };
}

function urlPath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

function duration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

function checkTags(tags: Record<string, string>, what: string): void {
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
  if (problems.length > 0) {
    throw new GalleryError(`${what} refused: Azure would not accept these tags: ${problems.join('; ')}.`, {
      code: 'InvalidTag',
    });
  }
}

// Azure tag names are case-insensitive: a new spelling replaces the old one instead of making a duplicate.
function mergeTags(current: Record<string, string>, tags: Record<string, string>): Record<string, string> {
  const merged = { ...current };
  for (const [name, value] of Object.entries(tags)) {
    for (const existing of Object.keys(merged)) {
      if (existing !== name && existing.toLowerCase() === name.toLowerCase()) delete merged[existing];
    }
    merged[name] = value;
  }
  return merged;
}

function sameTags(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => b[key] === a[key]);
}

function requestTimeoutOf(error: unknown): RequestTimeoutError | undefined {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof RequestTimeoutError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function versionKey(definitionName: string, versionName: string): string {
  return `${definitionName}/${versionName}`.toLowerCase();
}

function versionState(version: GalleryImageVersion): ImageVersionState {
  const state: ImageVersionState = {
    name: version.name ?? '',
    provisioningState: version.provisioningState ?? 'Unknown',
    tags: { ...(version.tags ?? {}) },
  };
  const sourceUri = version.storageProfile?.osDiskImage?.source?.uri;
  if (sourceUri !== undefined) state.sourceUri = sourceUri;
  if (state.provisioningState === 'Failed') {
    const details = (version.replicationStatus?.summary ?? [])
      .map((region) => region.details)
      .filter((detail): detail is string => detail !== undefined && detail !== '');
    if (details.length > 0) state.errorMessage = details.join('; ');
  }
  return state;
}

// Azure treats Generalized as the default OS state, V1 as the default generation and x64 as the default architecture.
function assertCompatible(existing: GalleryImage, spec: ImageDefinitionSpec, where: string): void {
  const actual = {
    osType: existing.osType ?? '(none)',
    osState: existing.osState ?? 'Generalized',
    hyperVGeneration: existing.hyperVGeneration ?? 'V1',
    architecture: existing.architecture ?? 'x64',
  };
  const mismatches = (['osType', 'osState', 'hyperVGeneration', 'architecture'] as const)
    .filter((key) => actual[key].toLowerCase() !== spec[key].toLowerCase())
    .map((key) => `${key} is ${actual[key]} there but the stemcell needs ${spec[key]}`);
  if (mismatches.length > 0) {
    throw new GalleryError(
      `Image definition ${spec.name} in ${where} contradicts the stemcell: ${mismatches.join('; ')}. ` +
        'Azure cannot change these on a definition: delete it (and its versions) or set BASM_GALLERY_IMAGE_NAME to another name.',
      { code: 'ImageDefinitionMismatch' },
    );
  }
}

function statusCodeOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' ? status : undefined;
}

function codeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const TRANSIENT_NETWORK_CODES = new Set([
  'REQUEST_SEND_ERROR',
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EPIPE',
  'UND_ERR_SOCKET',
]);

/** Wraps any failure as a GalleryError that says what was being done, Azure's answer and whether to retry. */
function galleryError(error: unknown, what: string): GalleryError {
  if (error instanceof GalleryError) return error;
  const timeout = requestTimeoutOf(error);
  if (timeout !== undefined) {
    return new GalleryError(`${what} failed: ${timeout.message}. This looks temporary; it is retried.`, {
      code: timeout.code,
      transient: true,
    });
  }
  const statusCode = statusCodeOf(error);
  const code = codeOf(error);
  const message = errorMessage(error);
  const transient =
    statusCode !== undefined
      ? TRANSIENT_STATUS.has(statusCode) || statusCode >= 500
      : code !== undefined && TRANSIENT_NETWORK_CODES.has(code);
  const answer = [code, statusCode === undefined ? undefined : `HTTP ${statusCode}`]
    .filter(Boolean)
    .join(', ');
  const advice = transient
    ? 'This looks temporary; it is retried.'
    : statusCode === 401 || statusCode === 403
      ? 'Check the role assignments of the managed identity on the gallery and on the storage account.'
      : 'Fix the cause above and run the mirror again.';
  const options: { code?: string; statusCode?: number; transient: boolean } = { transient };
  if (code !== undefined) options.code = code;
  if (statusCode !== undefined) options.statusCode = statusCode;
  return new GalleryError(
    `${what} failed: ${message}${answer === '' ? '' : ` (${answer})`}. ${advice}`,
    options,
  );
}
