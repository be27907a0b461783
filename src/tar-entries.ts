/**
 * Tar archives as a stemcell holds them, read with node-tar's Parser: entry names and types judged
 * before anything is done with an entry, and a Writable front that bounds what the archive inflates to.
 */

import { Writable } from 'node:stream';
import type { ReadEntry } from 'tar';
import { Parser } from 'tar';
import { StemcellError } from './manifest.js';
import { MIB } from './vhd.js';

const REGULAR_FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/** Tar entry names as archivers write them: `./root.vhd` and `root.vhd` are the same file. */
export function entryName(entry: ReadEntry): string {
  return entry.path.replace(/^(\.\/)+/, '');
}

export function isRegularFile(entry: ReadEntry): boolean {
  return REGULAR_FILE_TYPES.has(entry.type);
}

/** `/x`, `\\x`, `C:x` or a `..` segment: names a real stemcell never has, and that could leave a directory. */
function isEscapingName(name: string): boolean {
  return /^([/\\]|[A-Za-z]:)/.test(name) || name.split(/[/\\]/).includes('..');
}

/**
 * Refuses an entry whose name is absolute or climbs out with `..`, and a link (or anything but a
 * regular file) under a name the stemcell must hold as a file; `label` says which archive it is in.
 */
export function checkEntry(entry: ReadEntry, label: string, fileNames: readonly string[]): void {
  const name = entryName(entry);
  if (isEscapingName(entry.path)) {
    throw new StemcellError(
      `${label} has an entry named ${JSON.stringify(entry.path)}: absolute names and '..' are refused (a stemcell never has one)`,
    );
  }
  if (fileNames.includes(name) && !isRegularFile(entry)) {
    const target = entry.linkpath ? ` to ${JSON.stringify(entry.linkpath)}` : '';
    throw new StemcellError(
      `${label} has ${name} as a ${entry.type} entry${target}, expected a regular file; links are never followed`,
    );
  }
}

/**
 * A Writable front for node-tar's Parser: passes its backpressure on, caps the inflated bytes, turns
 * its warnings (truncation, bad headers) into errors, and finishes only after the parser has ended.
 */
export class TarSink extends Writable {
  readonly parser: Parser;
  #bytes = 0;
  #limit: { bytes: number; reason: string };
  #sawEndOfArchive = false;
  readonly label: string;

  /** `limit`: the most bytes the archive may inflate to, and why. */
  constructor(label: string, onEntry: (entry: ReadEntry) => void, limit: { bytes: number; reason: string }) {
    super({ highWaterMark: 4 * MIB });
    this.label = label;
    this.#limit = limit;
    this.parser = new Parser({
      onReadEntry: onEntry,
      onwarn: (code: string, message: string | Error) => this.#onWarning(code, message),
    });
    this.parser.on('eof', () => (this.#sawEndOfArchive = true));
    this.parser.on('error', (error: Error) => this.destroy(this.#corrupt(error.message)));
  }

  #corrupt(message: string): StemcellError {
    return new StemcellError(`${this.label} is not a valid tar archive: ${message}`);
  }

  #onWarning(code: string, message: string | Error): void {
    const text = typeof message === 'string' ? message : message.message;
    // An archive with no entries at all is well-formed; the missing entry is reported by name later.
    if (code === 'TAR_BAD_ARCHIVE' && /Unrecognized archive format/.test(text) && this.#sawEndOfArchive)
      return;
    this.destroy(this.#corrupt(`${code} ${text}`));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#limit.bytes) {
      return callback(
        new StemcellError(
          `${this.label} inflates to more than ${this.#limit.bytes} bytes (${this.#limit.reason}): refused after ${this.#bytes} bytes`,
        ),
      );
    }
    if (this.parser.write(chunk) || this.destroyed) return callback();
    this.parser.once('drain', () => callback());
  }

  /** Allows `more` bytes beyond those already inflated, from now on. */
  limitTo(more: number, reason: string): void {
    this.#limit = { bytes: this.#bytes + more, reason };
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.parser.once('end', () => callback());
    this.parser.end();
  }
}
