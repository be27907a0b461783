/**
 * Settings: environment / app settings -> one typed, validated object.
 */

import { tmpdir } from 'node:os';
import { isAbsolute } from 'node:path';
import { Secret } from './secret.js';
import {
  REPLICA_STORAGE_TYPES,
  parseTargetRegions,
  type ReplicaStorageType,
  type TargetRegion,
} from './target-regions.js';
import { isStemcellVersion } from './versions.js';

// Where callers have always found it.
export { Secret };

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

export interface MirrorConfig {
  subscriptionId: string;
  resourceGroup: string;
  /** Azure region name, e.g. `westeurope`: the gallery's region, where versions are created. */
  region: string;
  /** `BASM_TARGET_REGIONS`: where each version is replicated, `region` among them. */
  targetRegions: TargetRegion[];
  /** `BASM_STORAGE_ACCOUNT_TYPE`: the storage of a version's replicas. */
  storageAccountType: ReplicaStorageType;
  /** `BASM_END_OF_LIFE_DAYS`: a new version's endOfLifeDate is its creation plus this many days; undefined: none. */
  endOfLifeDays?: number;
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
  /** BASM_SKIP_VERSIONS, BASM_KEEP_VERSIONS (0: keep all), BASM_DELETE_SOURCE_BLOB: docs/configuration.md. */
  skipVersions: string[];
  keepVersions: number;
  deleteSourceBlob: boolean;
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

/** One offending setting: which variable, and what it expects. */
export interface SettingProblem {
  name: string;
  message: string;
}

/** "1 flag", "2 settings": a command-line flag (`--series`) is not a setting, so it is not called one. */
function countOf(problems: SettingProblem[], flags: boolean): string | undefined {
  const n = problems.filter((p) => p.name.startsWith('--') === flags).length;
  if (n === 0) return undefined;
  return `${n} ${flags ? 'flag' : 'setting'}${n === 1 ? '' : 's'}`;
}

export class ConfigError extends Error {
  constructor(readonly problems: SettingProblem[]) {
    const flags = countOf(problems, true);
    const settings = countOf(problems, false);
    const what =
      flags === undefined
        ? 'configuration'
        : settings === undefined
          ? 'command line'
          : 'command line and configuration';
    super(
      `Invalid ${what} (${[flags, settings].filter(Boolean).join(', ')}):\n` +
        problems.map((p) => `  ${p.name}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A bosh.io series becomes a gallery image definition name (1-80 chars: letters, digits, `.`, `_`, `-`). */
export const SERIES_PATTERN = /^[a-z0-9](?:[a-z0-9_.-]{0,78}[a-z0-9])?$/;
/** ARM's `^[-\w\._\(\)]+$` with .NET's Unicode `\w`, 1-90 characters, not ending in `.`. */
const RESOURCE_GROUP = /^[-\p{L}\p{Mn}\p{Nd}\p{Pc}.()]{0,89}[-\p{L}\p{Mn}\p{Nd}\p{Pc}()]$/u;
const REGION = /^[a-z][a-z0-9]{1,39}$/;
const STORAGE_ACCOUNT = /^[a-z0-9]{3,24}$/;
const GALLERY = /^[a-zA-Z0-9](?:[a-zA-Z0-9._]{0,78}[a-zA-Z0-9])?$/;
const GALLERY_NAME_PART = /^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{0,78}[a-zA-Z0-9])?$/;
const GITHUB_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const GITHUB_WORKFLOW = /^(?:\d+|[A-Za-z0-9_.-]+\.ya?ml)$/;
const GIT_REF = /^[^\s~^:?*[\\]{1,255}$/;

/** Collects every problem instead of stopping at the first, so one run shows everything to fix. */
class SettingsReader {
  readonly problems: SettingProblem[] = [];
  constructor(private readonly env: Env) {}

  readonly warnings: string[] = [];

  private raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    // App Service passes an unresolvable Key Vault reference through as its own text (secret absent,
    // or not readable by the app's identity): that is "not set", never a value to use.
    // Stryker disable next-line ConditionalExpression: test(undefined) looks at "undefined", which never matches
    if (value !== undefined && /^@Microsoft\.KeyVault\(/i.test(value)) {
      this.warnings.push(
        `${name}: Key Vault reference not resolved (secret absent or not readable); treated as not set`,
      );
      return undefined;
    }
    return value === '' ? undefined : value;
  }

  /** The setting as given (trimmed), for a reader that checks it itself. */
  text(name: string): string | undefined {
    return this.raw(name);
  }

  problem(name: string, message: string): void {
    this.problems.push({ name, message });
  }

  required(name: string, pattern: RegExp, expects: string): string {
    const value = this.raw(name);
    if (value === undefined) {
      this.problem(name, `missing; expected ${expects}`);
      return '';
    }
    if (!pattern.test(value)) this.problem(name, `"${value}" is not valid; expected ${expects}`);
    return value;
  }

  optional(name: string, pattern: RegExp, expects: string): string | undefined {
    const value = this.raw(name);
    if (value !== undefined && !pattern.test(value)) {
      this.problem(name, `"${value}" is not valid; expected ${expects}`);
    }
    return value;
  }

  secret(name: string): Secret | undefined {
    const value = this.raw(name);
    return value === undefined ? undefined : new Secret(value);
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (/^true$/i.test(value)) return true;
    if (/^false$/i.test(value)) return false;
    this.problem(name, `"${value}" is not valid; expected true or false`);
    return fallback;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      this.problem(name, `"${value}" is not valid; expected a whole number from ${min} to ${max}`);
      return fallback;
    }
    return Number(value);
  }

  httpsUrl(name: string, fallback: string): string {
    const value = this.raw(name) ?? fallback;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      this.problem(name, `is not a URL; expected an https:// URL`);
      return value;
    }
    // Shown without user info, query or fragment: those may hold credentials.
    const shown = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
    if (url.protocol !== 'https:') {
      this.problem(name, `"${shown}" uses ${url.protocol.replace(':', '')}; expected an https:// URL`);
    }
    if (url.search || url.hash || url.username || url.password) {
      this.problem(name, `"${shown}" must not carry a query, fragment or credentials`);
    }
    return value.replace(/\/+$/, '');
  }

  seriesList(name: string, fallback: string): string[] {
    const value = this.raw(name) ?? fallback;
    const series = value.split(',').map((s) => s.trim());
    const bad = series.filter((s) => !SERIES_PATTERN.test(s));
    if (bad.length > 0) {
      this.problem(
        name,
        `${bad.map((s) => `"${s}"`).join(', ')} ${bad.length === 1 ? 'is not a' : 'are not'} stemcell series ` +
          `name${bad.length === 1 ? '' : 's'}; expected a comma-separated list of names like ${DEFAULT_SERIES} ` +
          `(lowercase letters, digits, ".", "_", "-"; at most 80 characters)`,
      );
    }
    if (new Set(series).size !== series.length) this.problem(name, `"${value}" names a series twice`);
    return series;
  }

  /** Comma-separated stemcell versions (`1.918,1.926`); empty or unset: none. */
  versionList(name: string): string[] {
    const versions = (this.raw(name) ?? '')
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean);
    const bad = versions.filter((v) => !isStemcellVersion(v)).map((v) => `"${v}"`);
    const what = bad.length === 1 ? 'is not a stemcell version' : 'are not stemcell versions';
    const expects = 'expected a comma-separated list of bosh.io versions such as 1.918,1.926';
    if (bad.length > 0) this.problem(name, `${bad.join(', ')} ${what}; ${expects}`);
    return versions;
  }

  absolutePath(name: string, fallback: string): string {
    const value = this.raw(name) ?? fallback;
    if (!isAbsolute(value))
      this.problem(name, `"${value}" is not an absolute path; expected a directory path`);
    return value;
  }
}

/**
 * Reads every setting of docs/configuration.md from `env`. Throws one ConfigError that lists
 * every offending variable, before anything touches the network.
 */
export function loadConfig(env: Env = process.env, overrides: { series?: string } = {}): MirrorConfig {
  const r = new SettingsReader(env);
  const target = readAzureTarget(r);
  const series =
    overrides.series !== undefined
      ? r.seriesList('--series', overrides.series)
      : r.seriesList('BASM_STEMCELL_SERIES', DEFAULT_SERIES);
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
    targetRegions: [],
    storageAccountType: 'Standard_LRS',
    workDir: r.absolutePath('BASM_MOUNTED_DIRECTORY', tmpdir()),
    maxVersionsPerRun: r.integer('BASM_MAX_VERSIONS_PER_RUN', 3, 1, 50),
    boshioUrl: r.httpsUrl('BASM_BOSHIO_URL', 'https://bosh.io'),
    resourceManagerEndpoint: r.httpsUrl('AZURE_RESOURCE_MANAGER_ENDPOINT', 'https://management.azure.com'),
    uploadConcurrency: r.integer('BASM_UPLOAD_CONCURRENCY', 8, 1, 64),
    httpTimeoutMs: r.integer('BASM_HTTP_TIMEOUT_SECONDS', 60, 1, 3600) * 1000,
    versionPollIntervalSeconds: r.integer('BASM_VERSION_POLL_INTERVAL_SECONDS', 30, 1, 3600),
    versionReadyTimeoutMinutes: r.integer('BASM_VERSION_READY_TIMEOUT_MINUTES', 120, 1, 24 * 60),
    adoptUntagged: r.boolean('BASM_ADOPT_UNTAGGED', false),
    skipVersions: r.versionList('BASM_SKIP_VERSIONS'),
    keepVersions: r.integer('BASM_KEEP_VERSIONS', 0, 0, 1000),
    deleteSourceBlob: r.boolean('BASM_DELETE_SOURCE_BLOB', false),
    seriesLockStaleSeconds: r.integer('BASM_SERIES_LOCK_STALE_SECONDS', 900, 1, 24 * 3600),
    seriesLockWaitSeconds: r.integer('BASM_SERIES_LOCK_WAIT_SECONDS', 1200, 0, 24 * 3600),
    warnings: r.warnings,
  };

  Object.assign(config, readReplication(r, target.region));
  const notify = readNotify(r);
  if (notify !== undefined) config.notify = notify;
  checkHistoryBounds(r, config);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/** Where the mirror's Azure resources are, and who it is there. */
function readAzureTarget(r: SettingsReader) {
  const subscriptionId = r.required('AZURE_SUBSCRIPTION_ID', GUID, 'the subscription id (a GUID)');
  const resourceGroup = r.required(
    'AZURE_RESOURCE_GROUP',
    RESOURCE_GROUP,
    'a resource group name (1-90 letters, digits, "_", "-", ".", "(", ")"; not ending in ".")',
  );
  const region = r.required('AZURE_REGION', REGION, 'an Azure region name such as westeurope');
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

/** Where versions are replicated, on what storage, and for how long they are meant to be used. */
function readReplication(
  r: SettingsReader,
  region: string,
): Pick<MirrorConfig, 'targetRegions' | 'storageAccountType' | 'endOfLifeDays'> {
  const name = 'BASM_TARGET_REGIONS';
  const text = r.text(name) ?? region;
  let targetRegions: TargetRegion[] = [{ name: region, regionalReplicaCount: 1 }];
  // A bad AZURE_REGION is reported on its own; the list is only checked against a valid one.
  if (REGION.test(region)) {
    const parsed = parseTargetRegions(text, region);
    if ('problems' in parsed) {
      r.problem(
        name,
        `${parsed.problems.join('; ')}; expected comma-separated regions, each with an optional replica count, ` +
          `such as ${region}=2,eastus`,
      );
    } else targetRegions = parsed.regions;
  }
  const types = REPLICA_STORAGE_TYPES.join(', ');
  const typeText = r.optional(
    'BASM_STORAGE_ACCOUNT_TYPE',
    new RegExp(`^(?:${types.replace(/, /g, '|')})$`),
    types,
  );
  const storageAccountType = REPLICA_STORAGE_TYPES.find((t) => t === typeText) ?? 'Standard_LRS';
  const days = r.integer('BASM_END_OF_LIFE_DAYS', 0, 1, 36_500);
  return { targetRegions, storageAccountType, ...(days > 0 ? { endOfLifeDays: days } : {}) };
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
