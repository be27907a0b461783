/**
 * The work directory of extractions: one directory per series+version, files written under a
 * partial name until every check passed, and the clean-up of what an interrupted attempt left.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
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

/** `<file>.partial-<pid>-<hex>`: what an extraction writes before it is complete. */
const PARTIAL_FILE = /\.partial-(\d+)-[0-9a-f]+$/;
/** A partial file untouched this long belongs to no running extraction, whoever wrote it. */
const STALE_PARTIAL_MS = 60 * 60 * 1000;
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

/**
 * Deletes the partial files that an interrupted earlier attempt (a killed process) left in the
 * version's directory; files of an extraction still running (here or in a live process) and a
 * complete extraction are kept.
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
      const match = PARTIAL_FILE.exec(name);
      if (!match) return;
      const suffix = match[0];
      if (activeSuffixes.has(suffix)) return;
      const pid = Number(match[1]);
      const path = join(dir, name);
      const mtime = (await stat(path).catch(() => undefined))?.mtimeMs;
      if (mtime === undefined) return;
      const old = Date.now() - mtime > STALE_PARTIAL_MS;
      if (pid === process.pid || !isProcessAlive(pid) || old) await rm(path, { force: true });
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
    this.#suffix = `.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
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
