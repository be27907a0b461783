/**
 * Reading settings: each value checked as it is read, every problem collected into one ConfigError.
 */

import { isAbsolute } from 'node:path';
import { Secret } from './secret.js';

/** One offending setting: which variable, and what it expects. */
export interface SettingProblem {
  name: string;
  message: string;
}

/** "1 flag", "2 settings": a command-line flag (`--series`) is not a setting, so it is not called one. */
function countOf(problems: SettingProblem[], flags: boolean): string | undefined {
  const n = problems.filter((p) => p.name.startsWith('--') === flags).length;
  if (n === 0) return undefined;
  return `${n} ${flags ? 'flag' : 'setting'}${n === 1 ? '' : 's'}`;
}

export class ConfigError extends Error {
  constructor(readonly problems: SettingProblem[]) {
    const flags = countOf(problems, true);
    const settings = countOf(problems, false);
    const what =
      flags === undefined
        ? 'configuration'
        : settings === undefined
          ? 'command line'
          : 'command line and configuration';
    super(
      `Invalid ${what} (${[flags, settings].filter(Boolean).join(', ')}):\n` +
        problems.map((p) => `  ${p.name}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Collects every problem instead of stopping at the first, so one run shows everything to fix. */
export class SettingsReader {
  readonly problems: SettingProblem[] = [];
  constructor(private readonly env: Env) {}

  readonly warnings: string[] = [];

  private raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    // App Service passes an unresolvable Key Vault reference through as its own text (secret absent,
    // or not readable by the app's identity): that is "not set", never a value to use.
    // Stryker disable next-line ConditionalExpression: test(undefined) looks at "undefined", which never matches
    if (value !== undefined && /^@Microsoft\.KeyVault\(/i.test(value)) {
      this.warnings.push(
        `${name}: Key Vault reference not resolved (secret absent or not readable); treated as not set`,
      );
      return undefined;
    }
    return value === '' ? undefined : value;
  }

  /** The setting as given (trimmed), for a reader that checks it itself. */
  text(name: string): string | undefined {
    return this.raw(name);
  }

  problem(name: string, message: string): void {
    this.problems.push({ name, message });
  }

  required(name: string, pattern: RegExp, expects: string): string {
    const value = this.raw(name);
    if (value === undefined) {
      this.problem(name, `missing; expected ${expects}`);
      return '';
    }
    if (!pattern.test(value)) this.problem(name, `"${value}" is not valid; expected ${expects}`);
    return value;
  }

  optional(name: string, pattern: RegExp, expects: string): string | undefined {
    const value = this.raw(name);
    if (value !== undefined && !pattern.test(value)) {
      this.problem(name, `"${value}" is not valid; expected ${expects}`);
    }
    return value;
  }

  secret(name: string): Secret | undefined {
    const value = this.raw(name);
    return value === undefined ? undefined : new Secret(value);
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (/^true$/i.test(value)) return true;
    if (/^false$/i.test(value)) return false;
    this.problem(name, `"${value}" is not valid; expected true or false`);
    return fallback;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      this.problem(name, `"${value}" is not valid; expected a whole number from ${min} to ${max}`);
      return fallback;
    }
    return Number(value);
  }

  httpsUrl(name: string, fallback: string): string {
    const value = this.raw(name) ?? fallback;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      this.problem(name, `is not a URL; expected an https:// URL`);
      return value;
    }
    // Shown without user info, query or fragment: those may hold credentials.
    const shown = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
    if (url.protocol !== 'https:') {
      this.problem(name, `"${shown}" uses ${url.protocol.replace(':', '')}; expected an https:// URL`);
    }
    if (url.search || url.hash || url.username || url.password) {
      this.problem(name, `"${shown}" must not carry a query, fragment or credentials`);
    }
    return value.replace(/\/+$/, '');
  }

  absolutePath(name: string, fallback: string): string {
    const value = this.raw(name) ?? fallback;
    if (!isAbsolute(value))
      this.problem(name, `"${value}" is not an absolute path; expected a directory path`);
    return value;
  }
}
