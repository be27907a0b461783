import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, test } from 'node:test';
import {
  MIB,
  SparseFileWriter,
  VHD_FOOTER_SIZE,
  VhdError,
  checkFixedVhd,
  parseVhdFooter,
  readExtents,
  writeExtents,
} from '../../src/vhd.js';
import type { VhdFooter } from '../../src/vhd.js';
import { buildStemcellFixture, fixedVhdFooter } from '../support/stemcell-fixture.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vhd-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const DISK = 16 * MIB;

function footerWith(change: (footer: Buffer) => void): VhdFooter {
  const footer = fixedVhdFooter(DISK);
  change(footer);
  return parseVhdFooter(footer);
}

/** Rewrites the checksum after a change, so only the changed field is wrong. */
function resum(footer: Buffer): void {
  footer.writeUInt32BE(0, 64);
  let sum = 0;
  for (const byte of footer) sum += byte;
  footer.writeUInt32BE(~sum >>> 0, 64);
}

test('a fixed VHD footer parses into cookie, type, sizes and a valid checksum', () => {
  assert.deepEqual(parseVhdFooter(fixedVhdFooter(DISK)), {
    cookie: 'conectix',
    diskType: 2,
    currentSize: DISK,
    originalSize: DISK,
    checksumValid: true,
  });
});

test('fault: a footer that is not 512 bytes is refused', () => {
  assert.throws(() => parseVhdFooter(new Uint8Array(511)), {
    name: 'VhdError',
    message: /must be 512 bytes, got 511/,
  });
});

test('a valid fixed VHD of whole MiB passes the check', () => {
  assert.doesNotThrow(() => checkFixedVhd(parseVhdFooter(fixedVhdFooter(DISK)), DISK + VHD_FOOTER_SIZE));
});

test('fault: a wrong cookie is refused with expected and actual', () => {
  const footer = footerWith((f) => {
    f.write('notavhd!', 0, 'latin1');
    resum(f);
  });
  assert.throws(() => checkFixedVhd(footer, DISK + 512), {
    name: 'VhdError',
    message: /cookie is "notavhd!", expected "conectix"/,
  });
});

test('fault: a damaged footer fails its checksum', () => {
  const footer = footerWith((f) => (f[70] = (f[70] ?? 0) ^ 0xff));
  assert.equal(footer.checksumValid, false);
  assert.throws(() => checkFixedVhd(footer, DISK + 512), { name: 'VhdError', message: /checksum/ });
});

test('fault: a dynamic VHD is refused: Azure wants fixed', () => {
  const footer = parseVhdFooter(fixedVhdFooter(DISK, { diskType: 3 }));
  assert.throws(() => checkFixedVhd(footer, DISK + 512), { message: /disk type is 3, expected 2 \(fixed\)/ });
});

test('fault: a file size that does not match the footer is refused', () => {
  const footer = parseVhdFooter(fixedVhdFooter(DISK));
  assert.throws(() => checkFixedVhd(footer, DISK), {
    message: new RegExp(`root.vhd is ${DISK} bytes, expected ${DISK + 512}`),
  });
});

test('fault: a virtual size that is not whole MiB is refused', () => {
  const size = DISK + 512;
  const footer = parseVhdFooter(fixedVhdFooter(size));
  assert.throws(() => checkFixedVhd(footer, size + 512), {
    message: new RegExp(`virtual size is ${size} bytes, expected a whole number of MiB`),
  });
});

test('VhdError is what the checks throw', () => {
  assert.throws(() => checkFixedVhd(parseVhdFooter(new Uint8Array(512)), 512), VhdError);
});

/** Feeds `data` in chunks of the given sizes, cycling, to exercise sectors split across writes. */
function chunked(data: Buffer, sizes: number[]): Readable {
  const parts: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = sizes[i % sizes.length] ?? 512;
    parts.push(data.subarray(at, at + size));
    at += size;
  }
  return Readable.from(parts);
}

test('the sparse writer finds exactly the non-zero extents of scattered data', async () => {
  const fixture = await buildStemcellFixture({ seed: 7 });
  const writer = new SparseFileWriter(join(dir, 'scattered.vhd'));
  await pipeline(chunked(fixture.vhd, [1 << 20]), writer);
  assert.deepEqual(writer.extents, fixture.extents);
  assert.equal(writer.bytesWritten, fixture.vhd.length);
  assert.equal(
    writer.dataBytes,
    fixture.extents.reduce((sum, e) => sum + e.length, 0),
  );
});

test('the sparse file holds the same bytes as the input', async () => {
  const fixture = await buildStemcellFixture({ seed: 8 });
  const path = join(dir, 'content.vhd');
  await pipeline(chunked(fixture.vhd, [1 << 20]), new SparseFileWriter(path));
  assert.ok((await readFile(path)).equals(fixture.vhd));
});

test('sectors split across writes of odd sizes give the same extents and bytes', async () => {
  const fixture = await buildStemcellFixture({ seed: 9, virtualSizeMiB: 4 });
  const path = join(dir, 'odd.vhd');
  const writer = new SparseFileWriter(path);
  await pipeline(chunked(fixture.vhd, [1, 511, 1000, 70_001, 513]), writer);
  assert.deepEqual(writer.extents, fixture.extents);
  assert.ok((await readFile(path)).equals(fixture.vhd));
});

test('the sparse file does not allocate its zero sectors', async () => {
  const fixture = await buildStemcellFixture({ virtualSizeMiB: 64 });
  const path = join(dir, 'sparse.vhd');
  await pipeline(chunked(fixture.vhd, [1 << 20]), new SparseFileWriter(path));
  const info = await stat(path);
  assert.equal(info.size, fixture.vhd.length);
  assert.ok(info.blocks * 512 < info.size / 8, `allocated ${info.blocks * 512} of ${info.size} bytes`);
});

test('an all-zero stream gives no extents and a file of the full size', async () => {
  const path = join(dir, 'zeros.vhd');
  const writer = new SparseFileWriter(path);
  await pipeline(Readable.from([Buffer.alloc(3 * MIB)]), writer);
  assert.deepEqual(writer.extents, []);
  assert.equal((await stat(path)).size, 3 * MIB);
});

test('extents survive a write and read of the extent map', async () => {
  const path = join(dir, 'map.json');
  const extents = [
    { offset: 0, length: 1024 },
    { offset: 4096, length: 512 },
  ];
  await writeExtents(path, extents);
  assert.deepEqual(await readExtents(path), extents);
});

test('fault: an extent map with overlapping ranges is refused', async () => {
  const path = join(dir, 'bad-map.json');
  await writeFile(path, '{"extents":[[0,1024],[512,512]]}');
  await assert.rejects(readExtents(path), { name: 'VhdError', message: /sorted, non-overlapping/ });
});
