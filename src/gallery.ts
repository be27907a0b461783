/**
 * The Azure Compute Gallery client: the ARM calls that make the image definitions and versions the CPI's
 * conventions (src/cpi.ts) describe exist, and report their state.
 */
import { ComputeManagementClient } from '@azure/arm-compute';
import type { GalleryImage, GalleryImageVersion } from '@azure/arm-compute';
import type { TokenCredential } from '@azure/identity';
import type { GalleryNaming } from './config.js';
import { MAX_TAGS, candidateDefinitionNames, type ImageDefinitionSpec } from './cpi.js';
import { definitionDrift, driftRefusal, type ExistingDefinition } from './definition-features.js';
import { errorCodeOf, httpStatusOf } from './failures.js';
import { acceptedWrite, isBusy, untilSettled } from './arm-writes.js';
import { GalleryError, galleryError, requestTimeoutPolicy } from './gallery-error.js';
import {
  NO_REASON,
  checkTags,
  publishingProfileFor,
  mergeTags,
  sameTags,
  versionState,
  type ImageVersionState,
} from './gallery-version.js';
import {
  extendedTargetRegions,
  isNoChange,
  targetRegionChange,
  type TargetRegionChange,
} from './target-regions.js';
import type { VersionPublishing } from './gallery-version.js';

export type { ImageVersionState, KnownProvisioningState, VersionPublishing } from './gallery-version.js';

export interface ComputeGalleryOptions {
  subscriptionId: string;
  resourceGroup: string;
  galleryName: string;
  /** The gallery's region: location of new definitions and versions. */
  region: string;
  /** Where new versions are replicated; default: the gallery's region, one Standard_LRS replica. */
  publishing?: VersionPublishing;
  /** `https://management.azure.com` or a sovereign cloud / test endpoint. */
  resourceManagerEndpoint: string;
  /** ARM id of the storage account holding the VHD page blobs. */
  storageAccountId: string;
  credential: TokenCredential;
  /** How often waits (definition creation, deletion, tag update) read the resource when ARM sends no Retry-After; default 2 s. */
  pollIntervalMs?: number;
  /** Waits between reads of a resource; tests pass one that records the delays instead of sleeping. */
  sleep?: (ms: number) => Promise<void>;
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
const DEFAULT_POLL_INTERVAL_MS = 2_000;

/** One Azure Compute Gallery, seen through the operations the mirror needs. */
export class ComputeGallery {
  readonly #client: ComputeManagementClient;
  readonly #options: ComputeGalleryOptions;

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

  get #publishing(): VersionPublishing {
    const { publishing, region } = this.#options;
    return (
      publishing ?? {
        targetRegions: [{ name: region, regionalReplicaCount: 1 }],
        storageAccountType: 'Standard_LRS',
      }
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

  /**
   * Creates the definition and waits; an existing one must agree on OS type and state, generation, architecture
   * and features (src/definition-features.ts), else a permanent GalleryError `ImageDefinitionMismatch` names
   * each drift; `subject` names the stemcell in it.
   */
  async ensureImageDefinition(spec: ImageDefinitionSpec, subject = spec.name): Promise<'created' | 'exists'> {
    const { resourceGroup, galleryName, region } = this.#options;
    const existing = await this.#getImageDefinition(spec.name);
    if (existing !== undefined) {
      const refusal = await this.definitionRefusal(spec, subject, 'Nothing was created.', existing);
      if (refusal !== undefined) throw new GalleryError(refusal, { code: 'ImageDefinitionMismatch' });
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
      const retryAfterMs = await acceptedWrite((options) =>
        this.#client.galleryImages.createOrUpdate(resourceGroup, galleryName, spec.name, definition, options),
      );
      const created = await this.#untilSettled(
        () => this.#getImageDefinition(spec.name),
        (current) => current !== undefined && !isBusy(current.provisioningState),
        retryAfterMs,
        what,
      );
      if (created?.provisioningState !== undefined && created.provisioningState !== 'Succeeded') {
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
      if (state.provisioningState === 'Failed' && state.errorMessage === undefined)
        state.errorMessage = NO_REASON;
      return state;
    } catch (error) {
      if (httpStatusOf(error) === 404) return undefined;
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
      publishingProfile: publishingProfileFor(this.#publishing, new Date()),
      // Like the CPI: source by storage account id and uri (not the deprecated `id`), no hostCaching.
      storageProfile: { osDiskImage: { source: { storageAccountId, uri: input.blobUrl } } },
    };
    const what = `Starting image version ${input.definitionName}/${input.versionName} from ${input.blobUrl} in ${this.#where}`;
    try {
      // Create only: a version someone (a director) made since the mirror looked is never overwritten (412).
      await acceptedWrite(
        (options) =>
          this.#client.galleryImageVersions.createOrUpdate(
            resourceGroup,
            galleryName,
            input.definitionName,
            input.versionName,
            version,
            options,
          ),
        { 'if-none-match': '*' },
      );
    } catch (error) {
      if (httpStatusOf(error) === 412) {
        throw new GalleryError(
          `${what} refused: the version exists now (created since the mirror looked); it is decided again, never overwritten.`,
          { code: 'VersionExists', statusCode: 412 },
        );
      }
      throw galleryError(error, what);
    }
  }

  /**
   * Adds the configured target regions a version lacks, and raises replica counts below the configured ones,
   * by a PATCH of its publishing profile (the source stays: nothing is recreated). Never removes a region.
   * Returns the change sent, or one with nothing in it when the version already has every region; does not
   * wait for replication (watched with getImageVersion). A version Azure is busy with is a transient error.
   */
  async extendImageVersion(definitionName: string, versionName: string): Promise<TargetRegionChange> {
    const { resourceGroup, galleryName } = this.#options;
    const { targetRegions, storageAccountType } = this.#publishing;
    const what = `Extending image version ${definitionName}/${versionName} in ${this.#where}`;
    try {
      const current = await this.getImageVersion(definitionName, versionName);
      if (current === undefined) {
        throw new GalleryError(`${what} failed: the version does not exist.`, { statusCode: 404 });
      }
      const change = targetRegionChange(current.targetRegions ?? [], targetRegions);
      if (isNoChange(change)) return change;
      if (current.provisioningState !== 'Succeeded') {
        const failed = current.provisioningState === 'Failed';
        throw new GalleryError(
          `${what} failed: the version is ${current.provisioningState}; ` +
            (failed
              ? 'the next run deletes and recreates it with every target region, unless a director uses it.'
              : 'Azure takes no update until that ends. This looks temporary; it is retried.'),
          { code: failed ? 'VersionFailed' : 'VersionBusy', transient: !failed },
        );
      }
      const regions = extendedTargetRegions(current.targetRegions ?? [], targetRegions, storageAccountType);
      await acceptedWrite((options) =>
        this.#client.galleryImageVersions.update(
          resourceGroup,
          galleryName,
          definitionName,
          versionName,
          { publishingProfile: { targetRegions: regions } },
          options,
        ),
      );
      return change;
    } catch (error) {
      throw galleryError(error, what);
    }
  }

  /** Deletes the version and waits until it is gone; a missing version is fine. */
  async deleteImageVersion(definitionName: string, versionName: string): Promise<void> {
    const { resourceGroup, galleryName } = this.#options;
    const what = `Deleting image version ${definitionName}/${versionName} in ${this.#where}`;
    try {
      const retryAfterMs = await acceptedWrite((options) =>
        this.#client.galleryImageVersions.delete(
          resourceGroup,
          galleryName,
          definitionName,
          versionName,
          options,
        ),
      );
      await this.#untilSettled(
        () => this.#readVersion(definitionName, versionName),
        (current) => current === undefined,
        retryAfterMs,
        what,
      );
    } catch (error) {
      if (httpStatusOf(error) === 404) return;
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
      const retryAfterMs = await acceptedWrite((options) =>
        this.#client.galleryImageVersions.update(
          resourceGroup,
          galleryName,
          definitionName,
          versionName,
          { tags: merged },
          options,
        ),
      );
      const updated = await this.#untilSettled(
        () => this.#readVersion(definitionName, versionName),
        (current) => current === undefined || !isBusy(current.provisioningState),
        retryAfterMs,
        what,
      );
      if (updated === undefined) {
        throw new GalleryError(`${what} failed: the version disappeared while Azure applied the tags.`, {
          code: 'VersionDeleted',
          statusCode: 404,
        });
      }
      if (updated.provisioningState !== 'Succeeded') {
        throw new GalleryError(
          `${what} ended in provisioning state ${updated.provisioningState ?? 'Unknown'}. Check the version in the portal and run again.`,
        );
      }
      return { ...(updated.tags ?? merged) };
    } catch (error) {
      throw galleryError(error, what);
    }
  }

  /**
   * Why the stemcell `subject` may not go into its existing definition (feature drift), in one wording for a run
   * and a dry run but for `outcome`; undefined when it fits or the definition is still to be made.
   */
  async definitionRefusal(
    spec: ImageDefinitionSpec,
    subject: string,
    outcome: string,
    existing?: ExistingDefinition,
  ): Promise<string | undefined> {
    const definition = existing ?? (await this.#getImageDefinition(spec.name));
    const drifts = definition === undefined ? [] : definitionDrift(definition, spec);
    return drifts.length === 0 ? undefined : driftRefusal(spec.name, subject, this.#where, drifts, outcome);
  }

  async #getImageDefinition(name: string): Promise<GalleryImage | undefined> {
    const { resourceGroup, galleryName } = this.#options;
    try {
      return await this.#client.galleryImages.get(resourceGroup, galleryName, name);
    } catch (error) {
      // 404 with ParentResourceNotFound means the gallery itself is missing: that must not look like "absent".
      if (httpStatusOf(error) === 404 && errorCodeOf(error) !== 'ParentResourceNotFound') return undefined;
      throw galleryError(error, `Reading image definition ${name} in ${this.#where}`);
    }
  }

  async #readVersion(definitionName: string, versionName: string): Promise<GalleryImageVersion | undefined> {
    const { resourceGroup, galleryName } = this.#options;
    try {
      return await this.#client.galleryImageVersions.get(
        resourceGroup,
        galleryName,
        definitionName,
        versionName,
      );
    } catch (error) {
      if (httpStatusOf(error) === 404) return undefined;
      throw error;
    }
  }

  /** Waits for a write by reading the resource (src/arm-writes.ts), with this client's interval and timeout. */
  async #untilSettled<T>(
    read: () => Promise<T | undefined>,
    settled: (current: T | undefined) => boolean,
    retryAfterMs: number | undefined,
    what: string,
  ): Promise<T | undefined> {
    const { operationTimeoutMs, pollIntervalMs, sleep } = this.#options;
    return untilSettled({
      read,
      settled,
      intervalMs: retryAfterMs ?? positive(pollIntervalMs, DEFAULT_POLL_INTERVAL_MS),
      timeoutMs: positive(operationTimeoutMs, DEFAULT_OPERATION_TIMEOUT_MS),
      what,
      ...(sleep !== undefined ? { sleep } : {}),
    });
  }
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}
