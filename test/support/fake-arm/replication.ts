import type { ArmErrorBody } from './arm-http.js';
import { asObject, sameRegion } from './json.js';
import type { Json } from './json.js';

/** One region's replica state, as GalleryRP reports it under `$expand=ReplicationStatus`. */
interface RegionState {
  /** As the version's `targetRegions` spells it. */
  name: string;
  state: 'Replicating' | 'Completed' | 'Failed';
  details: string;
  /** `$expand=ReplicationStatus` reads left until a region other than the gallery's completes. */
  readsLeft: number;
  replicas: number;
}

/**
 * Replication of each image version to its target regions. A write starts replication to each region that is
 * new (or whose replica count rose); the gallery's own region completes with the operation (the source is
 * copied there), the others after `readsUntilDone` more reads of the version with `$expand=ReplicationStatus`,
 * so a client sees `Succeeded` while a region still replicates and must look at every region. A test can make
 * the next write fail in one region (`failNext`): that region reports `Failed` with the error's message as its
 * `details`, and the operation (and the version) end `Failed`, as the az CLI reports it ("The failing regions'
 * details are as follows", Azure/azure-cli#15539).
 */
export class Replication {
  private readonly regions = new Map<string, RegionState[]>();
  private readonly failures = new Map<string, { region: string; error: ArmErrorBody }>();
  readsUntilDone = 0;

  constructor(private readonly home: string) {}

  failNext(versionKey: string, region: string, error: ArmErrorBody): void {
    this.failures.set(versionKey.toLowerCase(), { region, error });
  }

  forget(versionKey: string): void {
    this.regions.delete(versionKey.toLowerCase());
  }

  /** A write was accepted with these target regions: new regions (and more replicas) start replicating. */
  written(versionKey: string, targetRegions: readonly Json[]): void {
    const before = this.regions.get(versionKey.toLowerCase()) ?? [];
    this.regions.set(
      versionKey.toLowerCase(),
      targetRegions.map((target) => {
        const name = String(target['name']);
        const replicas = Number(target['regionalReplicaCount'] ?? 1);
        const known = before.find((r) => sameRegion(r.name, name));
        if (known !== undefined && known.state === 'Completed' && known.replicas >= replicas) {
          return { ...known, name, replicas };
        }
        return { name, state: 'Replicating', details: '', readsLeft: this.readsUntilDone, replicas };
      }),
    );
  }

  /**
   * The write's operation ends: the gallery's region has its replica, and the regions with no reads to wait
   * for complete too; the error of a failure injected for the version, if any.
   */
  settle(versionKey: string): ArmErrorBody | undefined {
    const regions = this.regions.get(versionKey.toLowerCase()) ?? [];
    const failure = this.failures.get(versionKey.toLowerCase());
    this.failures.delete(versionKey.toLowerCase());
    for (const region of regions) {
      if (failure !== undefined && sameRegion(region.name, failure.region)) {
        Object.assign(region, { state: 'Failed', details: failure.error.message });
      } else if (
        region.state === 'Replicating' &&
        (sameRegion(region.name, this.home) || region.readsLeft === 0)
      ) {
        region.state = 'Completed';
      }
    }
    return failure?.error;
  }

  /** The source was refused: no region gets a replica, each says why. */
  failEverywhere(versionKey: string, error: ArmErrorBody): void {
    for (const region of this.regions.get(versionKey.toLowerCase()) ?? []) {
      Object.assign(region, { state: 'Failed', details: error.message });
    }
  }

  /** The `$expand=ReplicationStatus` view of `version`; each such read moves replication on. */
  view(versionKey: string, version: Json): Json {
    const properties = asObject(version['properties']) ?? {};
    const provisioning = properties['provisioningState'];
    const regions = this.regions.get(versionKey.toLowerCase()) ?? this.derived(properties);
    if (provisioning === 'Succeeded' || provisioning === 'Updating') {
      for (const region of regions) {
        if (region.state !== 'Replicating' || provisioning !== 'Succeeded') continue;
        region.readsLeft = Math.max(0, region.readsLeft - 1);
        if (region.readsLeft === 0) region.state = 'Completed';
      }
    }
    const states = regions.map((r) => r.state);
    const aggregatedState = states.includes('Failed')
      ? 'Failed'
      : states.includes('Replicating')
        ? 'InProgress'
        : states.length > 0
          ? 'Completed'
          : 'Unknown';
    return {
      ...version,
      properties: {
        ...properties,
        replicationStatus: {
          aggregatedState,
          summary: regions.map((region) => ({
            region: region.name,
            state: region.state,
            details: region.details,
            progress: region.state === 'Completed' ? 100 : region.state === 'Replicating' ? 40 : 0,
          })),
        },
      },
    };
  }

  /** A version a test stored directly: its regions follow its provisioning state. */
  private derived(properties: Json): RegionState[] {
    const state = properties['provisioningState'];
    const regionState = state === 'Succeeded' ? 'Completed' : state === 'Failed' ? 'Failed' : 'Replicating';
    const targets =
      (asObject(properties['publishingProfile'])?.['targetRegions'] as Json[] | undefined) ?? [];
    return targets.map((target) => ({
      name: String(target['name']),
      state: regionState,
      details: '',
      readsLeft: 0,
      replicas: 1,
    }));
  }
}
