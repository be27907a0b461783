import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareStemcellVersions, galleryVersionName, isStemcellVersion } from '../../src/versions.js';

test('versions order numerically, not as text', () => {
  const sorted = ['1.999', '1.1364', '1.2', '621.994', '1.10', '2'].sort(compareStemcellVersions);
  assert.deepEqual(sorted, ['1.2', '1.10', '1.999', '1.1364', '2', '621.994']);
});

test('missing parts count as zero', () => {
  assert.equal(compareStemcellVersions('1.0', '1'), 0);
  assert.equal(compareStemcellVersions('1.0.1', '1'), 1);
});

test('gallery version names are Major.Minor.Patch', () => {
  assert.equal(galleryVersionName('1.1364'), '1.1364.0');
  assert.equal(galleryVersionName('621'), '621.0.0');
  assert.equal(galleryVersionName('1.2.3'), '1.2.3');
});

test('only plain numeric versions whose parts fit 32-bit integers are accepted', () => {
  for (const good of ['1', '1.1364', '0.1.2']) assert.ok(isStemcellVersion(good), good);
  for (const bad of ['', 'latest', '1.', '.1', '1.2.3.4', '01.2', '1.2-rc', '1.2147483648', ' 1.2']) {
    assert.equal(isStemcellVersion(bad), false, bad);
  }
  assert.throws(() => galleryVersionName('1.x'), /not a stemcell version/);
});

test('a part of exactly 2^31-1 still fits the gallery; 2^31 does not', () => {
  assert.equal(galleryVersionName('2147483647.1'), '2147483647.1.0');
  assert.equal(isStemcellVersion('1.2147483648'), false);
});

test('comparison looks at the major, then the minor, then the patch part', () => {
  assert.ok(compareStemcellVersions('2.0', '1.9') > 0);
  assert.ok(compareStemcellVersions('1.9', '2.0') < 0);
  assert.ok(compareStemcellVersions('1.2.3', '1.2.4') < 0);
  assert.ok(compareStemcellVersions('1.3.0', '1.2.9') > 0);
  assert.equal(compareStemcellVersions('1.2.3', '1.2.3'), 0);
});
