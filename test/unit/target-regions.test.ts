import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  describeChange,
  describeFailedRegions,
  extendedTargetRegions,
  parseTargetRegions,
  replicationProgress,
  targetRegionChange,
} from '../../src/target-regions.js';

const PARSED: Array<[text: string, regions: Array<[string, number]>]> = [
  ['westeurope', [['westeurope', 1]]],
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
];

for (const [text, problem] of REFUSED) {
  test(`"${text}" is refused: ${problem.source}`, () => {
    const parsed = parseTargetRegions(text, 'westeurope');
    assert.ok('problems' in parsed, JSON.stringify(parsed));
    assert.match(parsed.problems.join('; '), problem);
  });
}

const wanted = [
  { name: 'westeurope', regionalReplicaCount: 2 },
  { name: 'eastus', regionalReplicaCount: 1 },
];

test('a version lacking a region and replicas gets both; the reason says so', () => {
  const change = targetRegionChange([{ name: 'West Europe', regionalReplicaCount: 1 }], wanted);
  assert.deepEqual(change, { added: ['eastus'], raised: [{ name: 'westeurope', from: 1, to: 2 }] });
  assert.equal(describeChange(change), 'adds eastus; westeurope 1 -> 2 replicas');
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
});
