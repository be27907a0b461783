/**
 * Feature drift: an existing image definition compared with the one the CPI would create for a stemcell
 * (src/cpi.ts). A director's CPI never makes that comparison: it uses a definition that exists as it is
 * (compute_gallery_manager.rb skips the creation) and adds its version there, so a definition whose
 * features, Hyper-V generation or architecture differ reaches the director's VMs, which then fail late.
 * The mirror refuses instead (docs/architecture.md, "Feature drift").
 */

import type { ImageDefinitionSpec } from './cpi.js';

/** An existing definition as ARM reports it; every field may be missing. */
export interface ExistingDefinition {
  osType?: string;
  osState?: string;
  hyperVGeneration?: string;
  architecture?: string;
  features?: Array<{ name?: string; value?: string }>;
}

/** One property on which the definition and the stemcell disagree, with Azure's defaults filled in. */
export interface DefinitionDrift {
  /** `osType`, `hyperVGeneration`, `architecture`, or a feature name such as `DiskControllerTypes`. */
  property: string;
  /** What the definition has (Azure's default when the definition leaves it out). */
  definition: string;
  /** What the stemcell's cloud_properties imply, as the CPI derives it. */
  stemcell: string;
  /** What the difference does to a director's VMs. */
  consequence: string;
}

// What Azure assumes when a definition leaves a property or feature out.
const PROPERTY_DEFAULTS = { osState: 'Generalized', hyperVGeneration: 'V1', architecture: 'x64' } as const;
const FEATURE_DEFAULTS: Readonly<Record<string, string>> = {
  diskcontrollertypes: 'SCSI',
  securitytype: 'Standard',
  isacceleratednetworksupported: 'False',
  ishibernatesupported: 'False',
};

const CONSEQUENCES: Readonly<Record<string, string>> = {
  ostype: 'Azure provisions the VM for the wrong operating system',
  osstate: 'Azure provisions the VM as if the image were not generalized',
  hypervgeneration: 'the VM starts the image with the wrong firmware (BIOS or UEFI) and does not boot',
  architecture: "no VM of the stemcell's architecture can be created from it",
  diskcontrollertypes: 'it decides which VM sizes can boot the image (NVMe-only sizes such as Dv6 need NVMe)',
  securitytype: 'it decides whether Trusted Launch or confidential VMs can be created from the image',
  isacceleratednetworksupported: 'it decides whether VMs from the image may use accelerated networking',
  ishibernatesupported: 'it decides whether VMs from the image may hibernate',
};

function consequenceOf(property: string): string {
  return CONSEQUENCES[property.toLowerCase()] ?? 'Azure applies it to every VM created from the image';
}

const CONTROLLER_SEPARATOR = ',';

/** A feature's value in a form two spellings of one meaning share: controller lists compare as sets. */
function comparable(name: string, value: string): string {
  // Stryker disable next-line MethodExpression: both sides fold case alike, so upper or lower case compare the same
  if (name.toLowerCase() !== 'diskcontrollertypes') return value.trim().toLowerCase();
  // Stryker disable next-line MethodExpression: both sides fold case alike, so upper or lower case compare the same
  const controllers = value.split(CONTROLLER_SEPARATOR).map((controller) => controller.trim().toLowerCase());
  return [...new Set(controllers.filter((controller) => controller !== ''))]
    .sort()
    .join(CONTROLLER_SEPARATOR);
}

function featureMap(features: ReadonlyArray<{ name?: string; value?: string }> | undefined) {
  const map = new Map<string, { name: string; value: string }>();
  // Stryker disable next-line ArrayDeclaration: a stand-in list's entries have no name and are skipped like none
  for (const feature of features ?? []) {
    if (feature.name === undefined || feature.name === '') continue;
    map.set(feature.name.toLowerCase(), { name: feature.name, value: feature.value ?? '' });
  }
  return map;
}

/**
 * Where `existing` differs from `spec` (the definition the CPI would create for the stemcell), in a fixed
 * order: OS type and state, Hyper-V generation, architecture, then each feature either side names. A feature
 * one side leaves out counts as Azure's default for it (`SecurityType` Standard, `DiskControllerTypes` SCSI,
 * the `Is...Supported` ones False); a feature without a known default that only one side has is a drift.
 * [] when the stemcell fits the definition.
 */
export function definitionDrift(existing: ExistingDefinition, spec: ImageDefinitionSpec): DefinitionDrift[] {
  const drifts: DefinitionDrift[] = [];
  const properties = {
    osType: existing.osType ?? '(none)',
    osState: existing.osState ?? PROPERTY_DEFAULTS.osState,
    hyperVGeneration: existing.hyperVGeneration ?? PROPERTY_DEFAULTS.hyperVGeneration,
    architecture: existing.architecture ?? PROPERTY_DEFAULTS.architecture,
  };
  for (const property of ['osType', 'osState', 'hyperVGeneration', 'architecture'] as const) {
    if (properties[property].toLowerCase() !== spec[property].toLowerCase()) {
      drifts.push({
        property,
        definition: properties[property],
        stemcell: spec[property],
        consequence: consequenceOf(property),
      });
    }
  }
  const there = featureMap(existing.features);
  const wanted = featureMap(spec.features);
  const names = [...new Set([...wanted.keys(), ...there.keys()])];
  for (const key of names) {
    // Stryker disable next-line OptionalChaining: a key is in one of the two maps, so there has it when wanted lacks it
    const name = wanted.get(key)?.name ?? there.get(key)?.name ?? key;
    const fallback = FEATURE_DEFAULTS[key];
    const definition = there.get(key)?.value ?? fallback;
    const stemcell = wanted.get(key)?.value ?? fallback;
    if (
      definition !== undefined &&
      stemcell !== undefined &&
      comparable(name, definition) === comparable(name, stemcell)
    )
      continue;
    drifts.push({
      property: name,
      definition: definition ?? '(not set)',
      stemcell: stemcell ?? '(not set)',
      consequence: consequenceOf(name),
    });
  }
  return drifts;
}

/** The drifts in a sentence: `DiskControllerTypes is SCSI there but the stemcell needs SCSI,NVMe (why it matters); ...`. */
export function describeDrift(drifts: readonly DefinitionDrift[]): string {
  return drifts
    .map(
      (d) => `${d.property} is ${d.definition} there but the stemcell needs ${d.stemcell} (${d.consequence})`,
    )
    .join('; ');
}

/**
 * The refusal: which definition, each drift, what a director's CPI would do, and what the operator can do.
 * `subject` names the stemcell (`<series> <version>`), `where` the gallery, `outcome` what the mirror did.
 */
export function driftRefusal(
  definitionName: string,
  subject: string,
  where: string,
  drifts: readonly DefinitionDrift[],
  outcome = 'Nothing was created.',
): string {
  return (
    `Image definition ${definitionName} in ${where} does not fit stemcell ${subject}: ${describeDrift(drifts)}. ` +
    "A director's CPI would not notice: it uses an existing definition as it is and adds its version there, so its " +
    `VMs would fail when created. ${outcome} Azure never changes the OS type, generation or architecture of a ` +
    'definition, and changes features only for all its versions at once (allowUpdateImage), which would break the ' +
    'versions already there: once no director uses them, delete the definition and its versions, and the next run ' +
    'creates it as the CPI would.'
  );
}
