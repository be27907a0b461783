/**
 * What the mirror does when the image version it is about to create already exists: the whole rule in one
 * place, as a pure function, so the step that acts on it stays a sequence of calls.
 */

import {
  MAX_TAG_VALUE,
  MIRROR_NOTIFIED_TAG,
  directorUse,
  isAdoptableByCpi,
  isCreatedByMirror,
  stemcellReferencesWith,
} from './cpi.js';
import type { ImageVersionState } from './gallery.js';

export type ExistingVersionDecision =
  /** Nothing there: create it. */
  | { action: 'create' }
  /** Azure gave up on it: delete it, then create it again. */
  | { action: 'recreate'; reason: string }
  /** Still being deleted: try again once that is done. */
  | { action: 'wait'; reason: string }
  /** Not something the mirror may touch or use: report it and leave it alone. */
  | { action: 'refuse'; reason: string }
  /**
   * The same image, by the mirror or a director: use it. `references` is the `stemcell_references` value to
   * write (a director's version, once it is Succeeded); `referencesFull` when the mirror's entry would not fit
   * in Azure's 256 characters, so the references stay as the directors wrote them; `finished` when the mirror
   * already announced it.
   */
  | {
      action: 'use';
      references?: string;
      referencesFull?: true;
      finished: boolean;
      provisioningState: string;
    }
  /**
   * Untagged, made by another tool (the original mirror), and BASM_ADOPT_UNTAGGED is on: compare its source
   * blob (when `sourceUri` still exists) with the verified VHD, then tag it as the mirror would have.
   */
  | { action: 'adopt'; sourceUri?: string };

/** Where an operator reads what to do about versions another tool made. */
export const MIGRATION_DOCS = 'docs/operations.md#migrating-from-the-container-apps-job';

/** Why an untagged version is left alone; said after the version's name. */
export const UNTAGGED_FROM_ANOTHER_TOOL =
  `is untagged, from another tool: see ${MIGRATION_DOCS} (a director refuses it as it is; ` +
  'BASM_ADOPT_UNTAGGED=true verifies and adopts it)';

/**
 * Made by another tool: no `stemcell_references` and no `stemcell_name` tag, so neither this mirror nor a
 * director's CPI made it, and a director refuses it ("not created by BOSH CPI").
 */
export function isFromAnotherTool(tags: Readonly<Record<string, string>>): boolean {
  return !isAdoptableByCpi(tags);
}

/**
 * Why a Failed version of the mirror's is left to the operator, said after its name; undefined when it is not
 * one. Directors adopted it, so it was Succeeded once (a region added later can fail it): a deletion would take
 * it from under their deployments.
 */
export function inUseFailure(existing: ImageVersionState): string | undefined {
  if (existing.provisioningState !== 'Failed' || !isCreatedByMirror(existing.tags)) return undefined;
  const use = directorUse(existing.tags);
  if (use === undefined) return undefined;
  const cause = existing.errorMessage ? ` (${existing.errorMessage})` : '';
  return (
    `is Failed${cause}, and ${use}; the mirror never deletes a version in use: remove the failed target region ` +
    'from it by hand (az sig image-version update), or delete it once no director uses it'
  );
}

export interface ExistingVersionRules {
  /** BASM_ADOPT_UNTAGGED: adopt a Succeeded version another tool made, once verified. */
  adoptUntagged?: boolean;
}

/** The decision about `existing`, the gallery's version of the stemcell whose image has `imageSha256`. */
export function decideExistingVersion(
  existing: ImageVersionState | undefined,
  imageSha256: string,
  rules: ExistingVersionRules = {},
): ExistingVersionDecision {
  if (existing === undefined) return { action: 'create' };
  const { provisioningState, tags } = existing;
  if (provisioningState === 'Failed') {
    const cause = existing.errorMessage ? ` (${existing.errorMessage})` : '';
    // Deleting is only safe for what the mirror made, or for the very image it would put back.
    if (!isCreatedByMirror(tags) && tags['image_sha256'] !== imageSha256) {
      return {
        action: 'refuse',
        reason:
          `is Failed${cause} and was not created by this mirror, nor does it hold this stemcell's image ` +
          `(image_sha256 ${tags['image_sha256'] ?? 'none'}, this stemcell has ${imageSha256}); the mirror ` +
          'never deletes it: delete it by hand if it should be created again',
      };
    }
    // The mirror's version that directors adopted was Succeeded once (a region added later can fail it): a
    // deletion would take it from under their deployments, so it is left to the operator.
    const inUse = inUseFailure(existing);
    if (inUse !== undefined) return { action: 'refuse', reason: inUse };
    return { action: 'recreate', reason: `is Failed${cause}; deleting it to create it again` };
  }
  if (provisioningState === 'Deleting') {
    return { action: 'wait', reason: 'is being deleted; creating it again once that is done' };
  }
  const taggedImage = tags['image_sha256'];
  if (taggedImage !== undefined && taggedImage !== imageSha256) {
    return {
      action: 'refuse',
      reason:
        `already exists with a different image (image_sha256 ${taggedImage}, this stemcell has ` +
        `${imageSha256}); delete it by hand if it should be replaced`,
    };
  }
  if (isFromAnotherTool(tags)) {
    if (rules.adoptUntagged !== true) return { action: 'refuse', reason: UNTAGGED_FROM_ANOTHER_TOOL };
    if (provisioningState !== 'Succeeded') {
      return {
        action: 'refuse',
        reason: `is untagged and ${provisioningState}: adopted only once Azure reports it Succeeded (see ${MIGRATION_DOCS})`,
      };
    }
    return existing.sourceUri !== undefined
      ? { action: 'adopt', sourceUri: existing.sourceUri }
      : { action: 'adopt' };
  }
  // One still being created cannot be tagged yet; the notify step adopts it once it is Succeeded.
  const wanted = provisioningState === 'Succeeded' ? stemcellReferencesWith(tags) : undefined;
  const references = wanted !== undefined && wanted.length <= MAX_TAG_VALUE ? wanted : undefined;
  return {
    action: 'use',
    ...(references !== undefined ? { references } : {}),
    ...(wanted !== undefined && references === undefined ? { referencesFull: true as const } : {}),
    finished: provisioningState === 'Succeeded' && tags[MIRROR_NOTIFIED_TAG] !== undefined,
    provisioningState,
  };
}
