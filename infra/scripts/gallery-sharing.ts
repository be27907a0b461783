/**
 * azd postprovision hook, after the app package: shares the gallery as BASM_GALLERY_SHARING asks.
 *
 * The Bicep sets the gallery's `sharingProfile.permissions` (Groups or Community) and the community publisher
 * fields; GalleryRP's `sharingProfile.groups` is read-only in a PUT, so the groups are added (and those no longer
 * listed removed), and a community gallery is enabled, through the gallery's `share` action
 * (GallerySharingProfile_Update). Azure lets only a role with `Microsoft.Compute/galleries/share/action` call it:
 * whoever runs azd (Owner or Contributor), never the app's identity, whose Compute Gallery Artifacts Publisher
 * role excludes it. Signed in as whoever ran `azd auth login`; reads the azd environment. With `--check` (the
 * preprovision hook) it only checks the settings.
 */
import { pathToFileURL } from 'node:url';
import { ComputeManagementClient } from '@azure/arm-compute';
import type { SharingProfileGroup, SharingUpdate } from '@azure/arm-compute';
import { AzureDeveloperCliCredential, type TokenCredential } from '@azure/identity';

export type GallerySharingMode = 'none' | 'groups' | 'community';

export interface GallerySharingSettings {
  mode: GallerySharingMode;
  subscriptions: string[];
  tenants: string[];
}

const MODES: readonly GallerySharingMode[] = ['none', 'groups', 'community'];
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COMMUNITY_FIELDS = [
  'BASM_GALLERY_COMMUNITY_PUBLISHER_URI',
  'BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT',
  'BASM_GALLERY_COMMUNITY_EULA',
  'BASM_GALLERY_COMMUNITY_PUBLIC_NAME_PREFIX',
] as const;

function idList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
}

/** The sharing settings, or one Error naming every offending variable and what it expects. */
export function gallerySharingSettings(
  env: Readonly<Record<string, string | undefined>>,
): GallerySharingSettings {
  const problems: string[] = [];
  const raw = (env['BASM_GALLERY_SHARING'] ?? '').trim().toLowerCase() || 'none';
  const mode = MODES.find((candidate) => candidate === raw);
  if (mode === undefined)
    problems.push(`BASM_GALLERY_SHARING is "${raw}"; expected none, groups or community`);
  const subscriptions = idList(env['BASM_GALLERY_SHARE_SUBSCRIPTIONS']);
  const tenants = idList(env['BASM_GALLERY_SHARE_TENANTS']);
  for (const [name, ids] of [
    ['BASM_GALLERY_SHARE_SUBSCRIPTIONS', subscriptions],
    ['BASM_GALLERY_SHARE_TENANTS', tenants],
  ] as const) {
    const bad = ids.filter((id) => !GUID.test(id));
    if (bad.length > 0) problems.push(`${name} has ${bad.join(', ')}; expected comma-separated GUIDs`);
    if (ids.length > 0 && mode !== undefined && mode !== 'groups') {
      problems.push(`${name} is set but BASM_GALLERY_SHARING is ${mode}; it applies to groups only`);
    }
  }
  if (mode === 'groups' && subscriptions.length === 0 && tenants.length === 0) {
    problems.push(
      'BASM_GALLERY_SHARING is groups but BASM_GALLERY_SHARE_SUBSCRIPTIONS and BASM_GALLERY_SHARE_TENANTS are empty; expected at least one id',
    );
  }
  if (mode === 'community') {
    const missing = COMMUNITY_FIELDS.filter((name) => (env[name] ?? '').trim() === '');
    if (missing.length > 0) {
      problems.push(
        `BASM_GALLERY_SHARING is community but ${missing.join(', ')} empty; a community gallery needs all four`,
      );
    }
    const uri = (env['BASM_GALLERY_COMMUNITY_PUBLISHER_URI'] ?? '').trim();
    if (uri !== '' && !/^https:\/\/[^\s/]+/.test(uri)) {
      problems.push(`BASM_GALLERY_COMMUNITY_PUBLISHER_URI is "${uri}"; expected an https:// URL`);
    }
    const contact = (env['BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT'] ?? '').trim();
    if (contact !== '' && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(contact)) {
      problems.push(`BASM_GALLERY_COMMUNITY_PUBLISHER_CONTACT is "${contact}"; expected an e-mail address`);
    }
  }
  if (problems.length > 0 || mode === undefined) {
    throw new Error(`Gallery sharing settings are invalid:\n- ${problems.join('\n- ')}`);
  }
  return { mode, subscriptions, tenants };
}

/** What the gallery reports of its sharing (a GET with `$expand=SharingProfile/Groups`). */
export interface CurrentSharing {
  permissions?: string;
  groups?: SharingProfileGroup[];
  communityGalleryEnabled?: boolean;
}

const sameId = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
const GROUP_TYPES = ['Subscriptions', 'AADTenants'] as const;

/** The `share` calls that bring the gallery from `current` to `settings`, in order; [] when it is there already. */
export function sharingUpdates(settings: GallerySharingSettings, current: CurrentSharing): SharingUpdate[] {
  if (settings.mode === 'community') {
    return current.communityGalleryEnabled === true ? [] : [{ operationType: 'EnableCommunity' }];
  }
  if (settings.mode === 'none') return [];
  const wantedOf = (type: string): string[] =>
    type === 'Subscriptions' ? settings.subscriptions : settings.tenants;
  const sharedOf = (type: string): string[] =>
    (current.groups ?? []).filter((group) => group.type === type).flatMap((group) => group.ids ?? []);
  const groupsWhere = (idsOf: (type: string) => string[], keep: (type: string, id: string) => boolean) =>
    GROUP_TYPES.map((type) => ({ type, ids: idsOf(type).filter((id) => keep(type, id)) })).filter(
      (group) => group.ids.length > 0,
    );
  const removals = groupsWhere(sharedOf, (type, id) => !wantedOf(type).some((w) => sameId(w, id)));
  const additions = groupsWhere(wantedOf, (type, id) => !sharedOf(type).some((s) => sameId(s, id)));
  const updates: SharingUpdate[] = [];
  if (removals.length > 0) updates.push({ operationType: 'Remove', groups: removals });
  if (additions.length > 0) updates.push({ operationType: 'Add', groups: additions });
  return updates;
}

/**
 * Reads the gallery's sharing and sends the `share` calls it needs; returns them. With `none`, sends nothing
 * but returns a warning when the gallery is still shared (turning sharing off is the operator's call: `az sig
 * share reset`).
 */
export async function shareGallery(
  client: ComputeManagementClient,
  target: { resourceGroup: string; galleryName: string },
  settings: GallerySharingSettings,
): Promise<{ updates: SharingUpdate[]; warning?: string }> {
  const gallery = await client.galleries.get(target.resourceGroup, target.galleryName, {
    expand: 'SharingProfile/Groups',
  });
  const profile = gallery.sharingProfile;
  const current: CurrentSharing = {
    ...(profile?.permissions !== undefined ? { permissions: profile.permissions } : {}),
    ...(profile?.groups !== undefined ? { groups: profile.groups } : {}),
    ...(profile?.communityGalleryInfo?.communityGalleryEnabled !== undefined
      ? { communityGalleryEnabled: profile.communityGalleryInfo.communityGalleryEnabled }
      : {}),
  };
  const updates = sharingUpdates(settings, current);
  for (const update of updates) {
    await client.gallerySharingProfile.update(target.resourceGroup, target.galleryName, update);
  }
  if (settings.mode === 'none' && current.permissions !== undefined && current.permissions !== 'Private') {
    return {
      updates,
      warning:
        `Gallery ${target.galleryName} is still shared (${current.permissions}) although BASM_GALLERY_SHARING is none: ` +
        `stop sharing with az sig share reset --resource-group ${target.resourceGroup} --gallery-name ${target.galleryName}`,
    };
  }
  return { updates };
}

/** The ARM client the hook uses: the azd login, on the cloud the deployment went to. */
export function computeClient(
  credential: TokenCredential,
  subscriptionId: string,
  resourceManagerEndpoint: string,
): ComputeManagementClient {
  const endpoint = resourceManagerEndpoint.replace(/\/+$/, '');
  return new ComputeManagementClient(credential, subscriptionId, {
    endpoint,
    credentials: { scopes: [`${endpoint}/.default`] },
  });
}

async function main(): Promise<void> {
  const settings = gallerySharingSettings(process.env);
  // The preprovision hook checks the settings only, so a bad one stops azd before anything is deployed.
  if (process.argv.includes('--check')) return;
  const env = (name: string): string => {
    const value = process.env[name]?.trim();
    if (value === undefined || value === '') throw new Error(`${name} is not set in the azd environment`);
    return value;
  };
  if (settings.mode === 'none' && (process.env['AZURE_GALLERY_NAME'] ?? '') === '') return;
  const tenantId = process.env['AZURE_TENANT_ID']?.trim();
  const client = computeClient(
    new AzureDeveloperCliCredential(tenantId ? { tenantId } : {}),
    env('AZURE_SUBSCRIPTION_ID'),
    process.env['AZURE_RESOURCE_MANAGER_ENDPOINT']?.trim() || 'https://management.azure.com',
  );
  const target = { resourceGroup: env('AZURE_RESOURCE_GROUP'), galleryName: env('AZURE_GALLERY_NAME') };
  const { updates, warning } = await shareGallery(client, target, settings);
  for (const update of updates) {
    const groups = (update.groups ?? []).map((g) => `${g.type}: ${(g.ids ?? []).join(', ')}`).join('; ');
    console.error(`Gallery ${target.galleryName}: ${update.operationType}${groups ? ` ${groups}` : ''}`);
  }
  if (warning !== undefined) console.error(warning);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
