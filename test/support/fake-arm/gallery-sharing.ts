/**
 * The gallery's sharing profile (GalleryRP 2024-03-03, `Gallery.properties.sharingProfile`) and its `share` action
 * (`POST .../galleries/{gallery}/share`, operation GallerySharingProfile_Update, body SharingUpdate).
 *
 * `permissions` and `communityGalleryInfo` are what a gallery PUT sets (the Bicep's; the fake takes them as an
 * option, as after `azd provision`); `groups` is read-only there and only the action changes it: `Add` and `Remove`
 * groups of `Subscriptions` or `AADTenants` ids, `Reset` to private, `EnableCommunity` to publish a community gallery
 * (examples Gallery_AddToSharingProfile.json, Gallery_ResetSharingProfile.json, Gallery_EnableCommunityGallery.json).
 * The groups appear in a gallery GET only with `$expand=SharingProfile/Groups`. The action answers 200 with the
 * SharingUpdate, one of the answers the spec allows.
 */

import { ArmError, invalidParameter, missingParameter } from './arm-http.js';
import { asObject, text } from './json.js';
import type { Json } from './json.js';

export type SharingPermission = 'Private' | 'Groups' | 'Community';

export interface CommunityGalleryInfo {
  publisherUri: string;
  publisherContact: string;
  eula: string;
  publicNamePrefix: string;
}

/** What the gallery PUT set: the starting point of the fake's sharing profile. */
export interface GallerySharingOptions {
  permissions: SharingPermission;
  communityGalleryInfo?: CommunityGalleryInfo;
}

const operationTypes = ['Add', 'Remove', 'Reset', 'EnableCommunity'];
const groupTypes = ['Subscriptions', 'AADTenants'];

export class GallerySharing {
  permissions: SharingPermission;
  readonly communityGalleryInfo: CommunityGalleryInfo | undefined;
  communityGalleryEnabled = false;
  /** Shared ids by group type, in the order they were added. */
  readonly groups = new Map<string, string[]>(groupTypes.map((type) => [type, []]));

  constructor(options: GallerySharingOptions = { permissions: 'Private' }) {
    this.permissions = options.permissions;
    this.communityGalleryInfo = options.communityGalleryInfo;
  }

  /** `properties.sharingProfile` of a gallery GET (absent while private and never shared). */
  profile(expandGroups: boolean): Json | undefined {
    if (this.permissions === 'Private' && this.communityGalleryInfo === undefined) return undefined;
    const profile: Json = { permissions: this.permissions };
    if (expandGroups) {
      profile['groups'] = [...this.groups]
        .filter(([, ids]) => ids.length > 0)
        .map(([type, ids]) => ({ type, ids: [...ids] }));
    }
    if (this.communityGalleryInfo !== undefined) {
      profile['communityGalleryInfo'] = {
        ...this.communityGalleryInfo,
        communityGalleryEnabled: this.communityGalleryEnabled,
      };
    }
    return profile;
  }

  /** The `share` action: validates the SharingUpdate as GalleryRP does, applies it, and returns the answer body. */
  share(body: unknown): Json {
    const update = asObject(body);
    if (update === undefined) throw missingParameter('sharingUpdate');
    const operationType = text(update['operationType']);
    if (operationType === '') throw missingParameter('sharingUpdate.operationType');
    if (!operationTypes.includes(operationType)) {
      throw invalidParameter(
        'sharingUpdate.operationType',
        `The value '${operationType}' is not valid. Allowed values are ${operationTypes.join(', ')}.`,
      );
    }
    if (operationType === 'Reset') {
      this.permissions = 'Private';
      this.communityGalleryEnabled = false;
      for (const ids of this.groups.values()) ids.splice(0);
      return { operationType };
    }
    if (operationType === 'EnableCommunity') {
      if (this.permissions !== 'Community' || this.communityGalleryInfo === undefined) {
        throw new ArmError(
          409,
          'OperationNotAllowed',
          "Community sharing needs the gallery's sharingProfile.permissions Community with its communityGalleryInfo.",
        );
      }
      this.communityGalleryEnabled = true;
      return { operationType };
    }
    const groups = this.#groupsOf(update['groups']);
    if (this.permissions !== 'Groups') {
      throw new ArmError(
        409,
        'OperationNotAllowed',
        `Groups can be shared only when the gallery's sharingProfile.permissions is Groups; it is ${this.permissions}.`,
      );
    }
    for (const { type, ids } of groups) {
      const shared = this.groups.get(type) ?? [];
      for (const id of ids) {
        const at = shared.findIndex((existing) => existing.toLowerCase() === id.toLowerCase());
        if (operationType === 'Add' && at < 0) shared.push(id);
        if (operationType === 'Remove' && at >= 0) shared.splice(at, 1);
      }
    }
    return { operationType, groups: groups.map((group) => ({ ...group })) };
  }

  #groupsOf(value: unknown): Array<{ type: string; ids: string[] }> {
    if (!Array.isArray(value) || value.length === 0) throw missingParameter('sharingUpdate.groups');
    return value.map((entry, index) => {
      const group = asObject(entry) ?? {};
      const target = `sharingUpdate.groups[${index}]`;
      const type = text(group['type']);
      if (!groupTypes.includes(type)) {
        throw invalidParameter(
          `${target}.type`,
          `The value '${type}' is not valid. Allowed values are ${groupTypes.join(', ')}.`,
        );
      }
      const ids = group['ids'];
      if (
        !Array.isArray(ids) ||
        ids.length === 0 ||
        ids.some((id) => typeof id !== 'string' || id.trim() === '')
      ) {
        throw invalidParameter(
          `${target}.ids`,
          'The ids must be a non-empty list of subscription or tenant ids.',
        );
      }
      return { type, ids: ids as string[] };
    });
  }
}
