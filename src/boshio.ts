/**
 * bosh.io API client: lists a stemcell series and validates what it gets.
 */

import { isTransientError, isTransientStatus } from './failures.js';
import { HttpsRequiredError, fetchOverHttps } from './https-fetch.js';
import { compareStemcellVersions, isStemcellVersion } from './versions.js';

/** One downloadable stemcell version of a series, as bosh.io publishes it (the `regular` tarball). */
export interface StemcellRelease {
  series: string;
  version: string;
  url: string;
  /** Tarball size in bytes as bosh.io lists it: the download never reads more. */
  size: number;
  /** Hex digests; at least one of sha256 / sha1 is present. */
  sha256?: string;
  sha1?: string;
}

/** bosh.io is unreachable, answered badly, or published something we cannot use. */
export class BoshioError extends Error {
  constructor(
    message: string,
    /** Worth retrying later: network trouble, 408, 429, 5xx (see failures.ts). */
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BoshioError';
  }
}

export interface ListOptions {
  timeoutMs: number;
  /** Ask for every version (`?all=1`) instead of the newest 40. */
  all?: boolean;
  signal?: AbortSignal;
}

const HEX40 = /^[0-9a-f]{40}$/i;
const HEX64 = /^[0-9a-f]{64}$/i;

/**
 * Lists the published versions of a series, oldest first by numeric version (bosh.io's array order is
 * not trusted).
 */
export async function listStemcellReleases(
  boshioUrl: string,
  series: string,
  options: ListOptions,
): Promise<StemcellRelease[]> {
  const url = `${boshioUrl}/api/v1/stemcells/${encodeURIComponent(series)}${options.all ? '?all=1' : ''}`;
  const signals = [AbortSignal.timeout(options.timeoutMs), ...(options.signal ? [options.signal] : [])];
  let response: Response;
  let text: string;
  try {
    ({ response } = await fetchOverHttps(url, {
      headers: { accept: 'application/json' },
      signal: AbortSignal.any(signals),
    }));
    text = await response.text();
  } catch (error) {
    const reason =
      error instanceof Error && error.name === 'TimeoutError'
        ? `no answer within ${options.timeoutMs / 1000} s`
        : error instanceof HttpsRequiredError
          ? error.message
          : String((error as Error).cause ?? error);
    throw new BoshioError(`bosh.io request ${url} failed: ${reason}`, isTransientError(error), {
      cause: error,
    });
  }
  if (response.status !== 200) {
    const transient = isTransientStatus(response.status);
    throw new BoshioError(
      `bosh.io answered ${response.status} for ${url}${transient ? '; try again later' : ''}`,
      transient,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BoshioError(
      `bosh.io answered ${url} with something that is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
      false,
    );
  }
  const releases = parseStemcellListing(series, body);
  if (releases.length === 0) {
    throw new BoshioError(
      `bosh.io lists no versions of "${series}": check the series name (e.g. bosh-azure-hyperv-ubuntu-jammy-go_agent)`,
      false,
    );
  }
  return releases;
}

/** Validates bosh.io's JSON for one series; every problem is named by entry. */
export function parseStemcellListing(series: string, body: unknown): StemcellRelease[] {
  if (!Array.isArray(body))
    throw new BoshioError(`bosh.io listing for "${series}" is not a JSON array`, false);
  const releases = body.map((entry: unknown, index) => parseEntry(series, entry, index));
  const seen = new Set<string>();
  for (const r of releases) {
    if (seen.has(r.version)) throw new BoshioError(`bosh.io lists ${series} ${r.version} twice`, false);
    seen.add(r.version);
  }
  return releases.sort((a, b) => compareStemcellVersions(a.version, b.version));
}

function parseEntry(series: string, entry: unknown, index: number): StemcellRelease {
  const where = `bosh.io entry #${index} of "${series}"`;
  const bad = (what: string): never => {
    throw new BoshioError(`${where} ${what}`, false);
  };
  if (!isRecord(entry)) return bad('is not an object');
  const version = entry.version;
  if (typeof version !== 'string' || !isStemcellVersion(version)) {
    return bad(`has version ${JSON.stringify(version)}; expected digits separated by dots`);
  }
  const at = `${where} (version ${version})`;
  if (entry.name !== undefined && entry.name !== series) {
    throw new BoshioError(`${at} is named ${JSON.stringify(entry.name)}, not "${series}"`, false);
  }
  const regular = entry.regular;
  if (!isRecord(regular)) throw new BoshioError(`${at} has no "regular" tarball`, false);
  const url = regular.url;
  if (typeof url !== 'string' || !/^https?:\/\//.test(url)) {
    throw new BoshioError(`${at} has no regular.url`, false);
  }
  if (!url.startsWith('https://')) {
    throw new BoshioError(
      `${at} lists its tarball at ${hostOf(url)} over plain http: refused, https is required`,
      false,
    );
  }
  const sha256 = typeof regular.sha256 === 'string' && regular.sha256 !== '' ? regular.sha256 : undefined;
  const sha1 = typeof regular.sha1 === 'string' && regular.sha1 !== '' ? regular.sha1 : undefined;
  if (sha256 === undefined && sha1 === undefined) {
    throw new BoshioError(
      `${at} has neither regular.sha256 nor regular.sha1, so it cannot be verified`,
      false,
    );
  }
  if (sha256 !== undefined && !HEX64.test(sha256))
    throw new BoshioError(`${at} has a malformed sha256`, false);
  if (sha1 !== undefined && !HEX40.test(sha1)) throw new BoshioError(`${at} has a malformed sha1`, false);
  const size = regular.size;
  // The download reads no more than this, so a hostile server cannot fill the disk.
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
    throw new BoshioError(`${at} has no regular.size, so its download cannot be bounded`, false);
  }
  const release: StemcellRelease = { series, version, url, size };
  if (sha256 !== undefined) release.sha256 = sha256.toLowerCase();
  if (sha1 !== undefined) release.sha1 = sha1.toLowerCase();
  return release;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'an unreadable address';
  }
}
