/**
 * What the mirror does when the image version it is about to create already exists: the whole rule in one
 * place, as a pure function, so the step that acts on it stays a sequence of calls.
 */

import { MIRROR_NOTIFIED_TAG, isAdoptableByCpi, stemcellReferencesWith } from './cpi.js';
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
   * write (a director's version, once it is Succeeded); `finished` when the mirror already announced it.
   */
  | { action: 'use'; references?: string; finished: boolean; provisioningState: string };

/** Why a version can be neither used nor adopted; said after the version's name. */
export const NEITHER_MIRROR_NOR_CPI =
  'was created neither by this mirror nor by the BOSH Azure CPI (no stemcell_references or stemcell_name ' +
  'tag), so a director would refuse it; delete it and run again';

/** The decision about `existing`, the gallery's version of the stemcell whose image has `imageSha256`. */
export function decideExistingVersion(
  existing: ImageVersionState | undefined,
  imageSha256: string,
): ExistingVersionDecision {
  if (existing === undefined) return { action: 'create' };
  const { provisioningState, tags } = existing;
  if (provisioningState === 'Failed') {
    const cause = existing.errorMessage ? ` (${existing.errorMessage})` : '';
    return { action: 'recreate', reason: `is Failed${cause}; deleting it to create it again` };
  }
  if (provisioningState === 'Deleting') {
    return { action: 'wait', reason: 'is being deleted; creating it again once that is done' };
  }
  if (!isAdoptableByCpi(tags)) return { action: 'refuse', reason: NEITHER_MIRROR_NOR_CPI };
  if (!isAdoptableByCpi(tags, imageSha256)) {
    return {
      action: 'refuse',
      reason:
        `already exists with a different image (image_sha256 ${tags['image_sha256']}, this stemcell has ` +
        `${imageSha256}); delete it by hand if it should be replaced`,
    };
  }
  // One still being created cannot be tagged yet; the notify step adopts it once it is Succeeded.
  const references = provisioningState === 'Succeeded' ? stemcellReferencesWith(tags) : undefined;
  return {
    action: 'use',
    ...(references !== undefined ? { references } : {}),
    finished: provisioningState === 'Succeeded' && tags[MIRROR_NOTIFIED_TAG] !== undefined,
    provisioningState,
  };
}
