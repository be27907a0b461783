/**
 * The extraction floor: the least work any extractor must do on a stemcell tarball, measured on the
 * same file in the same run as the real extractor. Read -> SHA-256 -> gunzip -> tar parse -> inner
 * gunzip -> discard. No SHA-1, no image digests, no inner tar parse, no zero scan, no disk writes.
 */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { Transform, Writable } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser } from 'tar';
import type { ReadEntry } from 'tar';
import { ContainerClient } from '@azure/storage-blob';
import { createAzureCredential } from '../../src/credentials.js';
import { DEFAULT_CONNECTIONS, downloadStream } from '../../src/download.js';
import { planPageWrites } from '../../src/page-ranges.js';
import type { LocalAzure } from '../support/local-azure.js';
import { check } from './output.js';
import type { Subject } from './runs.js';
import { uploadFloor } from './upload.js';

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

export interface Floors {
  decompression: { wallSeconds: number; cpuSeconds: number };
  upload: { wallSeconds: number; cpuSeconds: number; putPages: number; putPageBytes: number };
  /** The tarball at the per-connection cap over one connection. */
  networkOneConnectionSeconds: number;
  /** downloadStream alone (read and discard), by number of connections: wall seconds. */
  downloadAlone: Array<{ connections: number; wallSeconds: number; cpuSeconds: number; timesTheCap: number }>;
}

export async function measureFloors(
  local: LocalAzure,
  subject: Subject,
  vhdPath: string,
  concurrency: number,
  cap: number,
): Promise<Floors> {
  const cpu = (): number => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  };
  let wall = performance.now();
  let cpuAt = cpu();
  const floor = await extractionFloor(createReadStream(subject.tarball));
  const decompression = { wallSeconds: (performance.now() - wall) / 1000, cpuSeconds: cpu() - cpuAt };
  check(floor.innerBytes >= subject.vhdSize, `the floor inflated ${floor.innerBytes} bytes of image`);

  const container = new ContainerClient(`${local.azurite.blobEndpoint}/floor`, createAzureCredential());
  await container.createIfNotExists(); // outside the timing, with the first token
  const writes = planPageWrites(subject.extents);
  wall = performance.now();
  cpuAt = cpu();
  const upload = await uploadFloor(container, 'floor.vhd', vhdPath, subject.vhdSize, writes, concurrency);
  const uploadFigures = {
    wallSeconds: (performance.now() - wall) / 1000,
    cpuSeconds: cpu() - cpuAt,
    putPages: writes.length,
    putPageBytes: upload.bytesUploaded,
  };
  await upload.blob.delete();

  const downloadAlone: Floors['downloadAlone'] = [];
  for (const connections of [1, DEFAULT_CONNECTIONS]) {
    wall = performance.now();
    cpuAt = cpu();
    let bytes = 0;
    for await (const chunk of downloadStream(subject.url, {
      timeoutMs: 60_000,
      expectedSize: subject.tarballSize,
      connections,
    }))
      bytes += (chunk as Buffer).length;
    check(bytes === subject.tarballSize, `downloadStream delivered ${bytes} bytes`);
    const wallSeconds = (performance.now() - wall) / 1000;
    downloadAlone.push({
      connections,
      wallSeconds,
      // The bosh.io fake runs in this process too: its TLS and reads are in this figure.
      cpuSeconds: cpu() - cpuAt,
      timesTheCap: subject.tarballSize / wallSeconds / cap,
    });
  }
  return {
    decompression,
    upload: uploadFigures,
    networkOneConnectionSeconds: subject.tarballSize / cap,
    downloadAlone,
  };
}
