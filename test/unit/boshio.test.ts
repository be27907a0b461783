import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoshioError, parseStemcellListing } from '../../src/boshio.js';

const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

function entry(version: string, regular: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: SERIES,
    version,
    regular: {
      url: `https://storage.googleapis.com/bosh-core-stemcells/${version}/bosh-stemcell-${version}-azure-hyperv-ubuntu-jammy-go_agent.tgz`,
      size: 1_300_000_000,
      md5: '',
      sha1: '1'.repeat(40),
      sha256: 'A'.repeat(64),
      ...regular,
    },
  };
}

test('a listing is parsed and sorted oldest first by number', () => {
  const releases = parseStemcellListing(SERIES, [entry('1.999'), entry('1.1364'), entry('1.10')]);
  assert.deepEqual(
    releases.map((r) => r.version),
    ['1.10', '1.999', '1.1364'],
  );
  assert.equal(releases[0]?.sha256, 'a'.repeat(64), 'digests are normalised to lowercase');
  assert.equal(releases[0]?.size, 1_300_000_000);
});

test('an entry with only sha1 is accepted; an empty sha256 is treated as absent', () => {
  const [release] = parseStemcellListing(SERIES, [entry('1.1', { sha256: '' })]);
  assert.equal(release?.sha256, undefined);
  assert.equal(release?.sha1, '1'.repeat(40));
});

test('fault: invalid listings are refused with the entry named', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ not: 'an array' }, /not a JSON array/],
    [[entry('1.1', { url: undefined })], /#0 .*1\.1.* no regular\.url/],
    [[entry('1.1', { sha1: '', sha256: '' })], /neither regular\.sha256 nor regular\.sha1/],
    [[entry('1.1', { sha256: 'xyz' })], /malformed sha256/],
    [[{ name: SERIES, version: '1.1' }], /no "regular" tarball/],
    [[entry('latest')], /version "latest"/],
    [[{ ...entry('1.1'), name: 'another-series' }], /named "another-series"/],
    [[entry('1.1'), entry('1.1')], /twice/],
    [
      [entry('1.1', { url: 'http://storage.example/x.tgz' })],
      /at storage\.example over plain http: refused, https is required/,
    ],
    [[entry('1.1', { size: undefined })], /has no regular\.size, so its download cannot be bounded/],
    [[entry('1.1', { size: 0 })], /has no regular\.size/],
    [[entry('1.1', { size: '1300000000' })], /has no regular\.size/],
  ];
  for (const [body, message] of cases) {
    assert.throws(
      () => parseStemcellListing(SERIES, body),
      (error: unknown) => error instanceof BoshioError && message.test(error.message) && !error.transient,
      String(message),
    );
  }
});
