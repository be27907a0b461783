import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  MIGRATION_DOCS,
  UNTAGGED_FROM_ANOTHER_TOOL,
  decideExistingVersion,
  inUseFailure,
  type ExistingVersionDecision,
  type ExistingVersionRules,
} from '../../src/existing-version.js';
import { MIRROR_NOTIFIED_TAG, MIRROR_STEMCELL_REFERENCE } from '../../src/cpi.js';
import type { ImageVersionState } from '../../src/gallery.js';

const IMAGE = 'a'.repeat(64);
const OTHER_IMAGE = 'b'.repeat(64);
const DIRECTOR = 'bosh-stemcell-0d8c9a3e';

const MIRRORS = { stemcell_references: MIRROR_STEMCELL_REFERENCE, image_sha256: IMAGE };
const DIRECTORS = { stemcell_references: DIRECTOR, stemcell_name: DIRECTOR, image_sha256: IMAGE };

// Azure's 256-character tag value, less the mirror's reference and its comma.
const LONGEST_ADOPTABLE = `bosh-stemcell-`.padEnd(256 - MIRROR_STEMCELL_REFERENCE.length - 1, '0');

const SOURCE =
  'https://oldmirror.blob.core.windows.net/vhds/bosh-stemcell-1.100-azure-hyperv-ubuntu-jammy.vhd';

function version(
  provisioningState: string,
  tags: Record<string, string>,
  errorMessage?: string,
  sourceUri?: string,
): ImageVersionState {
  return {
    name: '1.100.0',
    provisioningState,
    tags,
    ...(errorMessage !== undefined ? { errorMessage } : {}),
    ...(sourceUri !== undefined ? { sourceUri } : {}),
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
    'fault: a Failed version of the mirror a director adopted (a region added later failed): refuse it, never delete it',
    version(
      'Failed',
      { ...MIRRORS, stemcell_references: `${MIRROR_STEMCELL_REFERENCE},${DIRECTOR}` },
      'replication failed in eastus',
    ),
    {
      action: 'refuse',
      reason:
        'is Failed (replication failed in eastus), and 1 director references it (stemcell_references); the mirror ' +
        'never deletes a version in use: remove the failed target region from it by hand (az sig image-version ' +
        'update), or delete it once no director uses it',
    },
  ],
  [
    "fault: a Failed version of the mirror a director's older CPI named (stemcell_name): refuse it, as retention keeps it",
    version('Failed', { ...MIRRORS, stemcell_name: DIRECTOR }),
    {
      action: 'refuse',
      reason:
        `is Failed, and a director's stemcell ${DIRECTOR} names it (stemcell_name); the mirror never deletes a ` +
        'version in use: remove the failed target region from it by hand (az sig image-version update), or ' +
        'delete it once no director uses it',
    },
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
    'a director’s references that leave exactly room for the mirror’s (256 characters with it): adopt it',
    version('Succeeded', { ...DIRECTORS, stemcell_name: '', stemcell_references: LONGEST_ADOPTABLE }),
    {
      action: 'use',
      references: `${LONGEST_ADOPTABLE},${MIRROR_STEMCELL_REFERENCE}`,
      finished: false,
      provisioningState: 'Succeeded',
    },
  ],
  [
    'a director’s references one character too long for the mirror’s: use it, references untouched',
    version('Succeeded', { ...DIRECTORS, stemcell_name: '', stemcell_references: `${LONGEST_ADOPTABLE}0` }),
    { action: 'use', referencesFull: true, finished: false, provisioningState: 'Succeeded' },
  ],
  [
    'the mirror’s own version announced earlier, being updated (a target region added): not finished, waited for',
    version('Updating', { ...MIRRORS, [MIRROR_NOTIFIED_TAG]: '2026-01-01T00:00:00.000Z' }),
    { action: 'use', finished: false, provisioningState: 'Updating' },
  ],
  [
    'a version being deleted: wait for it',
    version('Deleting', MIRRORS),
    { action: 'wait', reason: 'is being deleted; creating it again once that is done' },
  ],
  [
    'a version without stemcell_references or stemcell_name: refuse it',
    version('Succeeded', { image_sha256: IMAGE }),
    { action: 'refuse', reason: UNTAGGED_FROM_ANOTHER_TOOL },
  ],
  [
    'a version without any tag: refuse it',
    version('Creating', {}),
    { action: 'refuse', reason: UNTAGGED_FROM_ANOTHER_TOOL },
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

// BASM_ADOPT_UNTAGGED: the versions another tool (the original mirror) made, with and without the option.
const ADOPT: ExistingVersionRules = { adoptUntagged: true };
const untaggedCases: Array<[string, ImageVersionState, ExistingVersionRules, ExistingVersionDecision]> = [
  [
    'untagged, option off: reported, with where to read about it',
    version('Succeeded', {}, undefined, SOURCE),
    {},
    { action: 'refuse', reason: UNTAGGED_FROM_ANOTHER_TOOL },
  ],
  [
    'untagged, option explicitly off: the same',
    version('Succeeded', {}, undefined, SOURCE),
    { adoptUntagged: false },
    { action: 'refuse', reason: UNTAGGED_FROM_ANOTHER_TOOL },
  ],
  [
    'untagged and Succeeded, option on: adopt it, comparing its source blob first',
    version('Succeeded', {}, undefined, SOURCE),
    ADOPT,
    { action: 'adopt', sourceUri: SOURCE },
  ],
  [
    'untagged with other tags of its own, option on: adopt it too',
    version('Succeeded', { owner: 'platform-team' }, undefined, SOURCE),
    ADOPT,
    { action: 'adopt', sourceUri: SOURCE },
  ],
  [
    'untagged without a source URI, option on: adopt on the verified download alone',
    version('Succeeded', {}),
    ADOPT,
    { action: 'adopt' },
  ],
  [
    'untagged but still Creating, option on: not yet',
    version('Creating', {}, undefined, SOURCE),
    ADOPT,
    {
      action: 'refuse',
      reason: `is untagged and Creating: adopted only once Azure reports it Succeeded (see ${MIGRATION_DOCS})`,
    },
  ],
  [
    'untagged but its own image_sha256 names another image, option on: refused',
    version('Succeeded', { image_sha256: OTHER_IMAGE }, undefined, SOURCE),
    ADOPT,
    {
      action: 'refuse',
      reason:
        `already exists with a different image (image_sha256 ${OTHER_IMAGE}, this stemcell has ${IMAGE}); ` +
        'delete it by hand if it should be replaced',
    },
  ],
  [
    'a director’s version, option on: used as before, never re-tagged as an adoption',
    version('Succeeded', DIRECTORS),
    ADOPT,
    {
      action: 'use',
      references: `${DIRECTOR},${MIRROR_STEMCELL_REFERENCE}`,
      finished: false,
      provisioningState: 'Succeeded',
    },
  ],
];

for (const [what, existing, rules, expected] of untaggedCases) {
  test(what, () => {
    assert.deepEqual(decideExistingVersion(existing, IMAGE, rules), expected);
  });
}

test('an untagged version is reported as from another tool, with the docs section that says what to do', () => {
  assert.match(
    UNTAGGED_FROM_ANOTHER_TOOL,
    /^is untagged, from another tool: see docs\/operations\.md#migrating-from-the-container-apps-job /,
  );
  assert.match(UNTAGGED_FROM_ANOTHER_TOOL, /BASM_ADOPT_UNTAGGED=true/);
});

test('a version directors use is a failure to leave to the operator only once Azure failed it', () => {
  const inUse = { stemcell_references: `${MIRROR_STEMCELL_REFERENCE},${DIRECTOR}`, image_sha256: IMAGE };
  for (const state of ['Succeeded', 'Creating', 'Updating', 'Deleting']) {
    assert.equal(inUseFailure(version(state, inUse)), undefined, state);
  }
  assert.match(inUseFailure(version('Failed', inUse)) ?? '', /^is Failed, and 1 director references it/);
  assert.equal(inUseFailure(version('Failed', MIRRORS)), undefined, 'no director uses it');
  assert.equal(
    inUseFailure(version('Failed', DIRECTORS)),
    undefined,
    'a director’s own version: not the mirror’s to keep or refuse',
  );
});
