import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GalleryNaming } from '../../src/config.js';
import {
  MIRROR_STEMCELL_REFERENCE,
  candidateDefinitionNames,
  imageDefinitionFor,
  imageDefinitionName,
  imageVersionTags,
  isAdoptableByCpi,
  isCreatedByMirror,
  stemcellReferencesWith,
  tagProblems,
} from '../../src/cpi.js';
import { GalleryError } from '../../src/gallery-error.js';
import type { CloudProperties, StemcellManifest } from '../../src/manifest.js';

const jammy = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const defaults: GalleryNaming = { publisher: 'bosh' };
const sha256 = 'a'.repeat(64);

function manifest(cloud: Partial<CloudProperties> = {}, name = jammy, version = '1.1364'): StemcellManifest {
  const raw: CloudProperties['raw'] = {
    name,
    version,
    infrastructure: 'azure',
    hypervisor: 'hyperv',
    disk: 5120,
    disk_format: 'vhd',
    os_type: 'linux',
    os_distro: 'ubuntu',
    architecture: 'x86_64',
    root_device_name: '/dev/sda1',
  };
  if (cloud.generation !== undefined) raw.generation = cloud.generation;
  if (cloud.acceleratedNetworking !== undefined) raw.accelerated_networking = cloud.acceleratedNetworking;
  if (cloud.hibernation !== undefined) raw.hibernation = cloud.hibernation;
  if (cloud.securityType !== undefined) raw.security_type = cloud.securityType;
  return {
    name,
    version,
    sha1: 'b'.repeat(40),
    operatingSystem: 'ubuntu-jammy',
    apiVersion: 3,
    boshProtocol: '1',
    stemcellFormats: ['azure-vhd'],
    cloudProperties: {
      name,
      version,
      infrastructure: 'azure',
      hypervisor: 'hyperv',
      disk: 5120,
      diskFormat: 'vhd',
      osType: 'linux',
      osDistro: 'ubuntu',
      architecture: 'x86_64',
      rootDeviceName: '/dev/sda1',
      raw,
      ...cloud,
    },
  };
}

const gen2 = (): StemcellManifest =>
  manifest({
    generation: 'gen2',
    diskControllerTypes: ['scsi', 'nvme'],
    acceleratedNetworking: true,
    hibernation: false,
    securityType: 'TrustedLaunchSupported',
  });

test('gen1 definition name is the stemcell name', () => {
  assert.equal(imageDefinitionName(jammy, 'gen1', defaults), jammy);
});

test('absent generation means gen1', () => {
  assert.equal(imageDefinitionName(jammy, undefined, defaults), jammy);
});

test('a blank generation means gen1, as an absent one', () => {
  assert.equal(imageDefinitionName(jammy, ' ', defaults), jammy);
  const spec = imageDefinitionFor(manifest({ generation: ' ' }), defaults);
  assert.deepEqual([spec.name, spec.sku, spec.hyperVGeneration], [jammy, 'gen1', 'V1']);
  const image = JSON.parse(tagsFor(manifest({ generation: '' })).image ?? '{}') as { sku?: string };
  assert.equal(image.sku, 'gen1');
});

test('a generation written with spaces around it is that generation', () => {
  const spec = imageDefinitionFor(manifest({ generation: ' gen2 ' }), defaults);
  assert.deepEqual([spec.sku, spec.hyperVGeneration], ['gen2', 'V2']);
});

test('gen2 definition name appends the generation', () => {
  assert.equal(imageDefinitionName(jammy, 'gen2', defaults), `${jammy}-gen2`);
});

test('BASM_GALLERY_IMAGE_NAME overrides the definition name for every generation', () => {
  const naming = { ...defaults, imageName: 'stemcells' };
  assert.deepEqual(
    ['gen1', 'gen2', undefined].map((generation) => imageDefinitionName(jammy, generation, naming)),
    ['stemcells', 'stemcells', 'stemcells'],
  );
});

test('an empty BASM_GALLERY_IMAGE_NAME overrides nothing', () => {
  const naming = { ...defaults, imageName: '' };
  assert.equal(imageDefinitionName(jammy, 'gen2', naming), `${jammy}-gen2`);
  const belongs = candidateDefinitionNames(jammy, naming);
  assert.deepEqual([belongs(jammy), belongs(`${jammy}-gen2`), belongs('')], [true, true, false]);
});

test('candidate names include the gen1 name and generation suffixes, any case', () => {
  const belongs = candidateDefinitionNames(jammy, defaults);
  assert.deepEqual(
    [jammy, `${jammy}-gen2`, `${jammy.toUpperCase()}-GEN2`, `${jammy}-gen2-x64`, `${jammy}-gen1-arm64`].map(
      belongs,
    ),
    [true, true, true, true, true],
  );
});

test('candidate names exclude other series and look-alikes', () => {
  const belongs = candidateDefinitionNames(jammy, defaults);
  assert.deepEqual(
    [
      'bosh-azure-hyperv-ubuntu-noble',
      `${jammy}-fips`,
      `${jammy}-gen2-extra`,
      `x${jammy}`,
      'bosh-azure-hyperv-ubuntu-jammyXgo_agent',
    ].map(belongs),
    [false, false, false, false, false],
  );
});

test('candidate names with an override accept only the override', () => {
  const belongs = candidateDefinitionNames(jammy, { ...defaults, imageName: 'Stemcells' });
  assert.deepEqual(['stemcells', jammy, `${jammy}-gen2`].map(belongs), [true, false, false]);
});

test('jammy gen1 definition matches what the CPI creates', () => {
  assert.deepEqual(imageDefinitionFor(manifest(), defaults), {
    name: jammy,
    publisher: 'bosh',
    offer: jammy,
    sku: 'gen1',
    osType: 'Linux',
    osState: 'Generalized',
    hyperVGeneration: 'V1',
    architecture: 'x64',
  });
});

test('gen1 definition carries no features even when cloud properties name some', () => {
  const spec = imageDefinitionFor(manifest({ generation: 'gen1', acceleratedNetworking: true }), defaults);
  assert.equal('features' in spec, false);
});

test('gen2 definition maps cloud properties to features in the CPI order and values', () => {
  const spec = imageDefinitionFor(gen2(), defaults);
  assert.deepEqual(
    {
      name: spec.name,
      sku: spec.sku,
      offer: spec.offer,
      hyperVGeneration: spec.hyperVGeneration,
      features: spec.features,
    },
    {
      name: `${jammy}-gen2`,
      sku: 'gen2',
      offer: `${jammy}-gen2`,
      hyperVGeneration: 'V2',
      features: [
        { name: 'DiskControllerTypes', value: 'SCSI,NVMe' },
        { name: 'IsAcceleratedNetworkSupported', value: 'True' },
        { name: 'IsHibernateSupported', value: 'False' },
        { name: 'SecurityType', value: 'TrustedLaunchSupported' },
      ],
    },
  );
});

test('gen2 definition without feature properties has no features key', () => {
  assert.equal('features' in imageDefinitionFor(manifest({ generation: 'gen2' }), defaults), false);
});

test('arm64 stemcell gets the Arm64 architecture', () => {
  assert.equal(imageDefinitionFor(manifest({ architecture: 'aarch64' }), defaults).architecture, 'Arm64');
});

test('publisher, offer and sku settings override the identifier', () => {
  const spec = imageDefinitionFor(manifest(), { publisher: 'acme', offer: 'stemcells', sku: 'jammy' });
  assert.deepEqual([spec.publisher, spec.offer, spec.sku], ['acme', 'stemcells', 'jammy']);
});

test('unknown generation is refused with a GalleryError naming the value', () => {
  assert.throws(
    () => imageDefinitionFor(manifest({ generation: 'gen3' }), defaults),
    (error: unknown) => {
      assert.ok(error instanceof GalleryError);
      assert.match(error.message, /"gen3"/);
      return true;
    },
  );
});

test('unknown architecture is refused with a GalleryError naming the value', () => {
  assert.throws(() => imageDefinitionFor(manifest({ architecture: 'riscv64' }), defaults), /"riscv64"/);
});

function tagsFor(
  m: StemcellManifest,
  extra: { sourceUrl?: string; definitionName?: string } = {},
): Record<string, string> {
  return imageVersionTags({
    manifest: m,
    imageSha256: sha256,
    galleryName: 'stemcells',
    definitionName: extra.definitionName ?? jammy,
    ...(extra.sourceUrl === undefined ? {} : { sourceUrl: extra.sourceUrl }),
  });
}

test('version tags carry the stemcell metadata as text, like the CPI', () => {
  const tags = tagsFor(manifest());
  assert.deepEqual(
    [tags.name, tags.version, tags.disk, tags.os_type, tags.architecture],
    [jammy, '1.1364', '5120', 'linux', 'x86_64'],
  );
});

test('version tags carry the CPI bookkeeping tags', () => {
  const tags = tagsFor(manifest());
  assert.deepEqual(
    [
      tags.image_sha256,
      tags.compute_gallery_name,
      tags.compute_gallery_image_definition,
      tags.stemcell_references,
    ],
    [sha256, 'stemcells', jammy, MIRROR_STEMCELL_REFERENCE],
  );
});

test('image tag is the CPI identifier JSON with the padded version', () => {
  assert.equal(
    tagsFor(manifest()).image,
    `{"publisher":"bosh","offer":"${jammy}","sku":"gen1","version":"1.1364.0"}`,
  );
});

test('image tag of a gen2 stemcell names the gen2 definition as offer and gen2 as sku', () => {
  const m = gen2();
  const definitionName = imageDefinitionFor(m, defaults).name;
  assert.equal(definitionName, `${jammy}-gen2`);
  assert.equal(
    tagsFor(m, { definitionName }).image,
    `{"publisher":"bosh","offer":"${jammy}-gen2","sku":"gen2","version":"1.1364.0"}`,
  );
});

for (const written of ['Gen1', 'GEN1', 'gEn1']) {
  test(`generation ${JSON.stringify(written)} is generation 1 whatever its case`, () => {
    const spec = imageDefinitionFor(manifest({ generation: written, acceleratedNetworking: true }), defaults);
    assert.equal(spec.name, jammy);
    assert.equal(spec.hyperVGeneration, 'V1');
    assert.equal('features' in spec, false);
    assert.equal(imageDefinitionName(jammy, written, defaults), jammy);
  });
}

test('stemcell reference is never a director stemcell id, so delete-stemcell keeps the version', () => {
  const references = (tagsFor(manifest()).stemcell_references ?? '').split(',');
  assert.ok(
    references.length > 0 && references.every((ref) => ref !== '' && !ref.startsWith('bosh-stemcell-')),
  );
});

test('list-valued disk_controller_types is written as Ruby prints an array', () => {
  assert.equal(
    tagsFor(gen2(), { definitionName: `${jammy}-gen2` }).disk_controller_types,
    '["scsi", "nvme"]',
  );
});

test('boolean cloud properties are written as true/false', () => {
  const tags = tagsFor(gen2(), { definitionName: `${jammy}-gen2` });
  assert.deepEqual([tags.accelerated_networking, tags.hibernation], ['true', 'false']);
});

test('source url is kept as a tag when it fits', () => {
  const url = 'https://storage.googleapis.com/bosh-core-stemcells/1.1364/stemcell.tgz';
  assert.equal(tagsFor(manifest(), { sourceUrl: url }).stemcell_source_url, url);
});

test('fault: cloud properties spelled like the mirror’s own tags, in any case, never replace them', () => {
  const m = manifest();
  Object.assign(m.cloudProperties.raw, {
    IMAGE_SHA256: 'f'.repeat(64),
    Stemcell_References: 'bosh-stemcell-evil',
    mirror_notified: '2026-01-01T00:00:00.000Z',
    Compute_Gallery_Name: 'elsewhere',
    COMPUTE_GALLERY_IMAGE_DEFINITION: 'other-definition',
    Stemcell_Source_Url: 'https://evil.example/stemcell.tgz',
    IMAGE: '{}',
  });

  const tags = tagsFor(m, { sourceUrl: 'https://bosh.io/d/stemcells/x' });

  const names = Object.keys(tags).map((name) => name.toLowerCase());
  assert.equal(new Set(names).size, names.length, `two spellings of one tag: ${names.join(', ')}`);
  assert.equal(tags.image_sha256, sha256);
  assert.equal(tags.stemcell_references, MIRROR_STEMCELL_REFERENCE);
  assert.equal(tags.compute_gallery_name, 'stemcells');
  assert.equal(tags.compute_gallery_image_definition, jammy);
  assert.equal(tags.stemcell_source_url, 'https://bosh.io/d/stemcells/x');
  assert.equal((JSON.parse(tags.image ?? '{}') as { publisher?: string }).publisher, 'bosh');
  assert.ok(!names.includes('mirror_notified'), 'a stemcell marked its own run finished');
});

test('of two cloud properties that differ only in case, the first is kept', () => {
  const m = manifest();
  Object.assign(m.cloudProperties.raw, { root_device_name: '/dev/sda1', ROOT_DEVICE_NAME: '/dev/evil' });

  const tags = tagsFor(m);

  assert.equal(tags.root_device_name, '/dev/sda1');
  assert.equal('ROOT_DEVICE_NAME' in tags, false);
});

test('a tag value over 256 characters is left out, not cut', () => {
  const tags = tagsFor(manifest(), { sourceUrl: `https://example.com/${'x'.repeat(300)}` });
  assert.equal('stemcell_source_url' in tags, false);
});

test('at most 49 tags, leaving room for mirror_notified, and the CPI-required ones survive', () => {
  const m = manifest();
  for (let i = 0; i < 80; i++) m.cloudProperties.raw[`extra_${String(i).padStart(2, '0')}`] = i;
  const tags = tagsFor(m);
  assert.equal(Object.keys(tags).length, 49);
  for (const name of [
    'name',
    'version',
    'image',
    'image_sha256',
    'compute_gallery_name',
    'stemcell_references',
  ]) {
    assert.ok(name in tags, `${name} missing`);
  }
});

test('every tag fits Azure limits', () => {
  const m = gen2();
  m.cloudProperties.raw[`long_${'n'.repeat(600)}`] = 'value';
  m.cloudProperties.raw.long_value = 'v'.repeat(257);
  const tags = tagsFor(m, { definitionName: `${jammy}-gen2` });
  assert.ok(Object.entries(tags).every(([name, value]) => name.length <= 512 && value.length <= 256));
});

test('a required tag that cannot fit is an error naming the tag', () => {
  assert.throws(
    () => tagsFor(manifest(), { definitionName: 'd'.repeat(300) }),
    /compute_gallery_image_definition/,
  );
});

test('stemcellReferencesWith appends the mirror to the CPI list, comma-joined without spaces', () => {
  assert.equal(
    stemcellReferencesWith({ stemcell_references: 'bosh-stemcell-1, bosh-stemcell-2,' }),
    `bosh-stemcell-1,bosh-stemcell-2,${MIRROR_STEMCELL_REFERENCE}`,
  );
});

test('stemcellReferencesWith starts a list when there is none', () => {
  assert.equal(stemcellReferencesWith({ name: jammy }), MIRROR_STEMCELL_REFERENCE);
});

test('stemcellReferencesWith keeps a legacy stemcell_name as a reference, as the CPI does', () => {
  assert.equal(
    stemcellReferencesWith({ stemcell_name: 'bosh-stemcell-old' }),
    `bosh-stemcell-old,${MIRROR_STEMCELL_REFERENCE}`,
  );
  assert.equal(
    stemcellReferencesWith({ stemcell_name: 'bosh-stemcell-old', stemcell_references: 'bosh-stemcell-old' }),
    `bosh-stemcell-old,${MIRROR_STEMCELL_REFERENCE}`,
  );
});

test('stemcellReferencesWith is undefined when the mirror is already referenced', () => {
  assert.equal(
    stemcellReferencesWith({ stemcell_references: `bosh-stemcell-1, ${MIRROR_STEMCELL_REFERENCE}` }),
    undefined,
  );
});

test('isAdoptableByCpi needs stemcell_references or stemcell_name, like the CPI', () => {
  assert.deepEqual(
    [
      isAdoptableByCpi({}),
      isAdoptableByCpi({ name: jammy, image_sha256: sha256 }),
      isAdoptableByCpi({ stemcell_references: MIRROR_STEMCELL_REFERENCE }),
      isAdoptableByCpi({ stemcell_name: 'bosh-stemcell-1' }),
      isAdoptableByCpi({ stemcell_references: '' }),
    ],
    [false, false, true, true, true],
  );
});

test('isAdoptableByCpi with a checksum refuses other content, and passes a missing checksum', () => {
  const tags = { stemcell_references: 'bosh-stemcell-1', image_sha256: sha256 };
  assert.deepEqual(
    [
      isAdoptableByCpi(tags, sha256),
      isAdoptableByCpi(tags, 'f'.repeat(64)),
      isAdoptableByCpi({ stemcell_references: 'x' }, sha256),
    ],
    [true, false, true],
  );
});

test('the mirror created a version when its reference comes first in stemcell_references', () => {
  assert.equal(isCreatedByMirror({ stemcell_references: MIRROR_STEMCELL_REFERENCE }), true);
  assert.equal(
    isCreatedByMirror({ stemcell_references: ` ${MIRROR_STEMCELL_REFERENCE} ,bosh-stemcell-1` }),
    true,
  );
  assert.equal(
    isCreatedByMirror({ stemcell_references: `bosh-stemcell-1,${MIRROR_STEMCELL_REFERENCE}` }),
    false,
  );
  assert.equal(isCreatedByMirror({ stemcell_name: MIRROR_STEMCELL_REFERENCE }), false);
  assert.equal(isCreatedByMirror({}), false);
});

test('stemcellReferencesWith does not add an empty stemcell_name', () => {
  assert.equal(stemcellReferencesWith({ stemcell_name: '' }), MIRROR_STEMCELL_REFERENCE);
});

test('isAdoptableByCpi without a checksum to compare passes a version that has one', () => {
  assert.equal(isAdoptableByCpi({ stemcell_name: 'bosh-stemcell-1', image_sha256: sha256 }), true);
});

test('candidate names treat the dots of a series as dots', () => {
  const belongs = candidateDefinitionNames('my.series', defaults);
  assert.equal(belongs('my.series'), true);
  assert.equal(belongs('my.series-gen2'), true);
  assert.equal(belongs('myXseries'), false);
});

test('os_type is linux or windows in any case; anything else is refused', () => {
  assert.equal(imageDefinitionFor(manifest({ osType: 'LINUX' }), defaults).osType, 'Linux');
  assert.equal(imageDefinitionFor(manifest({ osType: 'windows' }), defaults).osType, 'Windows');
  assert.throws(() => imageDefinitionFor(manifest({ osType: 'solaris' }), defaults), {
    name: 'GalleryError',
    message: `Stemcell ${jammy} 1.1364 has cloud_properties.os_type "solaris"; the gallery accepts linux or windows. Use an Azure stemcell.`,
  });
});

test('a generation is gen1 or gen2 from its start: "2gen" is refused', () => {
  assert.throws(() => imageDefinitionFor(manifest({ generation: '2gen' }), defaults), {
    name: 'GalleryError',
    message: /cloud_properties\.generation "2gen"; Azure knows gen1 \(V1\) and gen2 \(V2\) only/,
  });
});

test('every architecture spelling the CPI knows maps to x64 or Arm64', () => {
  const expected: Array<[string, string]> = [
    ['x86_64', 'x64'],
    ['amd64', 'x64'],
    ['X64', 'x64'],
    ['arm64', 'Arm64'],
    ['aarch64', 'Arm64'],
  ];
  for (const [architecture, azure] of expected) {
    assert.equal(imageDefinitionFor(manifest({ architecture }), defaults).architecture, azure, architecture);
  }
});

test('gen2 features: other disk controllers pass unchanged, false and true are written as Azure spells them', () => {
  const spec = imageDefinitionFor(
    manifest({
      generation: 'gen2',
      diskControllerTypes: ['ide'],
      acceleratedNetworking: false,
      hibernation: true,
    }),
    defaults,
  );
  assert.deepEqual(spec.features, [
    { name: 'DiskControllerTypes', value: 'ide' },
    { name: 'IsAcceleratedNetworkSupported', value: 'False' },
    { name: 'IsHibernateSupported', value: 'True' },
  ]);
});

test('an empty list of disk controllers gives no DiskControllerTypes feature', () => {
  const spec = imageDefinitionFor(manifest({ generation: 'gen2', diskControllerTypes: [] }), defaults);
  assert.equal(spec.features, undefined);
});

test('the name and version tags are taken from the cloud properties when raw lacks them, and kept as written', () => {
  const bare = manifest();
  delete bare.cloudProperties.raw.name;
  delete bare.cloudProperties.raw.version;
  const tags = tagsFor(bare);
  assert.equal(tags.name, jammy);
  assert.equal(tags.version, '1.1364');
  const written = manifest();
  written.cloudProperties.raw.version = '1.1364.0';
  assert.equal(tagsFor(written).version, '1.1364.0');
});

test('required tags may be exactly 256 characters; beyond that the error lists each with its length', () => {
  const imageOf = (offer: string) =>
    JSON.stringify({ publisher: 'bosh', offer, sku: 'gen1', version: '1.1364.0' }).length;
  const fits = 'd'.repeat(256 - imageOf(''));
  assert.equal(tagsFor(manifest(), { definitionName: fits }).image?.length, 256);
  const long = 'd'.repeat(257);
  assert.throws(() => tagsFor(manifest(), { definitionName: long }), {
    name: 'GalleryError',
    message:
      `Tags of stemcell ${jammy} 1.1364 exceed Azure's 256 characters: image (${imageOf(long)}), ` +
      'compute_gallery_image_definition (257). Use a shorter gallery or image definition name.',
  });
});

test('other tags are kept up to a 512-character name and a 256-character value', () => {
  const m = manifest();
  m.cloudProperties.raw['n'.repeat(512)] = 'fits';
  m.cloudProperties.raw['o'.repeat(513)] = 'too long a name';
  m.cloudProperties.raw.value_fits = 'v'.repeat(256);
  m.cloudProperties.raw.value_too_long = 'v'.repeat(257);
  const tags = tagsFor(m);
  assert.equal(tags['n'.repeat(512)], 'fits');
  assert.equal('o'.repeat(513) in tags, false);
  assert.equal(tags.value_fits?.length, 256);
  assert.equal('value_too_long' in tags, false);
});

test('tagProblems names every tag Azure would refuse, and nothing for tags it accepts', () => {
  assert.deepEqual(tagProblems({ ['n'.repeat(512)]: 'v'.repeat(256), name: 'ok' }), []);
  const long = 'n'.repeat(513);
  assert.deepEqual(
    tagProblems({
      ' ': 'x',
      [long]: 'x',
      'a/b': 'x',
      value: 'v'.repeat(257),
      nothing: undefined as unknown as string,
    }),
    [
      'a tag has an empty name',
      `name ${'n'.repeat(40)}... is 513 characters (at most 512)`,
      'name a/b contains one of < > % & \\ ? /',
      'value has a value of 257 characters (at most 256)',
      'nothing has no text value',
    ],
  );
});
