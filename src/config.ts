/**
 * Settings: environment / app settings -> one typed, validated object.
 */

import { tmpdir } from 'node:os';
import { readReplication, readRetention, type LifecycleSettings } from './lifecycle-config.js';
import { REGION_NAME } from './target-regions.js';
import { Secret } from './secret.js';
import { ConfigError, SettingsReader, type Env } from './settings-reader.js';

// Where callers have always found them.
export { Secret, ConfigError };
export type { SettingProblem } from './settings-reader.js';

export interface NotifySettings {
  token: Secret;
  apiUrl: string;
  owner: string;
  repo: string;
  workflow: string;
  ref: string;
}

export interface GalleryNaming {
  /** `BASM_GALLERY_PUBLISHER`, default `bosh`. */
  publisher: string;
  /** Overrides; undefined means "derive as the BOSH Azure CPI does". */
  offer?: string;
  sku?: string;
  imageName?: string;
}

export interface MirrorConfig extends LifecycleSettings {
  subscriptionId: string;
  resourceGroup: string;
  /** Azure region name, e.g. `westeurope`: the gallery's region, where versions are created. */
  region: string;
  storageAccountName: string;
  /** `https://<account>.blob.core.windows.net` or an override; no trailing slash. */
  storageBlobEndpoint: string;
  /** Container holding the VHD page blobs. */
  storageContainer: string;
  galleryName: string;
  /** Client id of a user-assigned managed identity; undefined: DefaultAzureCredential. */
  managedIdentityClientId?: string;
  series: string[];
  gallery: GalleryNaming;
  /** Temp storage for root.vhd and its extent map. */
  workDir: string;
  maxVersionsPerRun: number;
  boshioUrl: string;
  resourceManagerEndpoint: string;
  /** Undefined when BASM_NOTIFY_GITHUB_TOKEN is not set: notifications are off. */
  notify?: NotifySettings;
  /** Parallel page writes per upload. */
  uploadConcurrency: number;
  /** Timeout for one HTTP request without progress (bosh.io), in milliseconds. */
  httpTimeoutMs: number;
  /** Settings that were ignored, for the log (never their values). */
  warnings: string[];
  /**
   * `BASM_ADOPT_UNTAGGED`: take over the untagged versions another tool (the original mirror) made, after
   * verifying them against bosh.io, instead of reporting them.
   */
  adoptUntagged: boolean;
  /** How often the image version's provisioning state is polled, in seconds. */
  versionPollIntervalSeconds: number;
  /** Give up waiting for an image version after this many minutes. */
  versionReadyTimeoutMinutes: number;
  /** A series lock whose holder sent no heartbeat for this long is taken over (seconds). */
  seriesLockStaleSeconds: number;
  /** How long a run waits for a series another run holds before it reports that run (seconds). */
  seriesLockWaitSeconds: number;
}

export const DEFAULT_SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
export const VHD_CONTAINER = 'stemcell';
const MAX_VERSION_POLLS = 10_000;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A bosh.io series becomes a gallery image definition name (1-80 chars: letters, digits, `.`, `_`, `-`). */
export const SERIES_PATTERN = /^[a-z0-9](?:[a-z0-9_.-]{0,78}[a-z0-9])?$/;
/** ARM's `^[-\w\._\(\)]+$` with .NET's Unicode `\w`, 1-90 characters, not ending in `.`. */
const RESOURCE_GROUP = /^[-\p{L}\p{Mn}\p{Nd}\p{Pc}.()]{0,89}[-\p{L}\p{Mn}\p{Nd}\p{Pc}()]$/u;
const STORAGE_ACCOUNT = /^[a-z0-9]{3,24}$/;
const GALLERY = /^[a-zA-Z0-9](?:[a-zA-Z0-9._]{0,78}[a-zA-Z0-9])?$/;
const GALLERY_NAME_PART = /^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{0,78}[a-zA-Z0-9])?$/;
const GITHUB_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const GITHUB_WORKFLOW = /^(?:\d+|[A-Za-z0-9_.-]+\.ya?ml)$/;
const GIT_REF = /^[^\s~^:?*[\\]{1,255}$/;

/**
 * Reads every setting of docs/configuration.md from `env`. Throws one ConfigError that lists
 * every offending variable, before anything touches the network.
 */
export function loadConfig(env: Env = process.env, overrides: { series?: string } = {}): MirrorConfig {
  const r = new SettingsReader(env);
  const target = readAzureTarget(r);
  const series =
    overrides.series !== undefined
      ? readSeries(r, '--series', overrides.series)
      : readSeries(r, 'BASM_STEMCELL_SERIES', DEFAULT_SERIES);
  const gallery = readGalleryNaming(r, series);
  const config: MirrorConfig = {
    ...target,
    storageBlobEndpoint: r.httpsUrl(
      'AZURE_STORAGE_BLOB_ENDPOINT',
      `https://${target.storageAccountName}.blob.core.windows.net`,
    ),
    storageContainer: VHD_CONTAINER,
    series,
    gallery,
    workDir: r.absolutePath('BASM_MOUNTED_DIRECTORY', tmpdir()),
    maxVersionsPerRun: r.integer('BASM_MAX_VERSIONS_PER_RUN', 3, 1, 50),
    boshioUrl: r.httpsUrl('BASM_BOSHIO_URL', 'https://bosh.io'),
    resourceManagerEndpoint: r.httpsUrl('AZURE_RESOURCE_MANAGER_ENDPOINT', 'https://management.azure.com'),
    uploadConcurrency: r.integer('BASM_UPLOAD_CONCURRENCY', 8, 1, 64),
    httpTimeoutMs: r.integer('BASM_HTTP_TIMEOUT_SECONDS', 60, 1, 3600) * 1000,
    versionPollIntervalSeconds: r.integer('BASM_VERSION_POLL_INTERVAL_SECONDS', 30, 1, 3600),
    versionReadyTimeoutMinutes: r.integer('BASM_VERSION_READY_TIMEOUT_MINUTES', 120, 1, 24 * 60),
    adoptUntagged: r.boolean('BASM_ADOPT_UNTAGGED', false),
    ...readRetention(r),
    seriesLockStaleSeconds: r.integer('BASM_SERIES_LOCK_STALE_SECONDS', 900, 1, 24 * 3600),
    seriesLockWaitSeconds: r.integer('BASM_SERIES_LOCK_WAIT_SECONDS', 1200, 0, 24 * 3600),
    ...readReplication(r, target.region),
    warnings: r.warnings,
  };

  const notify = readNotify(r);
  if (notify !== undefined) config.notify = notify;
  checkHistoryBounds(r, config);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/** Comma-separated series (`BASM_STEMCELL_SERIES` or `--series`), each a valid image definition name, none twice. */
function readSeries(r: SettingsReader, name: string, fallback: string): string[] {
  const value = r.text(name) ?? fallback;
  const series = value.split(',').map((s) => s.trim());
  const bad = series.filter((s) => !SERIES_PATTERN.test(s));
  if (bad.length > 0) {
    r.problem(
      name,
      `${bad.map((s) => `"${s}"`).join(', ')} ${bad.length === 1 ? 'is not a' : 'are not'} stemcell series ` +
        `name${bad.length === 1 ? '' : 's'}; expected a comma-separated list of names like ${DEFAULT_SERIES} ` +
        `(lowercase letters, digits, ".", "_", "-"; at most 80 characters)`,
    );
  }
  if (new Set(series).size !== series.length) r.problem(name, `"${value}" names a series twice`);
  return series;
}

/** Where the mirror's Azure resources are, and who it is there. */
function readAzureTarget(r: SettingsReader) {
  const subscriptionId = r.required('AZURE_SUBSCRIPTION_ID', GUID, 'the subscription id (a GUID)');
  const resourceGroup = r.required(
    'AZURE_RESOURCE_GROUP',
    RESOURCE_GROUP,
    'a resource group name (1-90 letters, digits, "_", "-", ".", "(", ")"; not ending in ".")',
  );
  const region = r.required('AZURE_REGION', REGION_NAME, 'an Azure region name such as westeurope');
  const storageAccountName = r.required(
    'AZURE_STORAGE_ACCOUNT_NAME',
    STORAGE_ACCOUNT,
    'a storage account name (3-24 lowercase letters and digits)',
  );
  const galleryName = r.required(
    'AZURE_GALLERY_NAME',
    GALLERY,
    'a Compute Gallery name (1-80 letters, digits, "." and "_", not starting or ending with "." or "_")',
  );
  const managedIdentityClientId = r.optional(
    'AZURE_MANAGED_IDENTITY_ID',
    GUID,
    'the client id (a GUID) of a user-assigned managed identity',
  );
  return {
    subscriptionId,
    resourceGroup,
    region,
    storageAccountName,
    galleryName,
    managedIdentityClientId,
  };
}

/** The image definitions' publisher, offer, SKU and name overrides, refused where Azure would refuse them. */
function readGalleryNaming(r: SettingsReader, series: readonly string[]): GalleryNaming {
  const namePart = 'letters, digits, ".", "_" and "-" (1-80 characters)';
  const gallery: GalleryNaming = {
    publisher: r.optional('BASM_GALLERY_PUBLISHER', GALLERY_NAME_PART, namePart) ?? 'bosh',
  };
  const offer = r.optional('BASM_GALLERY_OFFER', GALLERY_NAME_PART, namePart);
  const sku = r.optional('BASM_GALLERY_SKU', GALLERY_NAME_PART, namePart);
  const imageName = r.optional('BASM_GALLERY_IMAGE_NAME', GALLERY_NAME_PART, namePart);
  if (offer !== undefined) gallery.offer = offer;
  if (sku !== undefined) gallery.sku = sku;
  if (imageName !== undefined) gallery.imageName = imageName;
  if (imageName !== undefined && series.length > 1) {
    r.problem(
      'BASM_GALLERY_IMAGE_NAME',
      'names one image definition, so it cannot be combined with several series',
    );
  }
  // Azure refuses a second image definition with the identifier (publisher, offer, SKU) of another in
  // the gallery. Derived, the offer is the definition name, unique per series and generation.
  if (offer !== undefined && series.length > 1) {
    r.problem(
      'BASM_GALLERY_OFFER',
      `"${offer}" would be the offer of every series' image definition, and with the same SKU (the same ` +
        `generation${sku === undefined ? '' : `, or BASM_GALLERY_SKU "${sku}"`}) Azure refuses every ` +
        `definition after the first (same publisher, offer and SKU); leave it empty (the offer is then ` +
        `the definition name) or mirror one series per deployment`,
    );
  } else if (offer !== undefined && sku !== undefined && imageName === undefined) {
    r.problem(
      'BASM_GALLERY_OFFER',
      `"${offer}" with BASM_GALLERY_SKU "${sku}" fixes the whole identifier, but a gen1 and a gen2 build ` +
        `of ${series[0] ?? 'the series'} are two image definitions, and Azure refuses the second with the ` +
        `same publisher, offer and SKU; also set BASM_GALLERY_IMAGE_NAME (one definition), or leave ` +
        `BASM_GALLERY_OFFER or BASM_GALLERY_SKU empty`,
    );
  }

  return gallery;
}

/** The GitHub dispatch, when a token is set: then every other BASM_NOTIFY_GITHUB_* is required. */
function readNotify(r: SettingsReader): NotifySettings | undefined {
  const token = r.secret('BASM_NOTIFY_GITHUB_TOKEN');
  const apiUrl = r.httpsUrl('BASM_NOTIFY_GITHUB_API_URL', 'https://api.github.com');
  const owner = r.optional('BASM_NOTIFY_GITHUB_OWNER', GITHUB_NAME, 'a GitHub user or organisation name');
  const repo = r.optional('BASM_NOTIFY_GITHUB_REPO', GITHUB_NAME, 'a GitHub repository name');
  const workflow = r.optional(
    'BASM_NOTIFY_GITHUB_WORKFLOW',
    GITHUB_WORKFLOW,
    'a workflow file name such as mirror.yml, or a numeric workflow id',
  );
  const ref = r.optional('BASM_NOTIFY_GITHUB_REF', GIT_REF, 'a branch or tag name such as main');
  if (token === undefined && (owner ?? repo ?? workflow ?? ref) !== undefined) {
    r.warnings.push(
      'BASM_NOTIFY_GITHUB_* are set but BASM_NOTIFY_GITHUB_TOKEN is not: notifications are off',
    );
  }
  if (token !== undefined) {
    const needed = { BASM_NOTIFY_GITHUB_OWNER: owner, BASM_NOTIFY_GITHUB_REPO: repo };
    const more = { BASM_NOTIFY_GITHUB_WORKFLOW: workflow, BASM_NOTIFY_GITHUB_REF: ref };
    for (const [name, value] of Object.entries({ ...needed, ...more })) {
      if (value === undefined) r.problem(name, 'missing; required when BASM_NOTIFY_GITHUB_TOKEN is set');
    }
    // Stryker disable next-line all: without one of them there is a problem above, and any problem throws
    if (owner && repo && workflow && ref) return { token, apiUrl, owner, repo, workflow, ref };
  }

  return undefined;
}

/** Each poll, and each look at a held series, adds to the history every replay reads: keep both bounded. */
function checkHistoryBounds(r: SettingsReader, config: MirrorConfig): void {
  const polls = (config.versionReadyTimeoutMinutes * 60) / config.versionPollIntervalSeconds;
  if (polls > MAX_VERSION_POLLS) {
    r.problem(
      'BASM_VERSION_POLL_INTERVAL_SECONDS',
      `${config.versionPollIntervalSeconds} s with BASM_VERSION_READY_TIMEOUT_MINUTES ${config.versionReadyTimeoutMinutes} ` +
        `means up to ${Math.ceil(polls)} polls; expected at most ${MAX_VERSION_POLLS} (poll less often or wait less)`,
    );
  }
  // Waiting for a series looks at its lock once per poll interval: the same bound on the history.
  const lockChecks = config.seriesLockWaitSeconds / config.versionPollIntervalSeconds;
  if (lockChecks > MAX_VERSION_POLLS) {
    r.problem(
      'BASM_SERIES_LOCK_WAIT_SECONDS',
      `${config.seriesLockWaitSeconds} s with BASM_VERSION_POLL_INTERVAL_SECONDS ${config.versionPollIntervalSeconds} ` +
        `means up to ${Math.ceil(lockChecks)} looks at the series lock; expected at most ${MAX_VERSION_POLLS}`,
    );
  }
}

/** The ARM id of the storage account that holds the VHDs: the image version's `source.storageAccountId`. */
export function storageAccountId(config: MirrorConfig): string {
  return (
    `/subscriptions/${config.subscriptionId}/resourceGroups/${config.resourceGroup}` +
    `/providers/Microsoft.Storage/storageAccounts/${config.storageAccountName}`
  );
}
