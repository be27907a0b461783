/**
 * The work directory of extractions: one directory per series+version, files written under a
 * partial name until every check passed, and the clean-up of what an interrupted attempt left.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StemcellError } from './manifest.js';

export const VHD_FILE = 'root.vhd';
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const RESULT_FILE = 'stemcell.json';

export interface StemcellWorkPaths {
  dir: string;
  vhdPath: string;
  extentsPath: string;
  resultPath: string;
}

/** Where one series+version is extracted; the same inputs always give the same paths. */
export function stemcellWorkPaths(workDir: string, series: string, version: string): StemcellWorkPaths {
  for (const [what, value] of [
    ['series', series],
    ['version', version],
  ] as const) {
    if (!SAFE_NAME.test(value) || value.includes('..')) {
      throw new StemcellError(
        `stemcell ${what} ${JSON.stringify(value)} is not usable in a file name (expected letters, digits, '.', '_', '-')`,
      );
    }
  }
  const dir = join(workDir, `${series}_${version}`);
  return {
    dir,
    vhdPath: join(dir, VHD_FILE),
    extentsPath: join(dir, `${VHD_FILE}.extents.json`),
    resultPath: join(dir, RESULT_FILE),
  };
}

/** Removes everything extracted for this series+version (a no-op when nothing is there). */
export async function removeStemcellWorkFiles(
  workDir: string,
  series: string,
  version: string,
): Promise<void> {
  await rm(stemcellWorkPaths(workDir, series, version).dir, { recursive: true, force: true });
}

/** This machine in partial-file names: letters, digits, '.', '_' and '-' only, at most 64 of them. */
export const THIS_HOST =
  hostname()
    .replace(/[^A-Za-z0-9.-]/g, '_')
    .slice(0, 64) || 'unknown-host';

/**
 * `<file>.partial-<host>-<pid>-<hex>`: what an extraction writes before it is complete. The host
 * qualifies the pid: the work directory may be a share mounted by several machines.
 */
export function partialFileSuffix(owner: { host: string; pid: number }, id: string): string {
  return `.partial-${owner.host}-${owner.pid}-${id}`;
}
const PARTIAL_FILE = /\.partial-(.+)-(\d+)-[0-9a-f]+$/;
/** Written before partial names carried the host: the owner's machine is unknown. */
const HOSTLESS_PARTIAL_FILE = /\.partial-(\d+)-[0-9a-f]+$/;
/** A partial file of this machine untouched this long belongs to no running extraction. */
const STALE_PARTIAL_MS = 60 * 60 * 1000;
/** Another machine's pids mean nothing here: its partial files go only when untouched this long. */
const STALE_FOREIGN_PARTIAL_MS = 24 * 60 * 60 * 1000;
/** Suffixes of the extractions running in this process right now. */
const activeSuffixes = new Set<string>();

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code === 'EPERM';
  }
}

/** Whether a partial file named `name`, last written `ageMs` ago, can belong to no running extraction. */
function isAbandoned(name: string, ageMs: number): boolean {
  const owned = PARTIAL_FILE.exec(name);
  if (owned && owned[1] === THIS_HOST) {
    if (activeSuffixes.has(owned[0])) return false;
    const pid = Number(owned[2]);
    return pid === process.pid || !isProcessAlive(pid) || ageMs > STALE_PARTIAL_MS;
  }
  return (owned !== null || HOSTLESS_PARTIAL_FILE.test(name)) && ageMs > STALE_FOREIGN_PARTIAL_MS;
}

/**
 * Deletes the partial files that an interrupted earlier attempt (a killed process) left in the
 * version's directory; files of an extraction still running (here, in a live process of this
 * machine, or recently on another machine) and a complete extraction are kept.
 */
async function removeStalePartials(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    names.map(async (name) => {
      if (!PARTIAL_FILE.test(name) && !HOSTLESS_PARTIAL_FILE.test(name)) return;
      const path = join(dir, name);
      const mtime = (await stat(path).catch(() => undefined))?.mtimeMs;
      if (mtime === undefined) return;
      if (isAbandoned(name, Date.now() - mtime)) await rm(path, { force: true });
    }),
  );
}

/**
 * One extraction's files while it runs: partial names no other attempt uses, renamed to their final
 * names by `complete`, deleted by `discard`.
 */
export class ExtractionAttempt {
  readonly paths: StemcellWorkPaths;
  readonly #suffix: string;

  private constructor(paths: StemcellWorkPaths) {
    this.paths = paths;
    // A unique suffix: a second attempt running at the same time must not write into our files.
    this.#suffix = partialFileSuffix({ host: THIS_HOST, pid: process.pid }, randomBytes(4).toString('hex'));
  }

  /** Creates the version's directory and clears what interrupted attempts left in it. */
  static async start(paths: StemcellWorkPaths): Promise<ExtractionAttempt> {
    const attempt = new ExtractionAttempt(paths);
    activeSuffixes.add(attempt.#suffix);
    try {
      await mkdir(paths.dir, { recursive: true });
      await removeStalePartials(paths.dir);
    } catch (error) {
      await attempt.discard();
      throw error;
    }
    return attempt;
  }

  get vhdPartial(): string {
    return this.paths.vhdPath + this.#suffix;
  }
  get extentsPartial(): string {
    return this.paths.extentsPath + this.#suffix;
  }
  get #resultPartial(): string {
    return this.paths.resultPath + this.#suffix;
  }

  /** Gives the VHD and extent map their final names, then the result file that vouches for them. */
  async complete(result: object): Promise<void> {
    await rename(this.vhdPartial, this.paths.vhdPath);
    await rename(this.extentsPartial, this.paths.extentsPath);
    // Written last: its presence means the VHD and extents beside it are complete.
    await writeFile(this.#resultPartial, JSON.stringify(result));
    await rename(this.#resultPartial, this.paths.resultPath);
    activeSuffixes.delete(this.#suffix);
  }

  /** Deletes every file of this attempt, and the directory when nothing else is in it. */
  async discard(): Promise<void> {
    await Promise.all(
      [this.vhdPartial, this.extentsPartial, this.#resultPartial].map((p) => rm(p, { force: true })),
    );
    await rmdir(this.paths.dir).catch(() => undefined); // only succeeds when nothing else is in it
    activeSuffixes.delete(this.#suffix);
  }
}
