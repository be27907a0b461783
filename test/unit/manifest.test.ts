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
