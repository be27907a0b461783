import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  describeChange,
  describeFailedRegions,
  describeReplication,
  extendedTargetRegions,
  isNoChange,
  parseTargetRegions,
  regionKey,
  replicationProgress,
  targetRegionChange,
} from '../../src/target-regions.js';

const PARSED: Array<[text: string, regions: Array<[string, number]>]> = [
  ['westeurope', [['westeurope', 1]]],
  ['westeurope=1', [['westeurope', 1]]],
  ['westeurope = 2', [['westeurope', 2]]],
  // A value pasted from a file often ends in a newline.
  ['westeurope=2\n', [['westeurope', 2]]],
  [
    'westeurope=2,eastus',
    [
      ['westeurope', 2],
      ['eastus', 1],
    ],
  ],
  [
    'eastus, westeurope=100',
    [
      ['eastus', 1],
      ['westeurope', 100],
    ],
  ],
  [
    'West Europe=3,East US 2',
    [
      ['westeurope', 3],
      ['eastus2', 1],
    ],
  ],
];

for (const [text, regions] of PARSED) {
  test(`"${text}" is ${regions.map(([n, c]) => `${n}x${c}`).join(', ')}`, () => {
    assert.deepEqual(parseTargetRegions(text, 'westeurope'), {
      regions: regions.map(([name, regionalReplicaCount]) => ({ name, regionalReplicaCount })),
    });
  });
}

const REFUSED: Array<[text: string, problem: RegExp]> = [
  ['eastus', /must include AZURE_REGION westeurope/],
  ['westeurope,westeurope=2', /names westeurope twice/],
  ['westeurope,West Europe', /names westeurope twice/],
  ['westeurope=0', /replica count must be a whole number from 1 to 100/],
  ['westeurope=101', /replica count must be a whole number from 1 to 100/],
  ['westeurope=two', /replica count must be a whole number from 1 to 100/],
  ['westeurope=', /replica count must be a whole number from 1 to 100/],
  ['westeurope,,eastus', /"" is not a region name/],
  ['west-europe', /"west-europe" is not a region name/],
  ['westeurope=1=2', /replica count/],
  ['westeurope, west-europe', /^"west-europe" is not a region name/],
  ['eastus, westeurope=0', /^"westeurope=0": the replica count/],
  ['westeurope=\neastus', /^"westeurope=\neastus" is not a region name/],
];

for (const [text, problem] of REFUSED) {
  test(`"${text}" is refused: ${problem.source}`, () => {
    const parsed = parseTargetRegions(text, 'westeurope');
    assert.ok('problems' in parsed, JSON.stringify(parsed));
    assert.match(parsed.problems.join('; '), problem);
  });
}

test('a text with a bad entry is refused for that alone, not also for lacking the gallery region', () => {
  assert.deepEqual(parseTargetRegions('eastus=0', 'westeurope'), {
    problems: ['"eastus=0": the replica count must be a whole number from 1 to 100'],
  });
});

test('a region key drops spaces and case, and a missing name is empty', () => {
  assert.equal(regionKey('East  US 2'), 'eastus2');
  assert.equal(regionKey(undefined), '');
});

const wanted = [
  { name: 'westeurope', regionalReplicaCount: 2 },
  { name: 'eastus', regionalReplicaCount: 1 },
];

test('a version lacking a region and replicas gets both; the reason says so', () => {
  const change = targetRegionChange([{ name: 'West Europe', regionalReplicaCount: 1 }], wanted);
  assert.deepEqual(change, { added: ['eastus'], raised: [{ name: 'westeurope', from: 1, to: 2 }] });
  assert.equal(describeChange(change), 'adds eastus; westeurope 1 -> 2 replicas');
  assert.equal(isNoChange(change), false);
});

test("a raise starts from the version's own replica count, 1 when Azure reports none", () => {
  const change = targetRegionChange(
    [{ name: 'westeurope', regionalReplicaCount: 2 }, { name: 'eastus' }],
    [
      { name: 'westeurope', regionalReplicaCount: 3 },
      { name: 'eastus', regionalReplicaCount: 2 },
    ],
  );
  assert.deepEqual(change.raised, [
    { name: 'westeurope', from: 2, to: 3 },
    { name: 'eastus', from: 1, to: 2 },
  ]);
  assert.equal(isNoChange(change), false);
  assert.equal(describeChange(change), 'westeurope 2 -> 3 replicas; eastus 1 -> 2 replicas');
});

test('regions only added are listed together; nothing lacking is no change', () => {
  const added = { added: ['eastus', 'northeurope'], raised: [] };
  assert.equal(describeChange(added), 'adds eastus, northeurope');
  assert.equal(isNoChange(added), false);
  assert.equal(isNoChange({ added: [], raised: [] }), true);
});

test('a region the settings dropped, or more replicas than wanted, is no change: nothing is ever removed', () => {
  const current = [
    { name: 'westeurope', regionalReplicaCount: 5 },
    { name: 'eastus', regionalReplicaCount: 1 },
    { name: 'northeurope', regionalReplicaCount: 1 },
  ];
  assert.deepEqual(targetRegionChange(current, wanted), { added: [], raised: [] });
  assert.deepEqual(
    extendedTargetRegions(current, wanted, 'Standard_ZRS').map((r) => [r.name, r.regionalReplicaCount]),
    [
      ['westeurope', 5],
      ['eastus', 1],
      ['northeurope', 1],
    ],
  );
});

test('an extension keeps existing regions as Azure spells them, with their storage type, and adds the new ones', () => {
  assert.deepEqual(
    extendedTargetRegions(
      [{ name: 'West Europe', regionalReplicaCount: 1, storageAccountType: 'Standard_LRS' }],
      wanted,
      'Premium_LRS',
    ),
    [
      { name: 'West Europe', regionalReplicaCount: 2, storageAccountType: 'Standard_LRS' },
      { name: 'eastus', regionalReplicaCount: 1, storageAccountType: 'Premium_LRS' },
    ],
  );
});

const PROGRESS: Array<
  [what: string, states: string[], complete: boolean, pending: string[], failed: string[]]
> = [
  ['every region Completed', ['Completed', 'Completed'], true, [], []],
  ['one still Replicating', ['Completed', 'Replicating'], false, ['eastus'], []],
  ['one Unknown', ['Unknown', 'Completed'], false, ['westeurope'], []],
  ['one Failed', ['Completed', 'Failed'], false, [], ['eastus']],
  ['no regions reported', [], true, [], []],
];

for (const [what, states, complete, pending, failed] of PROGRESS) {
  test(`replication with ${what} is ${complete ? 'complete' : 'not complete'}`, () => {
    const regions = states.map((state, i) => ({ name: ['westeurope', 'eastus'][i] ?? '', state }));
    const progress = replicationProgress(regions);
    assert.equal(progress.complete, complete);
    assert.deepEqual(progress.pending, pending);
    assert.deepEqual(
      progress.failed.map((f) => f.name),
      failed,
    );
  });
}

test("a failed region is named with Azure's details", () => {
  const progress = replicationProgress([
    { name: 'westeurope', state: 'Completed' },
    { name: 'eastus', state: 'Failed', details: 'Quota exceeded.' },
  ]);
  assert.equal(describeFailedRegions(progress.failed), 'eastus (Quota exceeded.)');
  assert.equal(
    describeFailedRegions([{ name: 'eastus', details: 'Quota exceeded.' }, { name: 'westus' }]),
    'eastus (Quota exceeded.); westus',
  );
});

test('an answer without replicationStatus is complete: the provisioning state decides alone', () => {
  assert.deepEqual(replicationProgress(undefined), { complete: true, pending: [], failed: [] });
});

test('a progress line shows each region, with a percentage only while it replicates', () => {
  assert.equal(
    describeReplication([
      { name: 'westeurope', state: 'Completed', progress: 100 },
      { name: 'eastus', state: 'Replicating', progress: 40 },
      { name: 'northeurope', state: 'Replicating' },
      { name: 'westus', state: 'Unknown' },
    ]),
    'westeurope Completed, eastus Replicating 40%, northeurope Replicating, westus Unknown',
  );
  assert.equal(describeReplication([]), '');
});
