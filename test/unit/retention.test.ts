/**
 * Retention's decision (src/retention.ts): which of a series' versions BASM_KEEP_VERSIONS deletes, as tables.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { directorUse } from '../../src/cpi.js';
import {
  decideRetention,
  deletionBlocker,
  ownSourceVersion,
  type RetentionCandidate,
} from '../../src/retention.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const CONTAINER = 'https://vhds.blob.core.windows.net/stemcell';
const MIRROR = 'bosh-azure-stemcell-mirror';

/** A version the mirror made from its own blob, finished, no director: `1.10.0` from bosh.io's `1.10`. */
function mirrored(galleryVersion: string, extra: Partial<RetentionCandidate> = {}): RetentionCandidate {
  const version = galleryVersion.replace(/\.0$/, '');
  return {
    definitionName: SERIES,
    galleryVersion,
    provisioningState: 'Succeeded',
    tags: { stemcell_references: MIRROR, mirror_notified: '2026-01-01T00:00:00Z' },
    sourceUri: `${CONTAINER}/${SERIES}/${version}/root.vhd`,
    ...extra,
  };
}

function withTags(candidate: RetentionCandidate, tags: Record<string, string>): RetentionCandidate {
  return { ...candidate, tags: { ...candidate.tags, ...tags } };
}

function deleted(versions: RetentionCandidate[], keep: number): string[] {
  return decideRetention(SERIES, versions, { keep, containerUrl: CONTAINER }).map(
    (d) => `${d.galleryVersion}<-${d.version}`,
  );
}

describe('decideRetention', () => {
  const cases: Array<{ name: string; keep: number; versions: RetentionCandidate[]; deleted: string[] }> = [
    {
      name: 'keep 0 keeps everything',
      keep: 0,
      versions: [mirrored('1.10.0'), mirrored('1.11.0'), mirrored('1.12.0')],
      deleted: [],
    },
    {
      name: 'keep 2 deletes the oldest beyond two, oldest first',
      keep: 2,
      versions: [mirrored('1.12.0'), mirrored('1.9.0'), mirrored('1.10.0'), mirrored('1.11.0')],
      deleted: ['1.9.0<-1.9', '1.10.0<-1.10'],
    },
    {
      name: 'deletions come oldest first whatever order the gallery lists them in',
      keep: 1,
      versions: [mirrored('1.11.0'), mirrored('1.10.0'), mirrored('1.12.0'), mirrored('1.9.0')],
      deleted: ['1.9.0<-1.9', '1.10.0<-1.10', '1.11.0<-1.11'],
    },
    {
      name: 'keep 1 never deletes the newest',
      keep: 1,
      versions: [mirrored('1.10.0'), mirrored('1.11.0')],
      deleted: ['1.10.0<-1.10'],
    },
    {
      name: 'fewer versions than keep: nothing',
      keep: 5,
      versions: [mirrored('1.10.0'), mirrored('1.11.0')],
      deleted: [],
    },
    {
      name: 'a director reference (stemcell_references after the mirror) spares it, without using a kept place',
      keep: 1,
      versions: [
        withTags(mirrored('1.9.0'), { stemcell_references: `${MIRROR},bosh-stemcell-1234` }),
        mirrored('1.10.0'),
        mirrored('1.11.0'),
      ],
      deleted: ['1.10.0<-1.10'],
    },
    {
      name: 'a stemcell_name tag (a CPI before stemcell_references) spares it',
      keep: 1,
      versions: [withTags(mirrored('1.10.0'), { stemcell_name: 'bosh-stemcell-99' }), mirrored('1.11.0')],
      deleted: [],
    },
    {
      name: 'a director-uploaded version (its reference first) is neither counted nor deleted',
      keep: 1,
      versions: [
        withTags(mirrored('1.9.0'), { stemcell_references: `bosh-stemcell-1,${MIRROR}` }),
        mirrored('1.10.0'),
      ],
      deleted: [],
    },
    {
      name: 'a version whose source is not the mirror’s own blob (a director’s, released since) is never deleted',
      keep: 1,
      versions: [
        mirrored('1.9.0', {
          sourceUri: 'https://director.blob.core.windows.net/stemcell/bosh-stemcell-1.vhd',
        }),
        mirrored('1.10.0', { sourceUri: `${CONTAINER}/${SERIES}/1.8/root.vhd` }),
        mirrored('1.11.0'),
      ],
      deleted: [],
    },
    {
      name: 'untagged versions of another tool are never deleted',
      keep: 1,
      versions: [mirrored('1.9.0', { tags: {} }), mirrored('1.10.0')],
      deleted: [],
    },
    {
      name: 'a version still Creating counts among those kept and is never deleted',
      keep: 1,
      versions: [mirrored('1.9.0', { provisioningState: 'Creating' }), mirrored('1.8.0')],
      deleted: ['1.8.0<-1.8'],
    },
    {
      name: 'an older version still Creating or Updating, or unfinished, is not deleted yet',
      keep: 1,
      versions: [
        mirrored('1.7.0', { provisioningState: 'Creating' }),
        mirrored('1.8.0', { provisioningState: 'Updating' }),
        mirrored('1.9.0', { tags: { stemcell_references: MIRROR } }),
        mirrored('1.6.0'),
        mirrored('1.10.0'),
      ],
      deleted: ['1.6.0<-1.6'],
    },
    {
      name: 'Failed versions are left to the plan: neither counted nor deleted',
      keep: 1,
      versions: [mirrored('1.12.0', { provisioningState: 'Failed' }), mirrored('1.10.0'), mirrored('1.11.0')],
      deleted: ['1.10.0<-1.10'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => assert.deepEqual(deleted(c.versions, c.keep), c.deleted));
  }

  test('each deletion says why, naming the setting', () => {
    const [only] = decideRetention(SERIES, [mirrored('1.10.0'), mirrored('1.11.0')], {
      keep: 1,
      containerUrl: CONTAINER,
    });
    assert.equal(only?.definitionName, SERIES);
    assert.match(only?.reason ?? '', /older than the newest 1 .*BASM_KEEP_VERSIONS.*no director uses it/);
  });
});

describe('ownSourceVersion', () => {
  const cases: Array<[string, string | undefined, string | undefined]> = [
    ['the mirror’s blob of this version', `${CONTAINER}/${SERIES}/1.10/root.vhd`, '1.10'],
    ['host case differs', `https://VHDS.blob.core.windows.net/stemcell/${SERIES}/1.10/root.vhd`, '1.10'],
    ['another container', `https://vhds.blob.core.windows.net/other/${SERIES}/1.10/root.vhd`, undefined],
    ['another account', `https://other.blob.core.windows.net/stemcell/${SERIES}/1.10/root.vhd`, undefined],
    ['another series', `${CONTAINER}/other-series/1.10/root.vhd`, undefined],
    ['another version', `${CONTAINER}/${SERIES}/1.11/root.vhd`, undefined],
    ['not root.vhd', `${CONTAINER}/${SERIES}/1.10/other.vhd`, undefined],
    ['another blob of the same length', `${CONTAINER}/${SERIES}/1.10/boot.vhd`, undefined],
    [
      'another series of the same length',
      `${CONTAINER}/${SERIES.replace('jammy', 'noble')}/1.10/root.vhd`,
      undefined,
    ],
    ['a nested path', `${CONTAINER}/${SERIES}/x/1.10/root.vhd`, undefined],
    ['no source', undefined, undefined],
    ['not a URL', 'root.vhd', undefined],
  ];
  for (const [name, uri, expected] of cases) {
    test(name, () => assert.equal(ownSourceVersion(uri, CONTAINER, SERIES, '1.10.0'), expected));
  }

  for (const container of [`${CONTAINER}/`, `${CONTAINER}//`]) {
    test(`a container URL ending in "${container.slice(CONTAINER.length)}" names the same container`, () =>
      assert.equal(
        ownSourceVersion(`${CONTAINER}/${SERIES}/1.10/root.vhd`, container, SERIES, '1.10.0'),
        '1.10',
      ));
  }
});

describe('deletionBlocker', () => {
  const cases: Array<[string, RetentionCandidate, RegExp | undefined]> = [
    ['finished, no director', mirrored('1.10.0'), undefined],
    ['still Creating', mirrored('1.10.0', { provisioningState: 'Creating' }), /^it is Creating$/],
    [
      'its run not finished',
      mirrored('1.10.0', { tags: { stemcell_references: MIRROR } }),
      /^its run has not finished \(not notified\)$/,
    ],
    [
      'a director uses it',
      withTags(mirrored('1.10.0'), { stemcell_references: `${MIRROR},bosh-stemcell-1` }),
      /^1 director references it/,
    ],
  ];
  for (const [name, candidate, expected] of cases) {
    test(name, () => {
      const blocker = deletionBlocker(candidate);
      if (expected === undefined) assert.equal(blocker, undefined);
      else assert.match(blocker ?? '', expected);
    });
  }
});

describe('directorUse', () => {
  const cases: Array<[Record<string, string>, RegExp | undefined]> = [
    [{ stemcell_references: MIRROR }, undefined],
    [{ stemcell_references: `${MIRROR}, bosh-stemcell-1` }, /^1 director references it/],
    [{ stemcell_references: `${MIRROR},bosh-stemcell-1,bosh-stemcell-2` }, /^2 directors reference it/],
    [{ stemcell_references: MIRROR, stemcell_name: 'bosh-stemcell-3' }, /stemcell_name/],
    [{ stemcell_references: MIRROR, stemcell_name: '' }, undefined],
    [{ stemcell_references: MIRROR, stemcell_name: MIRROR }, undefined],
  ];
  for (const [tags, expected] of cases) {
    test(JSON.stringify(tags), () => {
      const use = directorUse(tags);
      if (expected === undefined) assert.equal(use, undefined);
      else assert.match(use ?? '', expected);
    });
  }
});
