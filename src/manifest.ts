/**
 * stemcell.MF: the stemcell's own description, parsed once into typed values.
 */

import { parse as parseYaml } from 'yaml';

/** `cloud_properties` of an Azure stemcell, as the BOSH Azure CPI reads them. */
export interface CloudProperties {
  name: string;
  version: string;
  infrastructure: string;
  hypervisor?: string;
  /** Disk size in MiB (5120 for 5 GiB). */
  disk?: number;
  diskFormat?: string;
  /** `linux` or `windows`. */
  osType: string;
  osDistro?: string;
  /** `x86_64` or `arm64`. */
  architecture: string;
  rootDeviceName?: string;
  /** `gen1` (absent means gen1) or `gen2`. */
  generation?: string;
  diskControllerTypes?: string[];
  acceleratedNetworking?: boolean;
  hibernation?: boolean;
  securityType?: string;
  /** Every cloud property exactly as the manifest wrote it (scalars only), for the CPI-compatible tags. */
  raw: Record<string, string | number | boolean>;
}

export interface StemcellManifest {
  name: string;
  version: string;
  /** SHA-1 of the `image` entry, hex. */
  sha1: string;
  operatingSystem: string;
  apiVersion?: number;
  boshProtocol?: string;
  stemcellFormats: string[];
  cloudProperties: CloudProperties;
}

/** A stemcell that can never be mirrored as it is: bad manifest, checksum mismatch, corrupt archive. */
export class StemcellError extends Error {
  override name = 'StemcellError';
}

const MANIFEST_FILE = 'stemcell.MF';
const SHA1_HEX = /^[0-9a-f]{40}$/i;

type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(field: string, expected: string, actual: unknown): StemcellError {
  const shown = actual === undefined ? 'missing' : `got ${JSON.stringify(actual)}`;
  return new StemcellError(`${MANIFEST_FILE}: \`${field}\` must be ${expected} (${shown})`);
}

/** The scalar as the YAML text wrote it: the failsafe parse keeps `1.100` from becoming 1.1. */
function requiredText(typed: Mapping, written: Mapping, key: string, field = key): string {
  const value = written[key];
  if (
    typeof value !== 'string' ||
    value.trim() === '' ||
    isMapping(typed[key]) ||
    Array.isArray(typed[key])
  ) {
    throw invalid(field, 'a non-empty string', typed[key]);
  }
  return value.trim();
}

function optionalText(typed: Mapping, written: Mapping, key: string, field = key): string | undefined {
  if (typed[key] === undefined || typed[key] === null) return undefined;
  return requiredText(typed, written, key, field);
}

function optionalNumber(typed: Mapping, key: string, field = key): number | undefined {
  const value = typed[key];
  if (value === undefined || value === null) return undefined;
  // Stryker disable next-line ConditionalExpression: Number.isFinite refuses every non-number too; typeof narrows the type
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(field, 'a number', value);
  return value;
}

function optionalBoolean(typed: Mapping, key: string, field = key): boolean | undefined {
  const value = typed[key];
  if (value === undefined || value === null) return undefined;
  if (value === 'true' || value === 'false') return value === 'true';
  if (typeof value !== 'boolean') throw invalid(field, 'true or false', value);
  return value;
}

/**
 * A YAML list of strings. Anything that is not a list (a string such as `SCSI, NVMe` included) yields
 * nothing: the BOSH Azure CPI ignores a non-Array value, and the gallery definition must say what the
 * CPI would say. Such a value stays in `raw` (when it is a scalar).
 */
function optionalTextList(typed: Mapping, key: string, field = key): string[] | undefined {
  const value = typed[key];
  if (!Array.isArray(value)) return undefined;
  if (!value.every((v) => typeof v === 'string')) throw invalid(field, 'a list of strings', value);
  return value;
}

function parseCloudProperties(typed: unknown, written: unknown): CloudProperties {
  // Stryker disable next-line LogicalOperator: both come from the same text, so both are mappings or neither
  if (!isMapping(typed) || !isMapping(written)) throw invalid('cloud_properties', 'a mapping', typed);
  const field = (key: string) => `cloud_properties.${key}`;
  const raw: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(typed)) {
    if (typeof value === 'number' || typeof value === 'boolean') raw[key] = value;
    else if (typeof value === 'string') raw[key] = written[key] as string;
  }

  const properties: CloudProperties = {
    name: requiredText(typed, written, 'name', field('name')),
    version: requiredText(typed, written, 'version', field('version')),
    infrastructure: requiredText(typed, written, 'infrastructure', field('infrastructure')),
    osType: requiredText(typed, written, 'os_type', field('os_type')),
    architecture: requiredText(typed, written, 'architecture', field('architecture')),
    raw,
  };
  // Versions are text: an unquoted `1.100` must not turn into the number 1.1 (requiredText checked it).
  raw.version = written.version as string;
  const optional: Partial<CloudProperties> = {
    hypervisor: optionalText(typed, written, 'hypervisor', field('hypervisor')),
    disk: optionalNumber(typed, 'disk', field('disk')),
    diskFormat: optionalText(typed, written, 'disk_format', field('disk_format')),
    osDistro: optionalText(typed, written, 'os_distro', field('os_distro')),
    rootDeviceName: optionalText(typed, written, 'root_device_name', field('root_device_name')),
    generation: optionalText(typed, written, 'generation', field('generation')),
    diskControllerTypes: optionalTextList(typed, 'disk_controller_types', field('disk_controller_types')),
    acceleratedNetworking: optionalBoolean(typed, 'accelerated_networking', field('accelerated_networking')),
    hibernation: optionalBoolean(typed, 'hibernation', field('hibernation')),
    securityType: optionalText(typed, written, 'security_type', field('security_type')),
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) Object.assign(properties, { [key]: value });
  }
  return properties;
}

/** Parses the text of `stemcell.MF`; throws StemcellError naming the first missing or invalid field. */
export function parseStemcellManifest(text: string): StemcellManifest {
  let typed: unknown;
  let written: unknown;
  try {
    typed = parseYaml(text);
    written = parseYaml(text, { schema: 'failsafe' });
  } catch (error) {
    throw new StemcellError(`${MANIFEST_FILE} is not valid YAML: ${(error as Error).message}`);
  }
  // Stryker disable next-line LogicalOperator: both come from the same text, so both are mappings or neither
  if (!isMapping(typed) || !isMapping(written)) throw invalid('(document)', 'a mapping', typed);

  const sha1 = requiredText(typed, written, 'sha1');
  if (!SHA1_HEX.test(sha1)) throw invalid('sha1', 'a 40-digit hex SHA-1 of the image file', sha1);
  const formats = typed.stemcell_formats ?? [];
  if (!Array.isArray(formats) || !formats.every((f) => typeof f === 'string')) {
    throw invalid('stemcell_formats', 'a list of strings', formats);
  }
  const manifest: StemcellManifest = {
    name: requiredText(typed, written, 'name'),
    version: requiredText(typed, written, 'version'),
    sha1: sha1.toLowerCase(),
    operatingSystem: requiredText(typed, written, 'operating_system'),
    stemcellFormats: formats,
    cloudProperties: parseCloudProperties(typed.cloud_properties, written.cloud_properties),
  };
  const apiVersion = optionalNumber(typed, 'api_version');
  if (apiVersion !== undefined) manifest.apiVersion = apiVersion;
  const boshProtocol = optionalText(typed, written, 'bosh_protocol');
  if (boshProtocol !== undefined) manifest.boshProtocol = boshProtocol;
  return manifest;
}
