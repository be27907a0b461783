/**
 * Stemcell version rules in one place: parsing, numeric ordering and the gallery's
 * `Major.Minor.Patch` form (each part a 32-bit integer).
 */

const STEMCELL_VERSION = /^(0|[1-9]\d*)(\.(0|[1-9]\d*)){0,2}$/;
const INT32_MAX = 2 ** 31 - 1;

/** A bosh.io stemcell version such as `1.1364` or `621.994`, split into numeric parts. */
export type VersionParts = readonly [number, number, number];

export function isStemcellVersion(text: string): boolean {
  return parseStemcellVersion(text) !== undefined;
}

/** Parses `1`, `1.2` or `1.2.3`; undefined when it is not a plain numeric version that fits int32 parts. */
export function parseStemcellVersion(text: string): VersionParts | undefined {
  if (!STEMCELL_VERSION.test(text)) return undefined;
  const parts = text.split('.').map(Number);
  if (parts.some((p) => p > INT32_MAX)) return undefined;
  return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0];
}

function partsOf(version: string): VersionParts {
  const parts = parseStemcellVersion(version);
  if (!parts)
    throw new Error(
      `"${version}" is not a stemcell version (expected digits separated by dots, e.g. 1.1364)`,
    );
  return parts;
}

/** Numeric comparison: `1.999` < `1.1364`. Negative, zero or positive like Array.sort wants. */
export function compareStemcellVersions(a: string, b: string): number {
  const [a1, a2, a3] = partsOf(a);
  const [b1, b2, b3] = partsOf(b);
  return a1 - b1 || a2 - b2 || a3 - b3;
}

/** The gallery image version name for a stemcell version, padded as the BOSH Azure CPI pads it: `1.1364` -> `1.1364.0`. */
export function galleryVersionName(stemcellVersion: string): string {
  return partsOf(stemcellVersion).join('.');
}
