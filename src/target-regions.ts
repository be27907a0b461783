/**
 * Where an image version is replicated: the target regions the settings ask for, how far Azure's replication
 * to each has come, and which regions an existing version lacks. Pure, so the settings, the plan, the steps
 * and the orchestrator (which replays) share one set of rules.
 */

/** The storage kinds GalleryRP accepts for an image version's replicas that a stemcell needs. */
export const REPLICA_STORAGE_TYPES = ['Standard_LRS', 'Standard_ZRS', 'Premium_LRS'] as const;
export type ReplicaStorageType = (typeof REPLICA_STORAGE_TYPES)[number];

/**
 * Azure's documented limit on replicas of one image version in one region (the REST spec itself only says
 * int32); a replica serves about 20 concurrent VM creations, so one or two suit a BOSH director.
 */
export const MAX_REGIONAL_REPLICAS = 100;

/** One region an image version is replicated to, with how many replicas it keeps there. */
export interface TargetRegion {
  /** Azure's short name, lower case: `westeurope`. */
  name: string;
  regionalReplicaCount: number;
}

/** A target region as the gallery reports it: its name may be the display name (`West Europe`). */
export interface ReportedTargetRegion {
  name: string;
  regionalReplicaCount?: number;
  storageAccountType?: string;
}

/** Azure's replication of one version to one region (`replicationStatus.summary`). */
export interface RegionReplication {
  name: string;
  /** Unknown, Replicating, Completed or Failed (or a newer state). */
  state: string;
  progress?: number;
  details?: string;
}

/** ARM spells a region `westeurope` in one place and `West Europe` in another: both are one region. */
export function regionKey(name: string | undefined): string {
  // Stryker disable next-line Regex: removing each space one at a time removes a run of them too
  return (name ?? '').replace(/\s+/g, '').toLowerCase();
}

/** An Azure region name in its short form (`westeurope`): AZURE_REGION and each BASM_TARGET_REGIONS entry. */
export const REGION_NAME = /^[a-z][a-z0-9]{1,39}$/;

/**
 * Parses `westeurope=2,eastus` (BASM_TARGET_REGIONS): each region once, in Azure's short form (case and
 * spaces are dropped, as Azure does: `West Europe` is `westeurope`), each count from 1 to
 * MAX_REGIONAL_REPLICAS (default 1), and the gallery's own region among them (Azure requires it). Returns
 * the regions, or what is wrong with the text.
 */
export function parseTargetRegions(
  text: string,
  galleryRegion: string,
): { regions: TargetRegion[] } | { problems: string[] } {
  const problems: string[] = [];
  const regions: TargetRegion[] = [];
  for (const entry of text.split(',')) {
    const match = /^([^=]*?)(?:=(.*))?$/.exec(entry.trim());
    const name = regionKey(match?.[1]);
    const count = match?.[2]?.trim();
    if (!REGION_NAME.test(name)) {
      problems.push(`"${entry.trim()}" is not a region name such as westeurope`);
      continue;
    }
    if (
      count !== undefined &&
      (!/^\d+$/.test(count) || Number(count) < 1 || Number(count) > MAX_REGIONAL_REPLICAS)
    ) {
      problems.push(
        `"${entry.trim()}": the replica count must be a whole number from 1 to ${MAX_REGIONAL_REPLICAS}`,
      );
      continue;
    }
    if (regions.some((r) => r.name === name)) {
      problems.push(`names ${name} twice`);
      continue;
    }
    regions.push({ name, regionalReplicaCount: count === undefined ? 1 : Number(count) });
  }
  if (problems.length === 0 && !regions.some((r) => r.name === regionKey(galleryRegion))) {
    problems.push(`must include AZURE_REGION ${galleryRegion}, the gallery's region (Azure requires it)`);
  }
  return problems.length > 0 ? { problems } : { regions };
}

/** What an existing version lacks of the wanted regions: regions to add, and regions whose replicas to raise. */
export interface TargetRegionChange {
  added: string[];
  raised: Array<{ name: string; from: number; to: number }>;
}

/**
 * What `current` (the version's target regions) lacks of `wanted`. Never a removal: a region the version has
 * and the settings no longer name stays (a director may use it), and so do replicas above the wanted count.
 */
export function targetRegionChange(
  current: readonly ReportedTargetRegion[],
  wanted: readonly TargetRegion[],
): TargetRegionChange {
  const change: TargetRegionChange = { added: [], raised: [] };
  for (const region of wanted) {
    const existing = current.find((c) => regionKey(c.name) === region.name);
    if (existing === undefined) change.added.push(region.name);
    else if ((existing.regionalReplicaCount ?? 1) < region.regionalReplicaCount) {
      change.raised.push({
        name: region.name,
        from: existing.regionalReplicaCount ?? 1,
        to: region.regionalReplicaCount,
      });
    }
  }
  return change;
}

export function isNoChange(change: TargetRegionChange): boolean {
  return change.added.length === 0 && change.raised.length === 0;
}

/** The result's `reason`: `adds eastus`, `adds eastus; westeurope 1 -> 2 replicas`. */
export function describeChange(change: TargetRegionChange): string {
  const parts: string[] = [];
  if (change.added.length > 0) parts.push(`adds ${change.added.join(', ')}`);
  for (const r of change.raised) parts.push(`${r.name} ${r.from} -> ${r.to} replicas`);
  return parts.join('; ');
}

/**
 * The target regions to send for an extension: every current region kept as it is (its storage type cannot
 * change), raised where the settings want more replicas, then the new regions with `storageAccountType`.
 */
export function extendedTargetRegions(
  current: readonly ReportedTargetRegion[],
  wanted: readonly TargetRegion[],
  storageAccountType: ReplicaStorageType,
): ReportedTargetRegion[] {
  const kept = current.map((c) => {
    const want = wanted.find((w) => w.name === regionKey(c.name));
    const count = Math.max(c.regionalReplicaCount ?? 1, want?.regionalReplicaCount ?? 0);
    return { ...c, regionalReplicaCount: count };
  });
  const added = wanted
    .filter((w) => !current.some((c) => regionKey(c.name) === w.name))
    .map((w) => ({ name: w.name, regionalReplicaCount: w.regionalReplicaCount, storageAccountType }));
  return [...kept, ...added];
}

/** Where replication stands: done everywhere, or which regions are still going and which failed. */
export interface ReplicationProgress {
  complete: boolean;
  pending: string[];
  failed: Array<{ name: string; details?: string }>;
}

/**
 * Replication is complete when Azure reports every target region Completed. No regions reported (an answer
 * without `replicationStatus`) is not a reason to wait forever: the provisioning state decides alone then.
 */
export function replicationProgress(regions: readonly RegionReplication[] | undefined): ReplicationProgress {
  const all = regions ?? [];
  const failed = all
    .filter((r) => r.state === 'Failed')
    .map((r) => (r.details ? { name: r.name, details: r.details } : { name: r.name }));
  const pending = all.filter((r) => r.state !== 'Completed' && r.state !== 'Failed').map((r) => r.name);
  return { complete: failed.length === 0 && pending.length === 0, pending, failed };
}

/** `eastus (Azure's details); westus` for a failure message. */
export function describeFailedRegions(failed: ReplicationProgress['failed']): string {
  return failed.map((f) => (f.details ? `${f.name} (${f.details})` : f.name)).join('; ');
}

/** `westeurope Completed, eastus Replicating 40%` for progress lines. */
export function describeReplication(regions: readonly RegionReplication[]): string {
  return regions
    .map(
      (r) =>
        `${r.name} ${r.state}${r.state === 'Replicating' && r.progress !== undefined ? ` ${r.progress}%` : ''}`,
    )
    .join(', ');
}
