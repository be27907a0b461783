/**
 * The extraction floor: the least work any extractor must do on a stemcell tarball, measured on the
 * same file in the same run as the real extractor. Read -> SHA-256 -> gunzip -> tar parse -> inner
 * gunzip -> discard. No SHA-1, no image digests, no inner tar parse, no zero scan, no disk writes.
 */

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Transform, Writable } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser } from 'tar';
import type { ReadEntry } from 'tar';

const MIB = 1024 * 1024;
const ZLIB_OPTIONS = { chunkSize: MIB };

export interface FloorResult {
  sha256: string;
  /** Bytes of the inflated `image` (the inner tar: root.vhd plus its tar header and padding). */
  innerBytes: number;
}

class Sha256Tap extends Transform {
  readonly hash = createHash('sha256');
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    callback(null, chunk);
  }
}

/** node-tar's Parser behind a Writable, passing its backpressure on. */
function parserSink(parser: Parser): Writable {
  return new Writable({
    highWaterMark: 4 * MIB,
    write(chunk: Buffer, _encoding, callback) {
      if (parser.write(chunk)) return callback();
      parser.once('drain', () => callback());
    },
    final(callback) {
      parser.once('end', () => callback());
      parser.end();
    },
  });
}

export async function extractionFloor(source: Readable): Promise<FloorResult> {
  let innerBytes = 0;
  let inner: Promise<void> | undefined;
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      if (entry.path.replace(/^(\.\/)+/, '') !== 'image') return void entry.resume();
      const gunzip = createGunzip(ZLIB_OPTIONS);
      const discard = new Writable({
        highWaterMark: 4 * MIB,
        write(chunk: Buffer, _encoding, callback) {
          innerBytes += chunk.length;
          callback();
        },
      });
      inner = pipeline(gunzip, discard);
      entry.pipe(gunzip);
    },
  });
  const tap = new Sha256Tap();
  await pipeline(source, tap, createGunzip(ZLIB_OPTIONS), parserSink(parser));
  if (!inner) throw new Error('the tarball has no image entry');
  await inner;
  return { sha256: tap.hash.digest('hex'), innerBytes };
}
