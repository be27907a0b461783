import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  NEITHER_MIRROR_NOR_CPI,
  decideExistingVersion,
  type ExistingVersionDecision,
} from '../../src/existing-version.js';
import { MIRROR_NOTIFIED_TAG, MIRROR_STEMCELL_REFERENCE } from '../../src/cpi.js';
import type { ImageVersionState } from '../../src/gallery.js';

const IMAGE = 'a'.repeat(64);
const OTHER_IMAGE = 'b'.repeat(64);
const DIRECTOR = 'bosh-stemcell-0d8c9a3e';

const MIRRORS = { stemcell_references: MIRROR_STEMCELL_REFERENCE, image_sha256: IMAGE };
const DIRECTORS = { stemcell_references: DIRECTOR, stemcell_name: DIRECTOR, image_sha256: IMAGE };

function version(
  provisioningState: string,
  tags: Record<string, string>,
  errorMessage?: string,
): ImageVersionState {
  return {
    name: '1.100.0',
    provisioningState,
    tags,
    ...(errorMessage !== undefined ? { errorMessage } : {}),
  };
}

const cases: Array<[string, ImageVersionState | undefined, ExistingVersionDecision]> = [
  ['no version: create it', undefined, { action: 'create' }],
  [
    'fault: a Failed version: delete and create again, saying why Azure failed it',
    version('Failed', MIRRORS, 'the VHD is not a fixed VHD'),
    { action: 'recreate', reason: 'is Failed (the VHD is not a fixed VHD); deleting it to create it again' },
  ],
  [
    'a Failed version without a message',
    version('Failed', MIRRORS),
    { action: 'recreate', reason: 'is Failed; deleting it to create it again' },
  ],
  [
    'a Failed version a director made of this very image: delete and create again',
    version('Failed', DIRECTORS),
    { action: 'recreate', reason: 'is Failed; deleting it to create it again' },
  ],
  [
    'fault: a Failed version a director made of another image: refuse it, never delete it',
    version('Failed', { ...DIRECTORS, image_sha256: OTHER_IMAGE }, 'replication failed'),
    {
      action: 'refuse',
      reason:
        "is Failed (replication failed) and was not created by this mirror, nor does it hold this stemcell's " +
        `image (image_sha256 ${OTHER_IMAGE}, this stemcell has ${IMAGE}); the mirror never deletes it: ` +
        'delete it by hand if it should be created again',
    },
  ],
  [
    'fault: a Failed version without tags: refuse it, never delete it',
    version('Failed', {}),
    {
      action: 'refuse',
      reason:
        "is Failed and was not created by this mirror, nor does it hold this stemcell's image (image_sha256 " +
        `none, this stemcell has ${IMAGE}); the mirror never deletes it: delete it by hand if it should be ` +
        'created again',
    },
  ],
  [
    'fault: a director’s version whose references leave no room for the mirror’s: use it, references untouched',
    version('Succeeded', {
      ...DIRECTORS,
      stemcell_references: Array.from({ length: 5 }, (_, i) => `bosh-stemcell-${i}`.padEnd(50, '0')).join(
        ',',
      ),
    }),
    { action: 'use', referencesFull: true, finished: false, provisioningState: 'Succeeded' },
  ],
  [
    'a version being deleted: wait for it',
    version('Deleting', MIRRORS),
    { action: 'wait', reason: 'is being deleted; creating it again once that is done' },
  ],
  [
    'a version without stemcell_references or stemcell_name: refuse it',
    version('Succeeded', { image_sha256: IMAGE }),
    { action: 'refuse', reason: NEITHER_MIRROR_NOR_CPI },
  ],
  [
    'a version without any tag: refuse it',
    version('Creating', {}),
    { action: 'refuse', reason: NEITHER_MIRROR_NOR_CPI },
  ],
  [
    'fault: a director’s version of another image: refuse it',
    version('Succeeded', { ...DIRECTORS, image_sha256: OTHER_IMAGE }),
    {
      action: 'refuse',
      reason:
        `already exists with a different image (image_sha256 ${OTHER_IMAGE}, this stemcell has ${IMAGE}); ` +
        'delete it by hand if it should be replaced',
    },
  ],
  [
    'the mirror’s own version, Succeeded and announced: nothing left to do',
    version('Succeeded', { ...MIRRORS, [MIRROR_NOTIFIED_TAG]: 'off' }),
    { action: 'use', finished: true, provisioningState: 'Succeeded' },
  ],
  [
    'the mirror’s own version, Succeeded but not announced: finish the run',
    version('Succeeded', MIRRORS),
    { action: 'use', finished: false, provisioningState: 'Succeeded' },
  ],
  [
    'the mirror’s own version still Creating: wait for it',
    version('Creating', MIRRORS),
    { action: 'use', finished: false, provisioningState: 'Creating' },
  ],
  [
    'a director’s Succeeded version of the same image: adopt it by adding the mirror’s reference',
    version('Succeeded', DIRECTORS),
    {
      action: 'use',
      references: `${DIRECTOR},${MIRROR_STEMCELL_REFERENCE}`,
      finished: false,
      provisioningState: 'Succeeded',
    },
  ],
  [
    'a director’s version without image_sha256: adopted, as the CPI would',
    version('Succeeded', { stemcell_name: DIRECTOR }),
    {
      action: 'use',
      references: `${DIRECTOR},${MIRROR_STEMCELL_REFERENCE}`,
      finished: false,
      provisioningState: 'Succeeded',
    },
  ],
  [
    'a director’s version still Creating: used, tagged later (a version being created cannot be tagged)',
    version('Creating', DIRECTORS),
    { action: 'use', finished: false, provisioningState: 'Creating' },
  ],
  [
    'a director’s version the mirror adopted and announced earlier',
    version('Succeeded', {
      ...DIRECTORS,
      stemcell_references: `${DIRECTOR},${MIRROR_STEMCELL_REFERENCE}`,
      [MIRROR_NOTIFIED_TAG]: '2026-01-01T00:00:00.000Z',
    }),
    { action: 'use', finished: true, provisioningState: 'Succeeded' },
  ],
];

for (const [what, existing, expected] of cases) {
  test(what, () => {
    assert.deepEqual(decideExistingVersion(existing, IMAGE), expected);
  });
}

test('a refused foreign version is named for what it lacks and what to do', () => {
  assert.match(
    NEITHER_MIRROR_NOR_CPI,
    /^was created neither by this mirror nor by the BOSH Azure CPI \(no stemcell_references or stemcell_name tag\).*delete it and run again$/,
  );
});
