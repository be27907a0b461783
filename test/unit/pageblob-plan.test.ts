import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_PAGE_WRITE, planPageWrites, remainingWrites } from '../../src/page-ranges.js';
import { vhdBlobName } from '../../src/pageblob.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('planPageWrites', () => {
  test('writes each scattered extent on its own, never the zero gaps between them', () => {
    const extents = [
      { offset: 0, length: 1024 },
      { offset: 64 * KiB, length: 512 },
      { offset: 5 * MiB, length: 8 * KiB },
    ];

    assert.deepEqual(planPageWrites(extents), extents);
  });

  test('joins extents that touch into one write', () => {
    const extents = [
      { offset: 0, length: 512 },
      { offset: 512, length: 1024 },
      { offset: 1536, length: 512 },
    ];

    assert.deepEqual(planPageWrites(extents), [{ offset: 0, length: 2048 }]);
  });

  test('splits an extent longer than 4 MiB into 4 MiB writes and the rest', () => {
    const extents = [{ offset: 1 * MiB, length: 9 * MiB + 512 }];

    assert.deepEqual(planPageWrites(extents), [
      { offset: 1 * MiB, length: MAX_PAGE_WRITE },
      { offset: 5 * MiB, length: MAX_PAGE_WRITE },
      { offset: 9 * MiB, length: 1 * MiB + 512 },
    ]);
  });

  test('splits at the given smaller write size', () => {
    assert.deepEqual(planPageWrites([{ offset: 0, length: 5 * KiB }], 2 * KiB), [
      { offset: 0, length: 2 * KiB },
      { offset: 2 * KiB, length: 2 * KiB },
      { offset: 4 * KiB, length: 1 * KiB },
    ]);
  });

  test('rounds unaligned extents out to whole 512-byte pages', () => {
    const extents = [
      { offset: 100, length: 10 },
      { offset: 1500, length: 100 },
    ];

    assert.deepEqual(planPageWrites(extents), [
      { offset: 0, length: 512 },
      { offset: 1024, length: 1024 },
    ]);
  });

  test('joins extents that share a page after rounding', () => {
    const extents = [
      { offset: 0, length: 100 },
      { offset: 300, length: 100 },
    ];

    assert.deepEqual(planPageWrites(extents), [{ offset: 0, length: 512 }]);
  });

  test('sorts extents given out of order', () => {
    const extents = [
      { offset: 4096, length: 512 },
      { offset: 0, length: 512 },
    ];

    assert.deepEqual(planPageWrites(extents), [
      { offset: 0, length: 512 },
      { offset: 4096, length: 512 },
    ]);
  });

  test('plans no writes for no extents', () => {
    assert.deepEqual(planPageWrites([]), []);
  });

  test('rejects a write size that is not a multiple of 512 bytes', () => {
    assert.throws(() => planPageWrites([{ offset: 0, length: 512 }], 1000), /multiple of 512/);
  });

  test('rejects a write size above the 4 MiB the service accepts', () => {
    assert.throws(() => planPageWrites([{ offset: 0, length: 512 }], 8 * MiB), /up to 4194304/);
  });
});

describe('remainingWrites', () => {
  const planned = [
    { offset: 0, length: 4 * MiB },
    { offset: 4 * MiB, length: 1 * MiB },
    { offset: 10 * MiB, length: 512 },
  ];

  test('keeps every planned write when nothing is written', () => {
    assert.deepEqual(remainingWrites(planned, []), planned);
  });

  test('keeps nothing when everything is written', () => {
    assert.deepEqual(
      remainingWrites(planned, [
        { offset: 0, length: 5 * MiB },
        { offset: 10 * MiB, length: 512 },
      ]),
      [],
    );
  });

  test('drops planned writes that are written in full and keeps the others whole', () => {
    assert.deepEqual(remainingWrites(planned, [{ offset: 0, length: 4 * MiB }]), [
      { offset: 4 * MiB, length: 1 * MiB },
      { offset: 10 * MiB, length: 512 },
    ]);
  });

  test('keeps only the missing head and tail of a partly written range', () => {
    const written = [{ offset: 1 * MiB, length: 1 * MiB }];

    assert.deepEqual(remainingWrites([{ offset: 0, length: 4 * MiB }], written), [
      { offset: 0, length: 1 * MiB },
      { offset: 2 * MiB, length: 2 * MiB },
    ]);
  });

  test('keeps the gaps between several written ranges inside one planned write', () => {
    const written = [
      { offset: 512, length: 512 },
      { offset: 2048, length: 1024 },
    ];

    assert.deepEqual(remainingWrites([{ offset: 0, length: 4096 }], written), [
      { offset: 0, length: 512 },
      { offset: 1024, length: 1024 },
      { offset: 3072, length: 1024 },
    ]);
  });

  test('handles a written range that spans the end of one planned write and the start of the next', () => {
    const written = [{ offset: 3 * MiB, length: 2 * MiB }];

    assert.deepEqual(remainingWrites(planned, written), [
      { offset: 0, length: 3 * MiB },
      { offset: 10 * MiB, length: 512 },
    ]);
  });

  test('treats written ranges reported in pieces, touching and out of order, as one', () => {
    const written = [
      { offset: 2 * MiB, length: 2 * MiB },
      { offset: 0, length: 1 * MiB },
      { offset: 1 * MiB, length: 1 * MiB },
    ];

    assert.deepEqual(remainingWrites([{ offset: 0, length: 4 * MiB }], written), []);
  });

  test('counts only whole pages of an unaligned written range, so what remains stays 512-aligned', () => {
    const written = [{ offset: 100, length: 1500 }];

    assert.deepEqual(remainingWrites([{ offset: 0, length: 2048 }], written), [
      { offset: 0, length: 512 },
      { offset: 1536, length: 512 },
    ]);
  });
});

describe('vhdBlobName', () => {
  test('names the blob after series and version, keeping root.vhd', () => {
    assert.equal(
      vhdBlobName('bosh-azure-hyperv-ubuntu-jammy-go_agent', '1.1364'),
      'bosh-azure-hyperv-ubuntu-jammy-go_agent/1.1364/root.vhd',
    );
  });

  test('rejects a version that would add a path segment', () => {
    assert.throws(
      () => vhdBlobName('bosh-azure-hyperv-ubuntu-noble', '../1.0'),
      /stemcell version '\.\.\/1\.0'/,
    );
  });

  test('rejects an empty series', () => {
    assert.throws(() => vhdBlobName('', '1.0'), /stemcell series ''/);
  });
});
