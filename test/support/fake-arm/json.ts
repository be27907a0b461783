/** The JSON shapes ARM speaks and the case-insensitive name rules it applies to them. */
export type Json = Record<string, unknown>;

export function asObject(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

export function text(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? '');
}

export function deepMerge(target: Json, patch: Json): Json {
  for (const [key, value] of Object.entries(patch)) {
    const existing = asObject(target[key]);
    const incoming = asObject(value);
    target[key] = existing !== undefined && incoming !== undefined ? deepMerge(existing, incoming) : value;
  }
  return target;
}

export function findKey<V>(map: Map<string, V>, key: string): string | undefined {
  return [...map.keys()].find((candidate) => candidate.toLowerCase() === key.toLowerCase());
}

export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

export function normaliseRegion(region: string): string {
  return region.toLowerCase().replace(/\s+/g, '');
}

export function sameRegion(a: string, b: string): boolean {
  return normaliseRegion(a) === normaliseRegion(b);
}
