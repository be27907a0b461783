import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ImageDefinitionSpec } from '../../src/cpi.js';
import {
  definitionDrift,
  describeDrift,
  driftRefusal,
  type ExistingDefinition,
} from '../../src/definition-features.js';

const gen2: ImageDefinitionSpec = {
  name: 'bosh-azure-hyperv-ubuntu-noble-gen2',
  publisher: 'bosh',
  offer: 'bosh-azure-hyperv-ubuntu-noble-gen2',
  sku: 'gen2',
  osType: 'Linux',
  osState: 'Generalized',
  hyperVGeneration: 'V2',
  architecture: 'x64',
  features: [
    { name: 'DiskControllerTypes', value: 'SCSI,NVMe' },
    { name: 'IsAcceleratedNetworkSupported', value: 'True' },
    { name: 'SecurityType', value: 'TrustedLaunchSupported' },
  ],
};
const gen2Definition: ExistingDefinition = {
  osType: 'Linux',
  osState: 'Generalized',
  hyperVGeneration: 'V2',
  architecture: 'x64',
  features: gen2.features!.map((f) => ({ ...f })),
};
const { features: _, ...gen1 } = { ...gen2, hyperVGeneration: 'V1' as const };

const drifted = (existing: ExistingDefinition, spec: ImageDefinitionSpec = gen2) =>
  definitionDrift(existing, spec).map((d) => [d.property, d.definition, d.stemcell]);

test('feature drift: a definition as the CPI would create it fits the stemcell', () => {
  assert.deepEqual(definitionDrift(gen2Definition, gen2), []);
});

test('feature drift: what each side leaves out counts as Azure default, so spellings of one meaning fit', () => {
  const fits: Array<[string, ExistingDefinition, ImageDefinitionSpec]> = [
    ['gen1 without features, nothing said', { osType: 'Linux' }, gen1],
    [
      'defaults spelled out on the definition',
      {
        osType: 'linux',
        features: [
          { name: 'SecurityType', value: 'Standard' },
          { name: 'DiskControllerTypes', value: 'SCSI' },
          { name: 'IsAcceleratedNetworkSupported', value: 'False' },
          { name: 'IsHibernateSupported', value: 'False' },
        ],
      },
      gen1,
    ],
    [
      'controllers in another order and case, feature names in another case',
      {
        ...gen2Definition,
        features: [
          { name: 'securitytype', value: 'trustedlaunchsupported' },
          { name: 'DiskControllerTypes', value: 'nvme, scsi' },
          { name: 'IsAcceleratedNetworkSupported', value: 'true' },
        ],
      },
      gen2,
    ],
    [
      'values with spaces around them',
      {
        ...gen2Definition,
        features: gen2Definition.features!.map((f) => ({ ...f, value: ` ${f.value ?? ''} ` })),
      },
      gen2,
    ],
    [
      'an empty entry in a controller list',
      { osType: 'Linux', features: [{ name: 'DiskControllerTypes', value: 'SCSI,' }] },
      gen1,
    ],
    [
      'features without a name are ignored',
      { osType: 'Linux', features: [{ value: 'True' }, { name: '', value: 'True' }] },
      gen1,
    ],
    [
      'a feature without a value is its empty value',
      { osType: 'Linux', features: [{ name: 'IsSecureBootSupported' }] },
      { ...gen1, features: [{ name: 'IsSecureBootSupported', value: '' }] },
    ],
  ];
  for (const [why, existing, spec] of fits) assert.deepEqual(definitionDrift(existing, spec), [], why);
});

test('feature drift: each difference is named with both sides, in a fixed order', () => {
  const cases: Array<[string, ExistingDefinition, ImageDefinitionSpec, string[][]]> = [
    [
      'gen1 definition, gen2 stemcell',
      { ...gen2Definition, hyperVGeneration: 'V1' },
      gen2,
      [['hyperVGeneration', 'V1', 'V2']],
    ],
    [
      'no generation on the definition means V1',
      { ...gen2Definition, hyperVGeneration: undefined },
      gen2,
      [['hyperVGeneration', 'V1', 'V2']],
    ],
    [
      'Arm64 definition, x64 stemcell',
      { ...gen2Definition, architecture: 'Arm64' },
      gen2,
      [['architecture', 'Arm64', 'x64']],
    ],
    ['Windows definition', { ...gen2Definition, osType: 'Windows' }, gen2, [['osType', 'Windows', 'Linux']]],
    [
      'SCSI-only definition, NVMe stemcell (Dv6)',
      {
        ...gen2Definition,
        features: gen2Definition.features!.filter((f) => f.name !== 'DiskControllerTypes'),
      },
      gen2,
      [['DiskControllerTypes', 'SCSI', 'SCSI,NVMe']],
    ],
    [
      'Trusted Launch missing',
      { ...gen2Definition, features: gen2Definition.features!.filter((f) => f.name !== 'SecurityType') },
      gen2,
      [['SecurityType', 'Standard', 'TrustedLaunchSupported']],
    ],
    [
      'accelerated networking off, hibernation on',
      {
        ...gen2Definition,
        features: [
          { name: 'DiskControllerTypes', value: 'SCSI,NVMe' },
          { name: 'IsAcceleratedNetworkSupported', value: 'False' },
          { name: 'SecurityType', value: 'TrustedLaunchSupported' },
          { name: 'IsHibernateSupported', value: 'True' },
        ],
      },
      gen2,
      [
        ['IsAcceleratedNetworkSupported', 'False', 'True'],
        ['IsHibernateSupported', 'True', 'False'],
      ],
    ],
    [
      'a feature without a known default on one side only',
      { osType: 'Linux', features: [{ name: 'IsSecureBootSupported', value: 'True' }] },
      gen1,
      [['IsSecureBootSupported', 'True', '(not set)']],
    ],
    [
      'a feature without a known default that only the stemcell has',
      { osType: 'Linux' },
      { ...gen1, features: [{ name: 'IsSecureBootSupported', value: 'True' }] },
      [['IsSecureBootSupported', '(not set)', 'True']],
    ],
    [
      'only the controller list compares as a set: another feature compares as its whole value',
      { osType: 'Linux', features: [{ name: 'IsSecureBootSupported', value: 'True,False' }] },
      { ...gen1, features: [{ name: 'IsSecureBootSupported', value: 'False,True' }] },
      [['IsSecureBootSupported', 'True,False', 'False,True']],
    ],
    ['a definition without an OS type', {}, gen1, [['osType', '(none)', 'Linux']]],
    [
      'generation and architecture before features',
      {
        osType: 'Linux',
        architecture: 'Arm64',
        features: [{ name: 'SecurityType', value: 'ConfidentialVM' }],
      },
      gen2,
      [
        ['hyperVGeneration', 'V1', 'V2'],
        ['architecture', 'Arm64', 'x64'],
        ['DiskControllerTypes', 'SCSI', 'SCSI,NVMe'],
        ['IsAcceleratedNetworkSupported', 'False', 'True'],
        ['SecurityType', 'ConfidentialVM', 'TrustedLaunchSupported'],
      ],
    ],
  ];
  for (const [why, existing, spec, expected] of cases)
    assert.deepEqual(drifted(existing, spec), expected, why);
});

test('feature drift: every drift says what it does to a director VM', () => {
  const drifts = definitionDrift({ osType: 'Linux', architecture: 'Arm64' }, gen2);
  for (const drift of drifts) assert.ok(drift.consequence.length > 10, drift.property);
  assert.match(
    describeDrift(drifts),
    /DiskControllerTypes is SCSI there but the stemcell needs SCSI,NVMe \(.*Dv6/,
  );
  assert.match(
    describeDrift(drifts),
    /SecurityType is Standard there but the stemcell needs TrustedLaunchSupported \(.*Trusted Launch/,
  );
});

test('feature drift: each property and feature has its own consequence, any other a general one', () => {
  const drifts = definitionDrift(
    {
      osType: 'Windows',
      osState: 'Specialized',
      architecture: 'Arm64',
      features: [
        { name: 'IsHibernateSupported', value: 'True' },
        { name: 'IsSecureBootSupported', value: 'True' },
      ],
    },
    gen2,
  );
  assert.deepEqual(
    drifts.map((d) => [d.property, d.consequence]),
    [
      ['osType', 'Azure provisions the VM for the wrong operating system'],
      ['osState', 'Azure provisions the VM as if the image were not generalized'],
      [
        'hyperVGeneration',
        'the VM starts the image with the wrong firmware (BIOS or UEFI) and does not boot',
      ],
      ['architecture', "no VM of the stemcell's architecture can be created from it"],
      [
        'DiskControllerTypes',
        'it decides which VM sizes can boot the image (NVMe-only sizes such as Dv6 need NVMe)',
      ],
      [
        'IsAcceleratedNetworkSupported',
        'it decides whether VMs from the image may use accelerated networking',
      ],
      ['SecurityType', 'it decides whether Trusted Launch or confidential VMs can be created from the image'],
      ['IsHibernateSupported', 'it decides whether VMs from the image may hibernate'],
      ['IsSecureBootSupported', 'Azure applies it to every VM created from the image'],
    ],
  );
  assert.match(
    describeDrift(drifts.slice(0, 2)),
    /^osType is Windows there but the stemcell needs Linux \([^)]*\); osState is Specialized there/,
  );
});

test('feature drift: the refusal names the definition, the stemcell, what the CPI would do and the way out', () => {
  const message = driftRefusal(
    gen2.name,
    'bosh-azure-hyperv-ubuntu-noble 1.10',
    'gallery g',
    definitionDrift({ ...gen2Definition, hyperVGeneration: 'V1' }, gen2),
  );
  assert.match(
    message,
    /^Image definition bosh-azure-hyperv-ubuntu-noble-gen2 in gallery g does not fit stemcell bosh-azure-hyperv-ubuntu-noble 1\.10: hyperVGeneration is V1 there but the stemcell needs V2/,
  );
  assert.match(message, /CPI would not notice: it uses an existing definition as it is/);
  assert.match(message, /Nothing was created\./);
  assert.match(message, /changes features only for all its versions at once \(allowUpdateImage\)/);
  assert.match(
    message,
    /delete the definition and its versions, and the next run creates it as the CPI would\.$/,
  );
  assert.match(
    driftRefusal('d', 's', 'g', [], 'A run would create nothing.'),
    /A run would create nothing\./,
  );
});
