import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StemcellError, parseStemcellManifest } from '../../src/manifest.js';

const VALID = `---
name: bosh-azure-hyperv-ubuntu-jammy-go_agent
version: '1.100'
bosh_protocol: '1'
api_version: 3
sha1: 42C748086E55A532CCD4743ED58406ED0227D740
operating_system: ubuntu-jammy
stemcell_formats:
- azure-vhd
cloud_properties:
  name: bosh-azure-hyperv-ubuntu-jammy-go_agent
  version: '1.100'
  infrastructure: azure
  hypervisor: hyperv
  disk: 5120
  disk_format: vhd
  container_format: bare
  os_type: linux
  os_distro: ubuntu
  architecture: x86_64
  root_device_name: /dev/sda1
`;

function without(field: string): string {
  return VALID.split('\n')
    .filter((line) => !line.startsWith(`${field}:`) && !line.startsWith(`  ${field}:`))
    .join('\n');
}

test('a valid Azure stemcell.MF parses into typed fields', () => {
  const manifest = parseStemcellManifest(VALID);
  assert.deepEqual(
    { ...manifest, cloudProperties: { ...manifest.cloudProperties, raw: undefined } },
    {
      name: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
      version: '1.100',
      boshProtocol: '1',
      apiVersion: 3,
      sha1: '42c748086e55a532ccd4743ed58406ed0227d740',
      operatingSystem: 'ubuntu-jammy',
      stemcellFormats: ['azure-vhd'],
      cloudProperties: {
        name: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
        version: '1.100',
        infrastructure: 'azure',
        hypervisor: 'hyperv',
        disk: 5120,
        diskFormat: 'vhd',
        osType: 'linux',
        osDistro: 'ubuntu',
        architecture: 'x86_64',
        rootDeviceName: '/dev/sda1',
        raw: undefined,
      },
    },
  );
});

test('raw cloud properties keep every scalar as written, with snake_case keys', () => {
  const { raw } = parseStemcellManifest(VALID).cloudProperties;
  assert.deepEqual(raw, {
    name: 'bosh-azure-hyperv-ubuntu-jammy-go_agent',
    version: '1.100',
    infrastructure: 'azure',
    hypervisor: 'hyperv',
    disk: 5120,
    disk_format: 'vhd',
    container_format: 'bare',
    os_type: 'linux',
    os_distro: 'ubuntu',
    architecture: 'x86_64',
    root_device_name: '/dev/sda1',
  });
});

test('an unquoted version keeps its trailing zeros', () => {
  const manifest = parseStemcellManifest(VALID.replaceAll("version: '1.100'", 'version: 1.100'));
  assert.equal(manifest.version, '1.100');
  assert.equal(manifest.cloudProperties.version, '1.100');
  assert.equal(manifest.cloudProperties.raw.version, '1.100');
});

test('generation 2 features are read from cloud_properties', () => {
  const text = `${VALID}  generation: gen2
  disk_controller_types: [SCSI, NVMe]
  accelerated_networking: true
  hibernation: false
  security_type: TrustedLaunch
`;
  const properties = parseStemcellManifest(text).cloudProperties;
  assert.equal(properties.generation, 'gen2');
  assert.deepEqual(properties.diskControllerTypes, ['SCSI', 'NVMe']);
  assert.equal(properties.acceleratedNetworking, true);
  assert.equal(properties.hibernation, false);
  assert.equal(properties.securityType, 'TrustedLaunch');
});

for (const field of ['name', 'version', 'sha1', 'operating_system', 'cloud_properties']) {
  test(`fault: a manifest without ${field} is refused, naming the field`, () => {
    const text =
      field === 'cloud_properties' ? VALID.slice(0, VALID.indexOf('cloud_properties:')) : without(field);
    assert.throws(
      () => parseStemcellManifest(text),
      (error: unknown) => error instanceof StemcellError && error.message.includes(`\`${field}\``),
    );
  });
}

for (const field of ['os_type', 'architecture', 'infrastructure']) {
  test(`fault: cloud_properties without ${field} is refused, naming the field`, () => {
    assert.throws(() => parseStemcellManifest(without(field)), {
      name: 'StemcellError',
      message: new RegExp(`\`cloud_properties\\.${field}\` must be a non-empty string \\(missing\\)`),
    });
  });
}

/** VALID with one line `key: value` (top level or, indented, in cloud_properties) replaced. */
function withValue(line: string, value: string): string {
  const lines = VALID.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`${line}:`));
  assert.ok(at >= 0, `VALID has no line ${line}`);
  lines[at] = `${line}: ${value}`;
  return lines.join('\n');
}

for (const [line, field] of [
  ['name', 'name'],
  ['  name', 'cloud_properties.name'],
  ['  version', 'cloud_properties.version'],
  ['  infrastructure', 'cloud_properties.infrastructure'],
  ['  os_type', 'cloud_properties.os_type'],
  ['  architecture', 'cloud_properties.architecture'],
  ['  hypervisor', 'cloud_properties.hypervisor'],
  ['  os_distro', 'cloud_properties.os_distro'],
] as const) {
  for (const [what, value] of [
    ['empty', "''"],
    ['whitespace-only', "'   '"],
  ] as const) {
    test(`a manifest whose ${field} is ${what} is refused, naming the field`, () => {
      assert.throws(() => parseStemcellManifest(withValue(line, value)), {
        name: 'StemcellError',
        message: new RegExp(`\`${field.replace('.', '\\.')}\` must be a non-empty string`),
      });
    });
  }
}

test('fault: a sha1 that is not 40 hex digits is refused', () => {
  assert.throws(() => parseStemcellManifest(VALID.replace(/^sha1: .*$/m, 'sha1: abc')), {
    name: 'StemcellError',
    message: /`sha1` must be a 40-digit hex SHA-1 of the image file \(got "abc"\)/,
  });
});

test('a disk size that is not a number is refused', () => {
  assert.throws(() => parseStemcellManifest(VALID.replace('disk: 5120', 'disk: large')), {
    message: /`cloud_properties.disk` must be a number \(got "large"\)/,
  });
});

test('fault: text that is not YAML is refused as such', () => {
  assert.throws(() => parseStemcellManifest('name: [unclosed'), {
    name: 'StemcellError',
    message: /not valid YAML/,
  });
});

test('fault: a YAML document that is not a mapping is refused', () => {
  assert.throws(() => parseStemcellManifest('- just\n- a list\n'), {
    name: 'StemcellError',
    message: /a mapping/,
  });
});

test('disk_controller_types written as a string is kept in raw only, as the CPI ignores it', () => {
  const text = `${VALID}  generation: gen2
  disk_controller_types: SCSI, NVMe
`;
  const properties = parseStemcellManifest(text).cloudProperties;
  assert.equal(properties.diskControllerTypes, undefined);
  assert.equal('diskControllerTypes' in properties, false);
  assert.equal(properties.raw['disk_controller_types'], 'SCSI, NVMe');
});

test('disk_controller_types as a list of non-strings is refused, naming the field', () => {
  const text = `${VALID}  disk_controller_types: [1, 2]
`;
  assert.throws(
    () => parseStemcellManifest(text),
    /`cloud_properties\.disk_controller_types` must be a list of strings/,
  );
});

test('a refusal names stemcell.MF, the field, what it must be and what it got', () => {
  assert.throws(() => parseStemcellManifest(VALID.replace(/^name: .*$/m, 'name: [a, b]')), {
    name: 'StemcellError',
    message: 'stemcell.MF: `name` must be a non-empty string (got ["a","b"])',
  });
  assert.throws(() => parseStemcellManifest('- just\n- a list\n'), {
    message: 'stemcell.MF: `(document)` must be a mapping (got ["just","a list"])',
  });
  assert.throws(
    () => parseStemcellManifest(`${VALID.slice(0, VALID.indexOf('cloud_properties:'))}cloud_properties: 5\n`),
    {
      message: 'stemcell.MF: `cloud_properties` must be a mapping (got 5)',
    },
  );
});

test('fault: an empty or whitespace-only name or cloud_properties string is refused', () => {
  const cases: Array<[string, string, string]> = [
    [VALID.replace(/^name: .*$/m, "name: ''"), 'name', '""'],
    [VALID.replace(/^name: .*$/m, "name: '   '"), 'name', '"   "'],
    [VALID.replace(/^operating_system: .*$/m, 'operating_system: " "'), 'operating_system', '" "'],
    [VALID.replace('  os_type: linux', "  os_type: '  '"), 'cloud_properties.os_type', '"  "'],
    [VALID.replace('  hypervisor: hyperv', "  hypervisor: ''"), 'cloud_properties.hypervisor', '""'],
    [VALID.replace(/^ {2}name: .*$/m, "  name: ' '"), 'cloud_properties.name', '" "'],
    [VALID.replace(/^ {2}version: .*$/m, "  version: ''"), 'cloud_properties.version', '""'],
  ];
  for (const [text, field, got] of cases) {
    assert.throws(() => parseStemcellManifest(text), {
      name: 'StemcellError',
      message: `stemcell.MF: \`${field}\` must be a non-empty string (got ${got})`,
    });
  }
});

test('text values lose surrounding spaces', () => {
  const manifest = parseStemcellManifest(VALID.replace('  os_type: linux', "  os_type: ' linux '"));
  assert.equal(manifest.cloudProperties.osType, 'linux');
});

test('a null optional property counts as absent', () => {
  const text = VALID.replace('  hypervisor: hyperv', '  hypervisor: ~').replace(
    '  disk: 5120',
    '  disk: null',
  );
  const properties = parseStemcellManifest(`${text}  hibernation: ~\n`).cloudProperties;
  assert.equal(properties.hypervisor, undefined);
  assert.equal(properties.disk, undefined);
  assert.equal(properties.hibernation, undefined);
});

test('a boolean written as a quoted string counts as that boolean; anything else is refused', () => {
  const quoted = parseStemcellManifest(`${VALID}  hibernation: 'true'\n  accelerated_networking: "false"\n`);
  assert.equal(quoted.cloudProperties.hibernation, true);
  assert.equal(quoted.cloudProperties.acceleratedNetworking, false);
  for (const [field, value] of [
    ['hibernation', 'yes'],
    ['accelerated_networking', '1'],
  ]) {
    assert.throws(() => parseStemcellManifest(`${VALID}  ${field}: ${value}\n`), {
      name: 'StemcellError',
      message: `stemcell.MF: \`cloud_properties.${field}\` must be true or false (got ${JSON.stringify(value === '1' ? 1 : value)})`,
    });
  }
});

test('an optional property of the wrong kind is refused, naming it', () => {
  for (const field of [
    'hypervisor',
    'disk_format',
    'os_distro',
    'root_device_name',
    'generation',
    'security_type',
  ]) {
    assert.throws(() => parseStemcellManifest(`${without(field)}\n  ${field}: {a: 1}\n`), {
      name: 'StemcellError',
      message: `stemcell.MF: \`cloud_properties.${field}\` must be a non-empty string (got {"a":1})`,
    });
  }
  assert.throws(() => parseStemcellManifest(VALID.replace('  disk: 5120', '  disk: .inf')), {
    message: 'stemcell.MF: `cloud_properties.disk` must be a number (got null)',
  });
  assert.throws(() => parseStemcellManifest(VALID.replace('api_version: 3', 'api_version: three')), {
    message: 'stemcell.MF: `api_version` must be a number (got "three")',
  });
  assert.throws(() => parseStemcellManifest(`${VALID}  disk_controller_types: [SCSI, 1]\n`), {
    message:
      'stemcell.MF: `cloud_properties.disk_controller_types` must be a list of strings (got ["SCSI",1])',
  });
});

test('fault: a sha1 with anything before or after its 40 hex digits is refused', () => {
  for (const sha1 of [`x${'a'.repeat(40)}`, `${'a'.repeat(40)}0`]) {
    assert.throws(() => parseStemcellManifest(VALID.replace(/^sha1: .*$/m, `sha1: ${sha1}`)), {
      message: /`sha1` must be a 40-digit hex SHA-1/,
    });
  }
});

test('stemcell_formats is a list of strings, empty when absent', () => {
  assert.deepEqual(
    parseStemcellManifest(without('stemcell_formats').replace('- azure-vhd\n', '')).stemcellFormats,
    [],
  );
  for (const formats of ['azure-vhd', '[azure-vhd, 1]']) {
    assert.throws(
      () =>
        parseStemcellManifest(
          without('stemcell_formats').replace('- azure-vhd', `stemcell_formats: ${formats}`),
        ),
      { message: /^stemcell\.MF: `stemcell_formats` must be a list of strings/ },
    );
  }
});

test('api_version and bosh_protocol are left out when the manifest has none', () => {
  const manifest = parseStemcellManifest(without('api_version').replace(/^bosh_protocol: .*\n/m, ''));
  assert.equal('apiVersion' in manifest, false);
  assert.equal('boshProtocol' in manifest, false);
});

test('raw keeps booleans and leaves lists and mappings out', () => {
  const text = `${VALID}  disk_controller_types: [SCSI, NVMe]\n  hibernation: false\n  extra: {a: b}\n`;
  const { raw } = parseStemcellManifest(text).cloudProperties;
  assert.equal(raw.hibernation, false);
  assert.equal('disk_controller_types' in raw, false);
  assert.equal('extra' in raw, false);
});

test('fault: an empty stemcell.MF is refused as not a mapping', () => {
  assert.throws(() => parseStemcellManifest(''), {
    name: 'StemcellError',
    message: 'stemcell.MF: `(document)` must be a mapping (got null)',
  });
});
