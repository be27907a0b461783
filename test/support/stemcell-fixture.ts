/**
 * Stemcell tarballs built in code with the real layout: an outer gzip tar (stemcell.MF first,
 * then packages.txt, dev_tools_file_list.txt, image, the SBOMs) whose `image` entry is itself a
 * gzip tar holding `root.vhd`, a fixed VHD with scattered non-zero blocks and a valid footer.
 */

import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createGzip, gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { stringify } from 'yaml';
import type { Extent } from '../../src/vhd.js';

/** Tar entry types that point at another file instead of holding data. */
type LinkType = 'SymbolicLink' | 'Link';

export interface FixtureEntry {
  name: string;
  type?: 'File' | LinkType;
  body?: string;
  /** A body of this many zero bytes instead (streamed, never held in memory by writeLargeStemcellFixture). */
  zeroBytes?: number;
  linkpath?: string;
  /** Which archive gets the entry: the stemcell tarball (default) or the inner `image` tar. */
  archive?: 'stemcell' | 'image';
  /** Put the entry before all others of its archive instead of after them. */
  first?: boolean;
}

export interface StemcellFixtureOptions {
  /** Default `bosh-azure-hyperv-ubuntu-jammy-go_agent`. */
  series?: string;
  /** Default `1.100`. */
  version?: string;
  /** Virtual disk size of root.vhd in MiB (default 16). */
  virtualSizeMiB?: number;
  /** Total root.vhd size including the footer: overrides virtualSizeMiB, e.g. to make a non-MiB VHD. */
  vhdSizeBytes?: number;
  /** Chooses where the scattered non-zero blocks go and what they hold (default 1). */
  seed?: number;
  /** Roughly this much more non-zero data in large blocks (default 0), for benchmarks. */
  dataMiB?: number;
  /** Merged over the Azure defaults; a value of null removes a default. */
  cloudProperties?: Record<string, unknown>;
  /** Top-level stemcell.MF overrides (e.g. a wrong sha1 or name); null removes a field. */
  manifest?: Record<string, unknown>;
  omitImage?: boolean;
  omitRootVhd?: boolean;
  /** Name of the image entry in the stemcell tarball (default `image`). */
  imageEntryName?: string;
  /** Damage the footer (its checksum no longer matches). */
  corruptFooter?: boolean;
  extraEntries?: FixtureEntry[];
}

export interface StemcellFixture {
  tarball: Buffer;
  /** root.vhd exactly as it is inside the image. */
  vhd: Buffer;
  /** The non-zero extents of root.vhd that a sparse extraction must find. */
  extents: Extent[];
  /** Digests of the tarball. */
  sha1: string;
  sha256: string;
  /** Digests of the `image` entry. */
  imageSha1: string;
  imageSha256: string;
  manifestText: string;
  series: string;
  version: string;
}

const SECTOR = 512;
const MIB = 1024 * 1024;
const FOOTER_SIZE = 512;
const DEFAULT_SERIES = 'bosh-azure-hyperv-ubuntu-jammy-go_agent';
const DEFAULT_VERSION = '1.100';
const MTIME = new Date('2025-01-02T03:04:05Z');
const GENERATION_CHUNK = 4 * MIB;

/** A byte range of the virtual disk that holds pseudo-random non-zero bytes. */
interface Block {
  offset: number;
  length: number;
}

interface Layout {
  diskSize: number;
  blocks: Block[];
  footer: Buffer;
  extents: Extent[];
  seed: number;
}

/** mulberry32: small, seedable, good enough to scatter blocks. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** CHS geometry as the VHD specification computes it from the sector count. */
function chsGeometry(diskSize: number): { cylinders: number; heads: number; sectorsPerTrack: number } {
  const totalSectors = Math.min(Math.floor(diskSize / SECTOR), 65535 * 16 * 255);
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** A fixed-VHD footer for a disk of `diskSize` bytes, written field by field as the spec lays it out. */
export function fixedVhdFooter(diskSize: number, options: { seed?: number; diskType?: number } = {}): Buffer {
  const footer = Buffer.alloc(FOOTER_SIZE);
  footer.write('conectix', 0, 'latin1');
  footer.writeUInt32BE(2, 8); // features: reserved bit always set
  footer.writeUInt32BE(0x00010000, 12); // file format version 1.0
  footer.writeBigUInt64BE(0xffffffffffffffffn, 16); // data offset: none for fixed disks
  footer.writeUInt32BE(Math.floor((MTIME.getTime() - Date.UTC(2000, 0, 1)) / 1000), 24);
  footer.write('qemu', 28, 'latin1'); // creator application
  footer.writeUInt32BE(0x00050003, 32); // creator version
  footer.write('Wi2k', 36, 'latin1'); // creator host OS
  footer.writeBigUInt64BE(BigInt(diskSize), 40); // original size
  footer.writeBigUInt64BE(BigInt(diskSize), 48); // current size
  const { cylinders, heads, sectorsPerTrack } = chsGeometry(diskSize);
  footer.writeUInt16BE(cylinders, 56);
  footer.writeUInt8(heads, 58);
  footer.writeUInt8(sectorsPerTrack, 59);
  footer.writeUInt32BE(options.diskType ?? 2, 60); // 2: fixed
  createHash('sha256')
    .update(`unique-id:${options.seed ?? 1}`)
    .digest()
    .copy(footer, 68, 0, 16);
  let sum = 0;
  for (const byte of footer) sum += byte;
  footer.writeUInt32BE(~sum >>> 0, 64);
  return footer;
}

/** Sorted, merged, sector-rounded extents covering the given byte ranges. */
function extentsOf(ranges: Block[]): Extent[] {
  const sorted = ranges
    .map((r) => {
      const start = Math.floor(r.offset / SECTOR) * SECTOR;
      return { offset: start, length: Math.ceil((r.offset + r.length) / SECTOR) * SECTOR - start };
    })
    .sort((a, b) => a.offset - b.offset);
  const merged: Extent[] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last && range.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, range.offset + range.length - last.offset);
    } else merged.push({ ...range });
  }
  return merged;
}

function planLayout(options: StemcellFixtureOptions): Layout {
  const seed = options.seed ?? 1;
  const vhdSize = options.vhdSizeBytes ?? (options.virtualSizeMiB ?? 16) * MIB + FOOTER_SIZE;
  const diskSize = vhdSize - FOOTER_SIZE;
  const next = random(seed);
  const blocks: Block[] = [
    { offset: 0, length: 446 }, // in the first sector, like a boot record
    { offset: 510, length: 4 }, // straddles the first two sectors
    { offset: 10 * SECTOR + 100, length: 7 }, // a few bytes inside one sector
    { offset: 20 * SECTOR, length: SECTOR }, // this one and the next are adjacent sectors
    { offset: 21 * SECTOR + 3, length: 2 * SECTOR - 3 },
    { offset: 40 * SECTOR + 300, length: 2000 }, // unaligned at both ends, several sectors
    { offset: 2 * MIB + 3 * SECTOR, length: MIB + MIB / 2 }, // a large block
    { offset: diskSize - 100, length: 100 }, // last sector of the disk, next to the footer
  ];
  for (let i = 0; i < 24; i++) {
    const length = 1 + Math.floor(next() * 64 * 1024);
    blocks.push({ offset: Math.floor(next() * Math.max(1, diskSize - length)), length });
  }
  let extra = (options.dataMiB ?? 0) * MIB;
  while (extra > 0) {
    const length = Math.min(extra, 64 * 1024 + Math.floor(next() * 8 * MIB));
    blocks.push({ offset: Math.floor(next() * Math.max(1, diskSize - length)), length });
    extra -= length;
  }
  const inside = blocks
    .filter((b) => b.offset >= 0 && b.offset + b.length <= diskSize)
    .sort((a, b) => a.offset - b.offset);
  const footer = fixedVhdFooter(diskSize, { seed });
  if (options.corruptFooter) footer[70] = (footer[70] ?? 0) ^ 0xff;
  return {
    diskSize,
    blocks: inside,
    footer,
    extents: extentsOf([...inside, { offset: diskSize, length: FOOTER_SIZE }]),
    seed,
  };
}

/**
 * Fills `target` with the disk content at `position`.. : a seeded AES-CTR keystream, so any range can
 * be produced on its own, squeezed to 4 bits per byte (compresses about like a real disk) and never zero.
 */
function fillDiskBytes(
  seed: number,
  target: Buffer,
  targetOffset: number,
  position: number,
  length: number,
): void {
  const aligned = Math.floor(position / 16) * 16;
  const skip = position - aligned;
  const size = Math.ceil((skip + length) / 16) * 16;
  const key = createHash('sha256').update(`disk-bytes:${seed}`).digest().subarray(0, 16);
  const counter = Buffer.alloc(16);
  counter.writeBigUInt64BE(BigInt(aligned / 16), 8);
  const stream = createCipheriv('aes-128-ctr', key, counter).update(Buffer.alloc(size));
  const bytes = Buffer.alloc(size);
  stream.copy(bytes);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, size / 4);
  for (let i = 0; i < words.length; i++) words[i] = ((words[i] ?? 0) & 0x0f0f0f0f) | 0x40404040;
  bytes.copy(target, targetOffset, skip, skip + length);
}

/** The disk content from `start` to `start + target.length`. */
function fillDiskRange(layout: Layout, target: Buffer, start: number): void {
  target.fill(0);
  const end = start + target.length;
  for (const block of layout.blocks) {
    if (block.offset >= end) break;
    const from = Math.max(block.offset, start);
    const to = Math.min(block.offset + block.length, end);
    if (from < to) fillDiskBytes(layout.seed, target, from - start, from, to - from);
  }
}

function buildVhd(layout: Layout): Buffer {
  const vhd = Buffer.alloc(layout.diskSize + FOOTER_SIZE);
  fillDiskRange(layout, vhd.subarray(0, layout.diskSize), 0);
  layout.footer.copy(vhd, layout.diskSize);
  return vhd;
}

function* vhdChunks(layout: Layout): Generator<Buffer> {
  for (let start = 0; start < layout.diskSize; start += GENERATION_CHUNK) {
    const chunk = Buffer.alloc(Math.min(GENERATION_CHUNK, layout.diskSize - start));
    fillDiskRange(layout, chunk, start);
    yield chunk;
  }
  yield layout.footer;
}

function tarHeader(name: string, size: number, type: 'File' | LinkType = 'File', linkpath?: string): Buffer {
  const header = new Header({
    path: name,
    mode: type === 'File' ? 0o644 : 0o777,
    uid: 0,
    gid: 0,
    uname: 'root',
    gname: 'root',
    size: type === 'File' ? size : 0,
    mtime: MTIME,
    type,
    linkpath,
  });
  const block = Buffer.alloc(512);
  header.encode(block);
  return block;
}

function padding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

const END_OF_ARCHIVE = Buffer.alloc(1024);

/** An entry of a tar written in order: a small body in memory or a stream of known size. */
interface TarPart {
  name: string;
  type?: 'File' | LinkType;
  linkpath?: string;
  size: number;
  body: Buffer | (() => Iterable<Buffer> | AsyncIterable<Buffer>);
}

async function* tarStream(parts: TarPart[]): AsyncGenerator<Buffer> {
  for (const part of parts) {
    yield tarHeader(part.name, part.size, part.type, part.linkpath);
    if (part.type !== undefined && part.type !== 'File') continue;
    if (Buffer.isBuffer(part.body)) yield part.body;
    else yield* part.body();
    yield padding(part.size);
  }
  yield END_OF_ARCHIVE;
}

function extraParts(
  options: StemcellFixtureOptions,
  archive: 'stemcell' | 'image',
  first: boolean,
): TarPart[] {
  return (options.extraEntries ?? [])
    .filter((e) => (e.archive ?? 'stemcell') === archive && !!e.first === first)
    .map((e) => {
      const body = Buffer.from(e.body ?? '');
      const part: TarPart =
        e.zeroBytes === undefined
          ? { name: e.name, type: e.type ?? 'File', size: body.length, body }
          : { name: e.name, size: e.zeroBytes, body: () => zeroChunks(e.zeroBytes ?? 0) };
      if (e.linkpath !== undefined) part.linkpath = e.linkpath;
      return part;
    });
}

function* zeroChunks(size: number): Generator<Buffer> {
  const zeros = Buffer.alloc(GENERATION_CHUNK);
  for (let left = size; left > 0; left -= zeros.length) yield zeros.subarray(0, Math.min(left, zeros.length));
}

function withoutNulls(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== null && v !== undefined));
}

/**
 * stemcell.MF as the stemcell builder writes it; `disk` is the raw image size in MiB, which the builder
 * converts to the fixed root.vhd (that size plus the footer).
 */
function manifestText(
  series: string,
  version: string,
  imageSha1: string,
  layout: Layout,
  options: StemcellFixtureOptions,
): string {
  const operatingSystem = /ubuntu-[a-z]+/.exec(series)?.[0] ?? 'ubuntu-jammy';
  const cloudProperties = withoutNulls({
    name: series,
    version,
    infrastructure: 'azure',
    hypervisor: 'hyperv',
    disk: Math.ceil(layout.diskSize / MIB),
    disk_format: 'vhd',
    container_format: 'bare',
    os_type: 'linux',
    os_distro: 'ubuntu',
    architecture: 'x86_64',
    root_device_name: '/dev/sda1',
    generation: 'gen1',
    ...options.cloudProperties,
  });
  return stringify(
    withoutNulls({
      name: series,
      version,
      bosh_protocol: '1',
      api_version: 3,
      sha1: imageSha1,
      operating_system: operatingSystem,
      stemcell_formats: ['azure-vhd'],
      cloud_properties: cloudProperties,
      ...options.manifest,
    }),
  );
}

function sideFiles(series: string): Record<string, Buffer> {
  return {
    'packages.txt': Buffer.from('ii  adduser  3.118ubuntu5  all  add and remove users and groups\n'),
    'dev_tools_file_list.txt': Buffer.from('/usr/bin/gcc\n/usr/bin/make\n'),
    'sbom.spdx.json': Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', name: series })),
    'sbom.cdx.json': Buffer.from(JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5' })),
  };
}

function stemcellParts(
  options: StemcellFixtureOptions,
  manifest: string,
  image: { size: number; body: TarPart['body'] } | undefined,
  series: string,
): TarPart[] {
  const side = sideFiles(series);
  const file = (name: string): TarPart => {
    const body = side[name] ?? Buffer.alloc(0);
    return { name, size: body.length, body };
  };
  const manifestBody = Buffer.from(manifest);
  const parts: TarPart[] = [
    ...extraParts(options, 'stemcell', true),
    { name: 'stemcell.MF', size: manifestBody.length, body: manifestBody },
    file('packages.txt'),
    file('dev_tools_file_list.txt'),
  ];
  if (image && !options.omitImage) parts.push({ name: options.imageEntryName ?? 'image', ...image });
  parts.push(file('sbom.spdx.json'), file('sbom.cdx.json'), ...extraParts(options, 'stemcell', false));
  return parts;
}

function imageParts(options: StemcellFixtureOptions, vhdSize: number, vhd: TarPart['body']): TarPart[] {
  return [
    ...extraParts(options, 'image', true),
    ...(options.omitRootVhd ? [] : [{ name: 'root.vhd', size: vhdSize, body: vhd }]),
    ...extraParts(options, 'image', false),
  ];
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const all: Buffer[] = [];
  for await (const chunk of chunks) all.push(chunk);
  return Buffer.concat(all);
}

function sha(algorithm: 'sha1' | 'sha256', data: Buffer): string {
  return createHash(algorithm).update(data).digest('hex');
}

/** A complete stemcell tarball in memory (keep virtualSizeMiB small). */
export async function buildStemcellFixture(options: StemcellFixtureOptions = {}): Promise<StemcellFixture> {
  const series = options.series ?? DEFAULT_SERIES;
  const version = options.version ?? DEFAULT_VERSION;
  const layout = planLayout(options);
  const vhd = buildVhd(layout);
  const imageTar = await collect(tarStream(imageParts(options, vhd.length, vhd)));
  const image = gzipSync(imageTar, { level: 1 });
  const imageSha1 = sha('sha1', image);
  const text = manifestText(series, version, imageSha1, layout, options);
  const tar = await collect(
    tarStream(stemcellParts(options, text, { size: image.length, body: image }, series)),
  );
  const tarball = gzipSync(tar, { level: 1 });
  return {
    tarball,
    vhd,
    extents: layout.extents,
    sha1: sha('sha1', tarball),
    sha256: sha('sha256', tarball),
    imageSha1,
    imageSha256: sha('sha256', image),
    manifestText: text,
    series,
    version,
  };
}

/** Passes bytes through while hashing them and counting them. */
class Digest extends Transform {
  readonly sha1 = createHash('sha1');
  readonly sha256 = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.sha1.update(chunk);
    this.sha256.update(chunk);
    this.size += chunk.length;
    this.push(chunk);
    callback();
  }
}

const FAST_GZIP = { level: 1, chunkSize: MIB, memLevel: zlibConstants.Z_MAX_MEMLEVEL };

/**
 * Streams a stemcell tarball with a large virtual disk to `path` without holding the VHD in memory
 * (the gzip'd image goes through a temp file first, because its size must precede it in the tar).
 */
export async function writeLargeStemcellFixture(
  path: string,
  options: StemcellFixtureOptions & { virtualSizeMiB: number },
): Promise<Omit<StemcellFixture, 'tarball' | 'vhd'> & { size: number }> {
  const series = options.series ?? DEFAULT_SERIES;
  const version = options.version ?? DEFAULT_VERSION;
  const layout = planLayout(options);
  const vhdSize = layout.diskSize + FOOTER_SIZE;
  const temp = await mkdtemp(join(tmpdir(), 'stemcell-fixture-'));
  try {
    const imagePath = join(temp, 'image');
    const imageDigest = new Digest();
    await pipeline(
      Readable.from(tarStream(imageParts(options, vhdSize, () => vhdChunks(layout)))),
      createGzip(FAST_GZIP),
      imageDigest,
      createWriteStream(imagePath),
    );
    const imageSha1 = imageDigest.sha1.digest('hex');
    const text = manifestText(series, version, imageSha1, layout, options);
    const image = { size: imageDigest.size, body: () => createReadStream(imagePath, { highWaterMark: MIB }) };
    const tarballDigest = new Digest();
    await pipeline(
      Readable.from(tarStream(stemcellParts(options, text, image, series))),
      createGzip(FAST_GZIP),
      tarballDigest,
      createWriteStream(path),
    );
    return {
      extents: layout.extents,
      sha1: tarballDigest.sha1.digest('hex'),
      sha256: tarballDigest.sha256.digest('hex'),
      imageSha1,
      imageSha256: imageDigest.sha256.digest('hex'),
      manifestText: text,
      series,
      version,
      size: tarballDigest.size,
    };
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}
