import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StemcellRelease } from '../../src/boshio.js';
import {
  extensionsThisRun,
  planExtensions,
  isSkippedVersion,
  oldestKeptRelease,
  planRequestedVersion,
  planSeries,
  type GalleryVersionSummary,
} from '../../src/plan.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

function releases(...versions: string[]): StemcellRelease[] {
  return versions.map((version) => ({
    series: SERIES,
    version,
    url: `https://bosh.io/d/${version}`,
    size: 1,
    sha256: 'a'.repeat(64),
  }));
}

/** Versions this mirror created: a name (Succeeded) or [name, provisioningState]. */
function gallery(...entries: Array<string | [string, string]>): GalleryVersionSummary[] {
  return entries.map((e) =>
    typeof e === 'string'
      ? { name: e, provisioningState: 'Succeeded', createdByMirror: true }
      : { name: e[0], provisioningState: e[1], createdByMirror: true },
  );
}

/** A version a BOSH director uploaded itself. */
function director(name: string): GalleryVersionSummary {
  return { name, provisioningState: 'Succeeded', createdByMirror: false };
}

function planned(available: StemcellRelease[], inGallery: GalleryVersionSummary[], max = 3): string[] {
  return planSeries(SERIES, available, inGallery, max).mirror.map((p) => `${p.release.version}:${p.reason}`);
}

test('an empty gallery gets only the newest version', () => {
  assert.deepEqual(planned(releases('1.10', '1.9', '1.11'), gallery()), ['1.11:newest']);
});

test('nothing is planned when the gallery has the newest version', () => {
  assert.deepEqual(planned(releases('1.10', '1.11'), gallery('1.11.0')), []);
});

test('the newest is found by number, not by bosh.io order or text', () => {
  assert.deepEqual(planned(releases('1.1364', '1.999'), gallery('1.999.0')), ['1.1364:newest']);
});

test('versions missed since the gallery newest are mirrored oldest first', () => {
  assert.deepEqual(planned(releases('1.13', '1.10', '1.11', '1.12'), gallery('1.10.0')), [
    '1.11:catch-up',
    '1.12:catch-up',
    '1.13:newest',
  ]);
});

test('versions older than anything in the gallery are not backfilled', () => {
  assert.deepEqual(planned(releases('1.8', '1.9', '1.10', '1.11'), gallery('1.10.0')), ['1.11:newest']);
});

test('the cap keeps the newest and defers the newest gaps to the next run', () => {
  const plan = planSeries(
    SERIES,
    releases('1.10', '1.11', '1.12', '1.13', '1.14', '1.15'),
    gallery('1.10.0'),
    3,
  );
  assert.deepEqual(
    plan.mirror.map((p) => p.release.version),
    ['1.11', '1.12', '1.15'],
  );
  assert.deepEqual(plan.deferred, ['1.13', '1.14']);
});

test('deferred gaps are filled by the next run even after the newest landed', () => {
  assert.deepEqual(
    planned(
      releases('1.10', '1.11', '1.12', '1.13', '1.14', '1.15'),
      gallery('1.10.0', '1.11.0', '1.12.0', '1.15.0'),
    ),
    ['1.13:catch-up', '1.14:catch-up'],
  );
});

test('a Failed gallery version is planned again as a retry', () => {
  assert.deepEqual(planned(releases('1.10', '1.11'), gallery('1.10.0', ['1.11.0', 'Failed'])), [
    '1.11:retry-failed',
  ]);
});

/** A Failed version of the mirror's that directors use, as summaryOf describes it. */
function failedInUse(name: string): GalleryVersionSummary {
  const error = `image version ${SERIES}/${name} is Failed, and 1 director references it ...`;
  return {
    name,
    provisioningState: 'Failed',
    createdByMirror: true,
    inUseFailure: { stemcellVersion: name.replace(/\.0$/, ''), error },
  };
}

describe('a Failed version of the mirror that directors use', () => {
  test('is never planned (nothing downloaded), but reported, and the newer ones still come', () => {
    const plan = planSeries(
      SERIES,
      releases('1.10', '1.11', '1.12'),
      [...gallery('1.10.0'), failedInUse('1.11.0')],
      3,
    );
    assert.deepEqual(
      plan.mirror.map((p) => `${p.release.version}:${p.reason}`),
      ['1.12:newest'],
    );
    assert.deepEqual(plan.refused, [
      {
        version: '1.11',
        galleryVersion: '1.11.0',
        reason: 'failed-in-use',
        error: `image version ${SERIES}/1.11.0 is Failed, and 1 director references it ...`,
      },
    ]);
  });

  test('as the newest: nothing to mirror, and it is reported', () => {
    const plan = planSeries(
      SERIES,
      releases('1.10', '1.11'),
      [...gallery('1.10.0'), failedInUse('1.11.0')],
      3,
    );
    assert.deepEqual(plan.mirror, []);
    assert.deepEqual(
      plan.refused?.map((r) => r.galleryVersion),
      ['1.11.0'],
    );
  });

  test('does not take room under the cap, and each is reported, oldest first', () => {
    const inGallery = [failedInUse('1.12.0'), ...gallery('1.10.0'), failedInUse('1.11.0')];
    const plan = planSeries(SERIES, releases('1.10', '1.11', '1.12', '1.13', '1.14'), inGallery, 2);
    assert.deepEqual(
      plan.mirror.map((p) => p.release.version),
      ['1.13', '1.14'],
    );
    assert.deepEqual(plan.deferred, []);
    assert.deepEqual(
      plan.refused?.map((r) => r.version),
      ['1.11', '1.12'],
    );
  });

  test('asked for explicitly: not mirrored, reported; other versions in use are not part of that run', () => {
    const inGallery = [failedInUse('1.10.0'), failedInUse('1.11.0')];
    const plan = planRequestedVersion(SERIES, releases('1.10', '1.11'), inGallery, '1.10');
    assert.deepEqual(plan.mirror, []);
    assert.deepEqual(
      plan.refused?.map((r) => r.version),
      ['1.10'],
    );
    const other = planRequestedVersion(SERIES, releases('1.10', '1.11', '1.12'), inGallery, '1.12');
    assert.equal(other.refused, undefined);
  });

  test('none in the gallery: the plan has no refused list', () => {
    assert.equal(planSeries(SERIES, releases('1.10'), gallery(['1.10.0', 'Failed']), 3).refused, undefined);
  });
});

test('a version still being created counts as present', () => {
  assert.deepEqual(planned(releases('1.10', '1.11'), gallery('1.10.0', ['1.11.0', 'Creating'])), []);
});

test('an explicit version is planned alone, whatever the gallery holds', () => {
  const plan = planRequestedVersion(SERIES, releases('1.10', '1.11', '1.12'), gallery('1.11.0'), '1.10');
  assert.deepEqual(
    plan.mirror.map((p) => [p.release.version, p.galleryVersion, p.reason]),
    [['1.10', '1.10.0', 'requested']],
  );
});

test('an explicit version bosh.io does not have is an error naming the newest ones', () => {
  assert.throws(
    () => planRequestedVersion(SERIES, releases('1.10', '1.11'), gallery(), '1.5'),
    /no version 1\.5 .*1\.11, 1\.10/,
  );
});

test('an explicit version the gallery already has is not mirrored again', () => {
  const plan = planRequestedVersion(SERIES, releases('1.10', '1.11'), gallery('1.10.0'), '1.10');
  assert.deepEqual(plan.mirror, []);
  assert.equal(plan.newest.version, '1.10');
});

test('an explicit version Azure failed is mirrored again', () => {
  const plan = planRequestedVersion(SERIES, releases('1.10', '1.11'), gallery(['1.10.0', 'Failed']), '1.10');
  assert.deepEqual(
    plan.mirror.map((p) => p.release.version),
    ['1.10'],
  );
});

test('a version the mirror created but did not finish is planned to finish, outside the cap', () => {
  const inGallery: GalleryVersionSummary[] = [
    { name: '1.10.0', provisioningState: 'Succeeded' },
    { name: '1.11.0', provisioningState: 'Creating', unfinished: { definitionName: SERIES } },
  ];
  const plan = planSeries(SERIES, releases('1.10', '1.11', '1.12'), inGallery, 1);
  assert.deepEqual(
    plan.mirror.map((p) => `${p.release.version}:${p.reason}`),
    ['1.12:newest', '1.11:finish'],
    'finishing comes after the new stemcell, so a version stuck in Creating never holds it up',
  );
  assert.deepEqual(plan.mirror[1]?.finish, { definitionName: SERIES });
});

test('an explicit version that is unfinished is planned to finish, not mirrored again', () => {
  const inGallery: GalleryVersionSummary[] = [
    { name: '1.10.0', provisioningState: 'Succeeded', unfinished: { definitionName: SERIES } },
  ];
  const plan = planRequestedVersion(SERIES, releases('1.10', '1.11'), inGallery, '1.10');
  assert.deepEqual(
    plan.mirror.map((p) => p.reason),
    ['finish'],
  );
});

test('an old version a director uploaded causes no backfill', () => {
  assert.deepEqual(planned(releases('1.5', '1.6', '1.7', '1.8'), [director('1.5.0')]), ['1.8:newest']);
});

test("gaps count from the mirror's oldest version, not a director's", () => {
  assert.deepEqual(
    planned(releases('1.5', '1.6', '1.7', '1.8', '1.9'), [director('1.5.0'), ...gallery('1.7.0')]),
    ['1.8:catch-up', '1.9:newest'],
  );
});

test("a Failed version of the mirror's below its oldest present one is created again", () => {
  assert.deepEqual(planned(releases('1.10', '1.11', '1.12'), gallery(['1.10.0', 'Failed'], '1.11.0')), [
    '1.10:retry-failed',
    '1.12:newest',
  ]);
});

/** An untagged version another tool made, when BASM_ADOPT_UNTAGGED asks to adopt such versions. */
function fromAnotherTool(name: string): GalleryVersionSummary {
  return {
    name,
    provisioningState: 'Succeeded',
    createdByMirror: false,
    adoptable: { definitionName: SERIES, blobUrl: `https://old.blob.core.windows.net/vhds/${name}.vhd` },
  };
}

test('untagged versions of another tool are adopted after the new ones, newest first, within the cap', () => {
  const plan = planSeries(
    SERIES,
    releases('1.10', '1.11', '1.12', '1.13'),
    ['1.10.0', '1.11.0', '1.12.0'].map(fromAnotherTool),
    3,
  );
  assert.deepEqual(
    plan.mirror.map((p) => `${p.release.version}:${p.reason}`),
    ['1.13:newest', '1.12:adopt', '1.11:adopt'],
  );
  assert.deepEqual(plan.mirror[1]?.adopt, {
    definitionName: SERIES,
    blobUrl: 'https://old.blob.core.windows.net/vhds/1.12.0.vhd',
  });
  assert.deepEqual(plan.deferred, ['1.10']);
});

test('an untagged version does not anchor a backfill: only the mirror’s own versions do', () => {
  assert.deepEqual(planned(releases('1.10', '1.11', '1.12'), [fromAnotherTool('1.10.0')], 1), [
    '1.12:newest',
  ]);
});

test('asking for an untagged version of another tool adopts it', () => {
  const plan = planRequestedVersion(SERIES, releases('1.10', '1.11'), [fromAnotherTool('1.10.0')], '1.10');
  assert.deepEqual(
    plan.mirror.map((p) => `${p.release.version}:${p.reason}`),
    ['1.10:adopt'],
  );
});

test('a series bosh.io lists no version of is an error naming the series', () => {
  assert.throws(() => planSeries(SERIES, [], gallery(), 3), {
    message: `bosh.io lists no versions of ${SERIES}`,
  });
});

test("a director's Failed version is never planned again by the mirror", () => {
  const inGallery = [...gallery('1.12.0'), { ...director('1.11.0'), provisioningState: 'Failed' }];
  assert.deepEqual(planned(releases('1.10', '1.11', '1.12'), inGallery), []);
  const belowAnchor = [...gallery('1.12.0'), { ...director('1.10.0'), provisioningState: 'Failed' }];
  assert.deepEqual(planned(releases('1.10', '1.11', '1.12'), belowAnchor), []);
});

test('an explicit version bosh.io does not have names the five newest it has, newest first', () => {
  assert.throws(
    () =>
      planRequestedVersion(
        SERIES,
        releases('1.8', '1.12', '1.9', '1.100', '1.10', '1.11', '1.7'),
        gallery(),
        '1.5',
      ),
    { message: `bosh.io has no version 1.5 of ${SERIES}; newest there: 1.100, 1.12, 1.11, 1.10, 1.9` },
  );
});

test('an explicit version is requested, not finished, when another version of the gallery is unfinished', () => {
  const inGallery: GalleryVersionSummary[] = [
    { name: '1.11.0', provisioningState: 'Creating', unfinished: { definitionName: SERIES } },
  ];
  const plan = planRequestedVersion(SERIES, releases('1.10', '1.11'), inGallery, '1.10');
  assert.deepEqual(
    plan.mirror.map((p) => [p.release.version, p.reason, p.finish]),
    [['1.10', 'requested', undefined]],
  );
  assert.deepEqual(plan.deferred, []);
});

/** A Succeeded version the mirror created, replicated to `regions` (`name` or `name=count`). */
function replicated(version: string, ...regions: string[]): GalleryVersionSummary {
  return {
    name: `${version}.0`,
    provisioningState: 'Succeeded',
    createdByMirror: true,
    replicated: {
      definitionName: SERIES,
      stemcellVersion: version,
      targetRegions: regions.map((r) => {
        const [name = '', count = '1'] = r.split('=');
        return { name, regionalReplicaCount: Number(count) };
      }),
    },
  };
}

const WANTED = [
  { name: 'westeurope', regionalReplicaCount: 1 },
  { name: 'eastus', regionalReplicaCount: 1 },
];

const EXTENSIONS: Array<[what: string, inGallery: GalleryVersionSummary[], expected: string[]]> = [
  ['every version has every region: nothing', [replicated('1.1', 'westeurope', 'eastus')], []],
  [
    'a region added: every version of the mirror lacking it, newest first (the oldest last)',
    [
      replicated('1.9', 'westeurope'),
      replicated('1.10', 'westeurope'),
      replicated('1.2', 'West Europe', 'East US'),
    ],
    ['1.10: adds eastus', '1.9: adds eastus'],
  ],
  [
    "a director's version, or one not Succeeded, is left alone",
    [director('1.5.0'), { name: '1.6.0', provisioningState: 'Failed', createdByMirror: true }],
    [],
  ],
  [
    'a region the settings dropped stays, and is no reason to touch the version',
    [replicated('1.3', 'westeurope', 'eastus', 'northeurope')],
    [],
  ],
  ['more replicas than wanted are kept: no change', [replicated('1.4', 'westeurope=3', 'eastus=2')], []],
];

for (const [what, inGallery, expected] of EXTENSIONS) {
  test(`extensions: ${what}`, () => {
    assert.deepEqual(
      planExtensions(inGallery, WANTED).map((e) => `${e.version}: ${e.reason}`),
      expected,
    );
  });
}

test('extensions: a raised replica count is planned with its reason', () => {
  const plan = planExtensions(
    [replicated('1.4', 'westeurope', 'eastus')],
    [
      { name: 'westeurope', regionalReplicaCount: 3 },
      { name: 'eastus', regionalReplicaCount: 1 },
    ],
  );
  assert.deepEqual(plan, [
    { version: '1.4', galleryVersion: '1.4.0', definitionName: SERIES, reason: 'westeurope 1 -> 3 replicas' },
  ]);
});

test('extensions: a run takes at most its cap, newest first; the older rest are left for later runs', () => {
  const all = planExtensions(
    [replicated('1.8', 'westeurope'), replicated('1.10', 'westeurope'), replicated('1.9', 'westeurope')],
    WANTED,
  );
  const run = extensionsThisRun(all, 2);
  assert.deepEqual(
    run.extend?.map((e) => e.version),
    ['1.10', '1.9'],
  );
  assert.deepEqual(run.extendDeferred, ['1.8']);
  assert.deepEqual(extensionsThisRun(all, 3), { extend: all }, 'within the cap: nothing left for later');
});

describe('BASM_SKIP_VERSIONS', () => {
  const skip = ['1.918', '1.926'];
  const cases: Array<{
    name: string;
    available: string[];
    inGallery: GalleryVersionSummary[];
    max?: number;
    mirror: string[];
    newest: string;
    skipped?: string[];
    deferred?: string[];
    skip?: string[];
  }> = [
    {
      name: 'a skipped newest: the next newest not skipped is what the run is about',
      available: ['1.917', '1.918'],
      inGallery: [],
      mirror: ['1.917:newest'],
      newest: '1.917',
      skipped: ['1.918'],
    },
    {
      name: 'a skipped newest the gallery lacks, the next newest present: nothing to mirror',
      available: ['1.917', '1.918'],
      inGallery: gallery('1.917.0'),
      mirror: [],
      newest: '1.917',
      skipped: ['1.918'],
    },
    {
      name: 'skipped gaps are neither planned nor counted against the cap, nor deferred',
      available: ['1.910', '1.918', '1.920', '1.926', '1.930', '1.931'],
      inGallery: gallery('1.910.0'),
      max: 2,
      mirror: ['1.920:catch-up', '1.931:newest'],
      newest: '1.931',
      skipped: ['1.918', '1.926'],
      deferred: ['1.930'],
    },
    {
      name: 'a skipped version the gallery already holds is not listed as skipped',
      available: ['1.918', '1.919'],
      inGallery: [director('1.918.0'), ...gallery('1.919.0')],
      mirror: [],
      newest: '1.919',
    },
    {
      name: 'bosh.io lists newest first: the skipped versions are still reported oldest first',
      available: ['1.931', '1.926', '1.918', '1.910'],
      inGallery: gallery('1.910.0'),
      mirror: ['1.931:newest'],
      newest: '1.931',
      skipped: ['1.918', '1.926'],
    },
    {
      name: 'a skip entry with a patch part matches the version without one',
      skip: ['1.918.0'],
      available: ['1.917', '1.918'],
      inGallery: [],
      mirror: ['1.917:newest'],
      newest: '1.917',
      skipped: ['1.918'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const rules = { skip: c.skip ?? skip };
      const plan = planSeries(SERIES, releases(...c.available), c.inGallery, c.max ?? 3, rules);
      assert.deepEqual(
        plan.mirror.map((p) => `${p.release.version}:${p.reason}`),
        c.mirror,
      );
      assert.equal(plan.newest.version, c.newest);
      assert.deepEqual(plan.skipped, c.skipped);
      assert.deepEqual(plan.deferred, c.deferred ?? []);
    });
  }

  test('every version bosh.io lists is skipped: an error naming the setting', () => {
    assert.throws(
      () => planSeries(SERIES, releases('1.918', '1.926'), [], 3, { skip }),
      /no version of .* outside BASM_SKIP_VERSIONS \(1\.918, 1\.926\)/,
    );
  });

  test('an explicit request for a skipped version is refused, naming the setting', () => {
    assert.throws(
      () => planRequestedVersion(SERIES, releases('1.918', '1.919'), [], '1.918', { skip }),
      new RegExp(
        `${SERIES} 1\\.918 is in BASM_SKIP_VERSIONS: the mirror never mirrors it; ` +
          'remove it from BASM_SKIP_VERSIONS to mirror it$',
      ),
    );
    assert.equal(isSkippedVersion('1.918.0', skip), true);
    assert.equal(isSkippedVersion('1.9180', skip), false);
  });
});

describe('BASM_KEEP_VERSIONS bounds catch-up', () => {
  const cases: Array<{ name: string; keep: number; inGallery: GalleryVersionSummary[]; mirror: string[] }> = [
    {
      name: 'keep 0: catch-up from the oldest mirrored version, as without retention',
      keep: 0,
      inGallery: gallery('1.10.0'),
      mirror: ['1.11:catch-up', '1.12:catch-up', '1.13:newest'],
    },
    {
      name: 'keep 2: only gaps among the newest two, so retention never deletes what the run made',
      keep: 2,
      inGallery: gallery('1.10.0'),
      mirror: ['1.12:catch-up', '1.13:newest'],
    },
    {
      name: 'keep 2: a Failed version of the mirror below the window is not created again',
      keep: 2,
      inGallery: gallery('1.10.0', ['1.11.0', 'Failed'], '1.12.0'),
      mirror: ['1.13:newest'],
    },
    {
      name: 'keep 1: the newest only',
      keep: 1,
      inGallery: gallery('1.10.0'),
      mirror: ['1.13:newest'],
    },
  ];
  test('the window is the newest keep versions whatever order bosh.io lists them in', () => {
    const listed = releases('1.13', '1.10', '1.12', '1.11');
    assert.equal(oldestKeptRelease(listed, 2)?.version, '1.12');
    assert.equal(oldestKeptRelease(listed, 9)?.version, '1.10');
    assert.equal(oldestKeptRelease(listed, 0), undefined);
  });
  for (const c of cases) {
    test(c.name, () => {
      const plan = planSeries(SERIES, releases('1.10', '1.11', '1.12', '1.13'), c.inGallery, 5, {
        keep: c.keep,
      });
      assert.deepEqual(
        plan.mirror.map((p) => `${p.release.version}:${p.reason}`),
        c.mirror,
      );
    });
  }
});
