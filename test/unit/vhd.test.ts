import assert from 'node:assert/strict';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { after, before, test } from 'node:test';
import {
  MAX_EXTENTS,
  MIB,
  SparseFileWriter,
  VHD_FOOTER_SIZE,
  VhdError,
  checkFixedVhd,
  parseVhdFooter,
  readExtents,
  readVhdRange,
  vhdReadBuffers,
  writeExtents,
} from '../../src/vhd.js';
import type { Extent, VhdFooter } from '../../src/vhd.js';
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

test('the sparse writer tells of each run of data once it is on disk, in file order: together they are the extents', async () => {
  const fixture = await buildStemcellFixture({ seed: 9, virtualSizeMiB: 4 });
  const path = join(dir, 'runs.vhd');
  const runs: Extent[] = [];
  let fd: number | undefined;
  const writer = new SparseFileWriter(path, {
    onData: (run) => {
      // Read back at once (synchronously), as the overlapped upload may: the bytes must be in the file.
      fd ??= openSync(path, 'r');
      const bytes = Buffer.alloc(run.length);
      readSync(fd, bytes, 0, run.length, run.offset);
      assert.ok(
        bytes.equals(fixture.vhd.subarray(run.offset, run.offset + run.length)),
        `run at ${run.offset}`,
      );
      const last = runs.at(-1);
      assert.ok(!last || run.offset >= last.offset + last.length, 'a run out of file order');
      runs.push(run);
    },
  });
  try {
    await pipeline(chunked(fixture.vhd, [1, 511, 1000, 70_001, 513]), writer);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const joined: Extent[] = [];
  for (const run of runs) {
    const last = joined.at(-1);
    if (last && last.offset + last.length === run.offset) last.length += run.length;
    else joined.push({ ...run });
  }
  assert.deepEqual(joined, fixture.extents);
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

/** `size` bytes in which every other 512-byte sector is data (0x5a) and the rest zero, 1 MiB at a time. */
function* alternatingSectors(size: number): Generator<Buffer> {
  const chunk = Buffer.alloc(MIB);
  for (let at = 0; at < MIB; at += 1024) chunk.fill(0x5a, at, at + 512);
  for (let at = 0; at < size; at += MIB) yield chunk.subarray(0, Math.min(MIB, size - at));
}

/** Sorted, disjoint, sector-aligned, starting and ending on data, covering every data sector. */
function assertCoversAlternatingData(extents: readonly Extent[], size: number): void {
  let end = 0;
  let covered = 0;
  for (const { offset, length } of extents) {
    assert.ok(offset >= end && length > 0 && offset % 512 === 0 && length % 512 === 0, `${offset}+${length}`);
    assert.ok(offset % 1024 === 0 && (offset + length) % 1024 === 512, 'an extent starts and ends on data');
    covered += (length + 512) / 1024;
    end = offset + length;
  }
  assert.equal(covered, size / 1024, 'every data sector is inside an extent');
}

test('fault: a VHD of alternating 512-byte data and zero sectors keeps its extent map within budget', async () => {
  const size = 80 * MIB; // 81,920 data sectors: more than MAX_EXTENTS exact extents
  const path = join(dir, 'alternating.vhd');
  const writer = new SparseFileWriter(path);
  await pipeline(Readable.from(alternatingSectors(size)), writer);

  assert.ok(writer.extents.length <= MAX_EXTENTS, `${writer.extents.length} extents`);
  assertCoversAlternatingData(writer.extents, size);
  assert.equal(
    writer.dataBytes,
    writer.extents.reduce((sum, e) => sum + e.length, 0),
  );
  const mapPath = join(dir, 'alternating.extents.json');
  await writeExtents(mapPath, writer.extents);
  assert.ok((await stat(mapPath)).size < 2 * MIB, 'the extent map stays small');
  const file = await readFile(path);
  let at = 0;
  for (const chunk of alternatingSectors(size)) {
    assert.ok(file.subarray(at, at + chunk.length).equals(chunk), `the sparse file differs at ${at}`);
    at += chunk.length;
  }
});

test('a tiny extent budget joins data across zero gaps and keeps every byte', async () => {
  const fixture = await buildStemcellFixture({ seed: 11 });
  const path = join(dir, 'budget.vhd');
  const writer = new SparseFileWriter(path, { maxExtents: 8 });
  await pipeline(chunked(fixture.vhd, [1 << 20]), writer);
  assert.ok(writer.extents.length <= 8, `${writer.extents.length} extents`);
  assert.ok((await readFile(path)).equals(fixture.vhd));
  for (const exact of fixture.extents) {
    assert.ok(
      writer.extents.some(
        (e) => e.offset <= exact.offset && exact.offset + exact.length <= e.offset + e.length,
      ),
      `data at ${exact.offset}+${exact.length} lies outside every extent`,
    );
  }
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

test('fault: a footer of any disk type but fixed is refused: none, dynamic or differencing', () => {
  for (const diskType of [0, 1, 3, 4, 5, 6]) {
    assert.throws(
      () => checkFixedVhd(parseVhdFooter(fixedVhdFooter(DISK, { diskType })), DISK + VHD_FOOTER_SIZE),
      {
        name: 'VhdError',
        message: `root.vhd disk type is ${diskType}, expected 2 (fixed): Azure only accepts fixed VHDs`,
      },
      `disk type ${diskType}`,
    );
  }
});

test('fault: a footer size beyond what a JavaScript number holds exactly is refused', () => {
  const largest = footerWith((f) => f.writeBigUInt64BE(BigInt(Number.MAX_SAFE_INTEGER), 48));
  assert.equal(largest.currentSize, Number.MAX_SAFE_INTEGER);
  assert.throws(() => footerWith((f) => f.writeBigUInt64BE(BigInt(Number.MAX_SAFE_INTEGER) + 1n, 40)), {
    name: 'VhdError',
    message: 'VHD footer size field at byte 40 is 9007199254740992, larger than any disk this tool accepts',
  });
});

/** Writes `data` in one chunk and returns the writer once the file is closed. */
async function writeSparse(name: string, data: Buffer): Promise<SparseFileWriter> {
  const writer = new SparseFileWriter(join(dir, name));
  await pipeline(Readable.from([data]), writer);
  return writer;
}

test('a data run that ends where a whole zero block starts is closed there', async () => {
  const data = Buffer.alloc(256 * 1024);
  data.fill(1, 0, 64 * 1024);
  data.fill(3, 131_072, 131_584);
  const writer = await writeSparse('runs.vhd', data);
  assert.deepEqual(writer.extents, [
    { offset: 0, length: 65_536 },
    { offset: 131_072, length: 512 },
  ]);
  const later = Buffer.alloc(256 * 1024);
  later.fill(4, 65_024, 65_536);
  later.fill(5, 196_608, 197_120);
  assert.deepEqual((await writeSparse('runs2.vhd', later)).extents, [
    { offset: 65_024, length: 512 },
    { offset: 196_608, length: 512 },
  ]);
});

test('a stream that ends inside a sector keeps its last bytes: data as an extent, zeros as length', async () => {
  const data = Buffer.alloc(700, 7);
  const writer = await writeSparse('tail.vhd', data);
  assert.deepEqual(writer.extents, [{ offset: 0, length: 700 }]);
  assert.equal(writer.bytesWritten, 700);
  assert.equal(writer.dataBytes, 700);
  assert.ok((await readFile(writer.path)).equals(data));

  const zeroTail = Buffer.alloc(600);
  zeroTail.fill(9, 0, 512);
  const second = await writeSparse('zero-tail.vhd', zeroTail);
  assert.deepEqual(second.extents, [{ offset: 0, length: 512 }]);
  assert.equal(second.bytesWritten, 600);
  assert.equal((await stat(second.path)).size, 600);
});

test('bytesWritten counts the bytes of a partial sector still held back', async () => {
  const writer = new SparseFileWriter(join(dir, 'partial.vhd'));
  await new Promise<void>((resolve, reject) =>
    writer.write(Buffer.alloc(1000, 1), (e) => (e ? reject(e) : resolve())),
  );
  assert.equal(writer.bytesWritten, 1000);
  writer.end();
  await finished(writer);
});

test('a writer destroyed with an error closes its file and reports the error', async () => {
  const openFiles = async () => (await readdir('/proc/self/fd')).length;
  const before = await openFiles();
  const writer = new SparseFileWriter(join(dir, 'destroyed.vhd'));
  await new Promise<void>((resolve, reject) =>
    writer.write(Buffer.alloc(512, 1), (e) => (e ? reject(e) : resolve())),
  );
  assert.equal(await openFiles(), before + 1);
  writer.destroy(new Error('download failed'));
  await assert.rejects(finished(writer), /download failed/);
  assert.equal(await openFiles(), before);
});

test('fault: a damaged extent map is refused as such, naming what to do', async () => {
  const cases: Array<[string, RegExp]> = [
    ['{"extents":[[0,512]', /is not valid JSON \(.*\): extract the stemcell again$/],
    ['{"extents":5}', /has no "extents" list: extract the stemcell again$/],
    ['{}', /has no "extents" list/],
    ['{"extents":[5]}', /holds 5, expected sorted, non-overlapping \[offset, length\] pairs/],
    ['{"extents":[[0.5,512]]}', /holds \[0\.5,512\]/],
    ['{"extents":[[0,"512"]]}', /holds \[0,"512"\]/],
    ['{"extents":[[0,0]]}', /holds \[0,0\]/],
    ['{"extents":[[0,-512]]}', /holds \[0,-512\]/],
    ['{"extents":[[-512,512]]}', /holds \[-512,512\]/],
  ];
  for (const [text, message] of cases) {
    const path = join(dir, 'damaged-map.json');
    await writeFile(path, text);
    await assert.rejects(readExtents(path), { name: 'VhdError', message }, text);
  }
});

/** Everything a stream gives. */
async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test("a page write's body is its range of the file, read into 1 MiB buffers and streamed afresh for every attempt", async () => {
  const path = join(dir, 'range-body.vhd');
  const content = Buffer.alloc(4 * MIB + 1024);
  for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;
  await writeFile(path, content);
  const file = await open(path, 'r');
  try {
    const buffers = vhdReadBuffers(4 * MIB);
    assert.deepEqual(
      buffers.map((buffer) => buffer.length),
      [MIB, MIB, MIB, MIB],
    );
    for (const write of [
      { offset: 512, length: 2 * MIB + 1536 },
      { offset: 1024, length: 4 * MIB },
      { offset: 4 * MIB, length: 512 },
    ]) {
      const body = await readVhdRange(file, buffers, write, path);
      const expected = content.subarray(write.offset, write.offset + write.length);
      assert.ok((await drain(body())).equals(expected));
      // A retry calls the factory again: the same bytes, from the start of the range.
      assert.ok((await drain(body())).equals(expected));
    }
  } finally {
    await file.close();
  }
});

test('fault: a VHD shorter than a page write it should hold fails the read, naming the file', async () => {
  const path = join(dir, 'range-body-short.vhd');
  await writeFile(path, Buffer.alloc(MIB, 1));
  const file = await open(path, 'r');
  try {
    await assert.rejects(
      readVhdRange(file, vhdReadBuffers(2 * MIB), { offset: MIB / 2, length: MIB }, path),
      new RegExp(`range-body-short\\.vhd ends before byte ${1.5 * MIB} that its extents cover`),
    );
  } finally {
    await file.close();
  }
});
