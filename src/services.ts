/**
 * What every runner (the CLI, the timer, the activities) sets up from the configuration: clients for the
 * configured Azure resources, the monitor settings, and the warnings an operator should see once.
 */

import type { TokenCredential } from '@azure/identity';
import { ContainerClient } from '@azure/storage-blob';
import type { MirrorConfig } from './config.js';
import { storageAccountId } from './config.js';
import { createAzureCredential } from './credentials.js';
import { ComputeGallery, type ComputeGalleryOptions } from './gallery.js';
import { NotificationRecords } from './notification-record.js';
import { SeriesLocks } from './series-lock.js';
import type { MonitorSettings, SeriesLockWait } from './workflow.js';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  /** What an operator rarely needs (a credential chain's answers): the CLI shows it with `--verbose`. */
  detail?(message: string): void;
}

export interface ProgressEvent {
  series: string;
  version: string;
  phase: 'download' | 'upload';
  bytes: number;
  total?: number;
}

export interface MirrorServices {
  config: MirrorConfig;
  gallery: ComputeGallery;
  vhdContainer: ContainerClient;
  /** One run per series, whichever runner: leases in the VHD container. */
  seriesLocks: SeriesLocks;
  /** Notifications whose tag Azure refused, recorded in the VHD container. */
  notificationRecords: NotificationRecords;
  log: Logger;
  onProgress?: (event: ProgressEvent) => void;
}

/** The configured gallery, seen through `credential`. */
export function computeGalleryFor(
  config: MirrorConfig,
  credential: TokenCredential,
  options: Pick<ComputeGalleryOptions, 'pollIntervalMs'> = {},
): ComputeGallery {
  return new ComputeGallery({
    subscriptionId: config.subscriptionId,
    resourceGroup: config.resourceGroup,
    galleryName: config.galleryName,
    region: config.region,
    publishing: {
      targetRegions: config.targetRegions,
      storageAccountType: config.storageAccountType,
      ...(config.endOfLifeDays !== undefined ? { endOfLifeDays: config.endOfLifeDays } : {}),
    },
    resourceManagerEndpoint: config.resourceManagerEndpoint,
    storageAccountId: storageAccountId(config),
    credential,
    requestTimeoutMs: config.httpTimeoutMs,
    ...options,
  });
}

/** Clients for the configured Azure resources, authenticated by managed identity (no keys). */
export function createMirrorServices(
  config: MirrorConfig,
  log: Logger,
  onProgress?: (event: ProgressEvent) => void,
): MirrorServices {
  const credential = createAzureCredential(config.managedIdentityClientId);
  const gallery = computeGalleryFor(config, credential);
  const vhdContainer = new ContainerClient(
    `${config.storageBlobEndpoint}/${config.storageContainer}`,
    credential,
  );
  const services: MirrorServices = {
    config,
    gallery,
    vhdContainer,
    seriesLocks: new SeriesLocks({
      container: vhdContainer,
      staleAfterSeconds: config.seriesLockStaleSeconds,
    }),
    notificationRecords: new NotificationRecords(vhdContainer),
    log,
  };
  if (onProgress) services.onProgress = onProgress;
  return services;
}

/** How often and for how long a new image version is polled, as the settings say. */
export function monitorSettings(config: MirrorConfig): MonitorSettings {
  return {
    pollIntervalSeconds: config.versionPollIntervalSeconds,
    deadlineMinutes: config.versionReadyTimeoutMinutes,
  };
}

/** How long a run waits for a series another run holds, and how often it looks, as the settings say. */
export function seriesLockWait(config: MirrorConfig): SeriesLockWait {
  return {
    waitSeconds: config.seriesLockWaitSeconds,
    pollIntervalSeconds: config.versionPollIntervalSeconds,
  };
}

/**
 * The settings an operator should know about: accepted with a warning, or notifications off. Said once per
 * process (or timer run), not once per version; a dry run notifies nobody, so it does not mention it.
 */
export function announceSettings(
  config: MirrorConfig,
  log: Logger,
  options: { dryRun?: boolean } = {},
): void {
  for (const warning of config.warnings) log.warn(warning);
  const replication = replicationSummary(config);
  if (replication !== undefined) log.info(replication);
  if (config.skipVersions.length > 0)
    log.info(`never mirrored (BASM_SKIP_VERSIONS): ${config.skipVersions.join(', ')}`);
  if (config.keepVersions > 0) {
    log.info(
      `retention: keeps the newest ${config.keepVersions} versions the mirror made per series (BASM_KEEP_VERSIONS)`,
    );
  }
  if (config.deleteSourceBlob)
    log.info('source blobs are deleted once their version is Succeeded (BASM_DELETE_SOURCE_BLOB)');
  if (!config.notify && !options.dryRun)
    log.info('notifications are off: BASM_NOTIFY_GITHUB_TOKEN is not set');
}

/** Where new versions go, when that is more than the gallery's region with one Standard_LRS replica. */
function replicationSummary(config: MirrorConfig): string | undefined {
  const { targetRegions, storageAccountType, endOfLifeDays } = config;
  const plain =
    targetRegions.length === 1 &&
    targetRegions[0]?.regionalReplicaCount === 1 &&
    storageAccountType === 'Standard_LRS';
  if (plain && endOfLifeDays === undefined) return undefined;
  const regions = targetRegions.map((r) => `${r.name} (${r.regionalReplicaCount})`).join(', ');
  const endOfLife = endOfLifeDays !== undefined ? `, end of life ${endOfLifeDays} days after creation` : '';
  return `versions are replicated to ${regions} on ${storageAccountType}${endOfLife}`;
}
