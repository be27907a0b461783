/**
 * The status model: one series' status from bosh.io's list, the gallery's versions and the last run,
 * decided by the same planSeries the next run uses; and the terminal table.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StemcellRelease } from '../../src/boshio.js';
import { directorReferenceCount, versionOrigin } from '../../src/cpi.js';
import type { ImageVersionState } from '../../src/gallery.js';
import { formatStatus, recordedKey, seriesStatusOf } from '../../src/status.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-noble';

const releases = (...versions: string[]): StemcellRelease[] =>
  versions.map((version) => ({ series: SERIES, version, url: `https://bosh.io/d/${version}`, size: 1 }));

function inGallery(
  name: string,
  tags: Record<string, string>,
  provisioningState = 'Succeeded',
): ImageVersionState & { definitionName: string } {
  return {
    name,
    provisioningState,
    tags,
    definitionName: SERIES,
    regions: [{ name: 'westeurope', state: 'Completed' }],
  };
}

const MIRROR = { stemcell_references: 'bosh-azure-stemcell-mirror', mirror_notified: 'off' };

test('who made a version, from its tags: mirror, adopted, director or other', () => {
  assert.equal(
    versionOrigin({ stemcell_references: 'bosh-azure-stemcell-mirror,bosh-stemcell-1' }),
    'mirror',
  );
  assert.equal(
    versionOrigin({ stemcell_references: 'bosh-stemcell-1, bosh-azure-stemcell-mirror' }),
    'adopted',
  );
  assert.equal(versionOrigin({ stemcell_references: 'bosh-stemcell-1' }), 'director');
  assert.equal(versionOrigin({ stemcell_name: 'bosh-stemcell-1' }), 'director');
  assert.equal(versionOrigin({ owner: 'someone' }), 'other');
});

test('director references leave out the mirror’s own entry', () => {
  assert.equal(directorReferenceCount({ stemcell_references: 'bosh-azure-stemcell-mirror' }), 0);
  assert.equal(
    directorReferenceCount({
      stemcell_references: 'bosh-stemcell-1,bosh-azure-stemcell-mirror,bosh-stemcell-2',
    }),
    2,
  );
  assert.equal(directorReferenceCount({}), 0);
});

test('a gallery with only a director’s old upload: the newest is mirrored, the rest skipped without backfill', () => {
  const status = seriesStatusOf(
    SERIES,
    releases('1.1', '1.2', '1.3'),
    [inGallery('1.1.0', { stemcell_references: 'bosh-stemcell-9', version: '1.1' })],
    3,
    null,
  );

  assert.equal(status.newest, '1.3');
  assert.deepEqual(
    status.versions.map((v) => [v.version, v.createdBy, v.references, v.notified]),
    [['1.1', 'director', 1, false]],
  );
  assert.deepEqual(status.missing, [
    { version: '1.3', galleryVersion: '1.3.0', reason: 'newest on bosh.io' },
    // Not adopted yet (no mirror_notified): the next run adds the mirror's reference.
    {
      version: '1.1',
      galleryVersion: '1.1.0',
      reason: 'no record of a finished run: wait for it, adopt a director’s, notify',
    },
  ]);
  assert.deepEqual(status.skipped, [
    {
      version: '1.2',
      galleryVersion: '1.2.0',
      reason: 'older than the newest, and the gallery holds no version the mirror made: no backfill',
    },
  ]);
  assert.equal(status.lastRun, null);
});

test('a Failed version of the mirror’s is in the next run; an older one it did not make is skipped, saying why', () => {
  const status = seriesStatusOf(
    SERIES,
    releases('1.1', '1.2', '1.3', '1.4'),
    [
      inGallery('1.1.0', { owner: 'someone' }, 'Failed'),
      inGallery('1.2.0', MIRROR),
      inGallery('1.3.0', MIRROR, 'Failed'),
      inGallery('1.4.0', MIRROR),
    ],
    3,
    null,
  );

  assert.deepEqual(
    status.missing.map((m) => [m.version, m.reason]),
    [['1.3', 'Azure failed it: recreated if the mirror made it or it holds the same image']],
  );
  assert.deepEqual(status.skipped, [
    {
      version: '1.1',
      galleryVersion: '1.1.0',
      reason: 'Azure failed it and the mirror did not make it: it is left to whoever did',
    },
  ]);
  assert.deepEqual(
    status.versions.map((v) => [v.galleryVersion, v.createdBy, v.provisioningState]),
    [
      ['1.1.0', 'other', 'Failed'],
      ['1.2.0', 'mirror', 'Succeeded'],
      ['1.3.0', 'mirror', 'Failed'],
      ['1.4.0', 'mirror', 'Succeeded'],
    ],
  );
});

test('fault: a Failed version of the mirror’s that a director uses is not in the next run; skipped says why and what to do', () => {
  const status = seriesStatusOf(
    SERIES,
    releases('1.1', '1.2', '1.3'),
    [
      inGallery('1.1.0', MIRROR),
      inGallery(
        '1.2.0',
        { ...MIRROR, stemcell_references: `${MIRROR.stemcell_references},bosh-stemcell-1` },
        'Failed',
      ),
      // An older CPI recorded its stemcell in stemcell_name: in use too.
      inGallery('1.3.0', { ...MIRROR, stemcell_name: 'bosh-stemcell-2' }, 'Failed'),
    ],
    3,
    null,
  );

  assert.deepEqual(status.missing, []);
  const reason =
    'Azure failed it and a director uses it: every run reports it failed, downloading nothing, until an operator ' +
    'removes the failed region from it or deletes it';
  assert.deepEqual(status.skipped, [
    { version: '1.2', galleryVersion: '1.2.0', reason },
    { version: '1.3', galleryVersion: '1.3.0', reason },
  ]);
});

test('the versions the next run extends to a region added to BASM_TARGET_REGIONS, newest first, the rest left for later', () => {
  const replicatedIn = (name: string) => ({
    ...inGallery(name, MIRROR),
    targetRegions: [{ name: 'westeurope', regionalReplicaCount: 1 }],
  });
  const targetRegions = [
    { name: 'westeurope', regionalReplicaCount: 1 },
    { name: 'eastus', regionalReplicaCount: 1 },
  ];
  const status = seriesStatusOf(
    SERIES,
    releases('1.1', '1.2', '1.3'),
    [replicatedIn('1.1.0'), replicatedIn('1.2.0'), replicatedIn('1.3.0')],
    2,
    null,
    new Set(),
    false,
    { targetRegions },
  );

  assert.deepEqual(status.extend, [
    { version: '1.3', galleryVersion: '1.3.0', reason: 'adds eastus' },
    { version: '1.2', galleryVersion: '1.2.0', reason: 'adds eastus' },
  ]);
  assert.deepEqual(status.extendDeferred, [
    {
      version: '1.1',
      galleryVersion: '1.1.0',
      reason: 'BASM_MAX_VERSIONS_PER_RUN reached; a later run extends it (adds eastus)',
    },
  ]);
  const text = formatStatus({ series: [status] });
  assert.match(text, /\n {2}extend: {3}1\.3 \(adds eastus\), 1\.2 \(adds eastus\)\n/);
  assert.match(text, /\n {2}extend later: 1\.1 \(BASM_MAX_VERSIONS_PER_RUN reached/);
  assert.doesNotMatch(text, /nothing to do/);

  const none = seriesStatusOf(SERIES, releases('1.3'), [replicatedIn('1.3.0')], 2, null, new Set(), false, {
    targetRegions: [{ name: 'westeurope', regionalReplicaCount: 1 }],
  });
  assert.equal('extend' in none || 'extendDeferred' in none, false, 'no new field when nothing is to extend');
});

test('a version the mirror made but did not finish is what the next run does, outside the cap', () => {
  const status = seriesStatusOf(
    SERIES,
    releases('1.1', '1.2'),
    [
      inGallery('1.1.0', MIRROR),
      inGallery('1.2.0', { stemcell_references: 'bosh-azure-stemcell-mirror' }, 'Creating'),
    ],
    1,
    null,
  );

  assert.deepEqual(status.missing, [
    {
      version: '1.2',
      galleryVersion: '1.2.0',
      reason: 'no record of a finished run: wait for it, adopt a director’s, notify',
    },
  ]);
});

test('bosh.io unreadable: the gallery is still shown, nothing is decided', () => {
  const status = seriesStatusOf(SERIES, null, [inGallery('1.1.0', { ...MIRROR, version: '1.1' })], 3, null);

  assert.equal(status.newest, null);
  assert.equal(status.versions[0]?.version, '1.1', 'the version comes from the tags');
  assert.deepEqual([status.missing, status.deferred, status.skipped], [[], [], []]);
});

test('the table says many skipped versions once, with their range and reason', () => {
  const versions = Array.from({ length: 12 }, (_, i) => `1.${i + 1}`);
  const status = seriesStatusOf(
    SERIES,
    releases(...versions),
    [inGallery('1.11.0', MIRROR), inGallery('1.12.0', MIRROR)],
    3,
    {
      series: SERIES,
      runner: 'functions',
      startedAt: '2026-12-02T06:00:00.000Z',
      finishedAt: '2026-12-02T06:00:04.000Z',
      outcome: 'succeeded',
      versions: [{ version: '1.12', galleryVersion: '1.12.0', action: 'exists' }],
    },
  );

  const text = formatStatus({ series: [status] });

  assert.deepEqual(text.split('\n'), [
    `${SERIES}  (newest on bosh.io: 1.12)`,
    '  VERSION  GALLERY  STATE      REGIONS               BY      REFS  NOTIFIED',
    '  1.11     1.11.0   Succeeded  westeurope:Completed  mirror  0     yes',
    '  1.12     1.12.0   Succeeded  westeurope:Completed  mirror  0     yes',
    '  skipped:  10 versions, 1.1 to 1.10 (older than 1.11, the oldest version the mirror made: no backfill below it)',
    '  next run: nothing to do',
    '  last run: 2026-12-02T06:00:04.000Z by functions, succeeded (1.12 exists)',
    '',
  ]);
});

test('a version whose finished run is recorded in storage (Azure refused the tag) is notified and finished', () => {
  const untagged = inGallery('1.2.0', { stemcell_references: 'bosh-azure-stemcell-mirror' });

  const without = seriesStatusOf(SERIES, releases('1.2'), [untagged], 3, null);
  const recorded = seriesStatusOf(
    SERIES,
    releases('1.2'),
    [untagged],
    3,
    null,
    new Set([recordedKey(SERIES, '1.2.0')]),
  );

  assert.deepEqual([without.versions[0]?.notified, without.missing.map((m) => m.version)], [false, ['1.2']]);
  assert.deepEqual([recorded.versions[0]?.notified, recorded.missing], [true, []]);
});

test('status plans with BASM_SKIP_VERSIONS and BASM_KEEP_VERSIONS as the next run does, and says why a version is left out', () => {
  const status = seriesStatusOf(
    SERIES,
    releases('1.1', '1.2', '1.3', '1.4', '1.5'),
    [inGallery('1.1.0', MIRROR)],
    5,
    null,
    new Set(),
    false,
    { skip: ['1.5'], keep: 2 },
  );

  assert.equal(status.newest, '1.4');
  assert.deepEqual(
    status.missing.map((m) => m.version),
    ['1.3', '1.4'],
  );
  assert.deepEqual(
    status.skipped.map((s) => [s.version, s.reason]),
    [
      ['1.2', 'older than the newest 2 (BASM_KEEP_VERSIONS): retention would delete it again'],
      ['1.5', 'BASM_SKIP_VERSIONS: never mirrored'],
    ],
  );
});
