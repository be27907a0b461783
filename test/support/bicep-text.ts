/**
 * Reads what tests need from Bicep source text (no compiler here): resource declarations, the `{ ... }` block of
 * each, and the simple values inside (`key: value`, string arrays, `var` strings).
 */

export interface BicepResource {
  symbol: string;
  /** The type as written (`Microsoft.Storage/storageAccounts`, or `containers` for a nested child). */
  type: string;
  existing: boolean;
  block: string;
}

const RESOURCE = /^\s*resource\s+(\w+)\s+'([^'@]+)@?[^']*'\s+(existing\s+)?=\s*(?:if\s*\(.*\)\s*)?\{/gm;

/** Every `resource` declaration of the text, nested ones included. */
export function resources(text: string): BicepResource[] {
  return [...text.matchAll(RESOURCE)].map((match) => ({
    symbol: match[1] ?? '',
    type: match[2] ?? '',
    existing: match[3] !== undefined,
    block: blockAt(text, (match.index ?? 0) + match[0].length - 1),
  }));
}

/** `var name = 'value'` declarations. */
export function stringVariables(text: string): Map<string, string> {
  return new Map(
    [...text.matchAll(/^var\s+(\w+)\s*=\s*'([^']*)'/gm)].map((match) => [match[1] ?? '', match[2] ?? '']),
  );
}

/** The raw expression after `key:` in a block (first occurrence, up to the end of its line). */
export function property(block: string, key: string): string | undefined {
  return new RegExp(`^\\s*${key}:\\s*(.+?)\\s*$`, 'm').exec(block)?.[1];
}

/** The quoted strings of the `name: [ ... ]` array in a block. */
export function stringArray(block: string, name: string): string[] {
  const array = new RegExp(`\\b${name}:\\s*\\[([^\\]]*)\\]`).exec(block)?.[1];
  if (array === undefined) return [];
  return [...array.matchAll(/'([^']*)'/g)].map(([, value]) => value ?? '');
}

/** The text of the `{ ... }` block that opens at `open` (skipping quoted strings and comments). */
export function blockAt(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "'") {
      i++;
      while (i < text.length && text[i] !== "'") i += text[i] === '\\' ? 2 : 1;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '{') {
      depth++;
    } else if (c === '}' && --depth === 0) {
      return text.slice(open, i + 1);
    }
  }
  throw new Error('unbalanced braces');
}
