/**
 * The release the workflow's tests plan and mirror: one series' version 1.100 as bosh.io lists it. Kept apart
 * from the replay helpers so the in-process runner's tests use it without loading the Functions host.
 */

import type { StemcellRelease } from '../../src/boshio.js';

export const SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';

export const release: StemcellRelease = {
  series: SERIES,
  version: '1.100',
  url: `https://bosh.io/d/stemcells/${SERIES}?v=1.100`,
  size: 1_300_000_000,
  sha256: 'ab'.repeat(32),
};
