import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { constants as zlibConstants, createGzip } from 'node:zlib';
import { Header } from 'tar';
import { after, before, test } from 'node:test';
import type { StemcellRelease } from '../../src/boshio.js';
import { DownloadError } from '../../src/download.js';
import {
  StemcellError,
  downloadAndExtractStemcell,
  extractStemcellFrom,
  findExtractedStemcell,
  removeStemcellWorkFiles,
  stemcellWorkPaths,
} from '../../src/stemcell.js';
import { readExtents } from '../../src/vhd.js';
import { THIS_HOST, partialFileSuffix } from '../../src/workdir.js';
import type { StemcellFixture, StemcellFixtureOptions } from '../support/stemcell-fixture.js';
import { buildStemcellFixture, writeLargeStemcellFixture } from '../support/stemcell-fixture.js';
import { ensureTestCertificate } from '../support/tls.js';

function tlsOptions(): { cert: string; key: string } {
  const { cert, key } = ensureTestCertificate();
  return { cert, key };
}

let root: string;
let fixture: StemcellFixture;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'stemcell-test-'));
  fixture = await buildStemcellFixture();
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let workDirs = 0;
async function workDir(): Promise<string> {
  return mkdtemp(join(root, `work-${++workDirs}-`));
}

function releaseOf(f: StemcellFixture, overrides: Partial<StemcellRelease> = {}): StemcellRelease {
  return {
    series: f.series,
    version: f.version,
    url: 'https://127.0.0.1/unused',
    size: f.tarball.length,
    sha256: f.sha256,
    ...overrides,
  };
}

/** Source stream in 64 KiB pieces, like a network would deliver it. */
function sourceOf(tarball: Buffer): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < tarball.length; at += 65536) parts.push(tarball.subarray(at, at + 65536));
  return Readable.from(parts);
}

/** Every file below `dir`, as sorted paths relative to it. */
async function pathsUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

async function filesIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => e.name);
}

/** Extracting must reject with a StemcellError matching `message` and leave no file behind. */
async function assertRefused(tarball: Buffer, release: StemcellRelease, message: RegExp): Promise<void> {
  const dir = await workDir();
  await assert.rejects(
    extractStemcellFrom(sourceOf(tarball), release, { workDir: dir }),
    (error: unknown) => {
      assert.ok(error instanceof StemcellError, `expected a StemcellError, got ${String(error)}`);
      assert.match(error.message, message);
      assert.match(error.message, new RegExp(`${release.series}/${release.version.replace('.', '\\.')}`));
      return true;
    },
  );
  assert.deepEqual(await filesIn(dir), []);
}

async function refusedFixture(options: StemcellFixtureOptions, message: RegExp): Promise<void> {
  const bad = await buildStemcellFixture(options);
  await assertRefused(bad.tarball, releaseOf(bad), message);
}

test('a stemcell is extracted with its digests, manifest and size', async () => {
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), {
    workDir: await workDir(),
  });
  assert.equal(result.series, fixture.series);
  assert.equal(result.version, fixture.version);
  assert.equal(result.tarballSha256, fixture.sha256);
  // bosh.io listed a SHA-256: the tarball's SHA-1 is not computed at all.
  assert.equal(result.tarballSha1, undefined);
  assert.equal(result.imageSha1, fixture.imageSha1);
  assert.equal(result.imageSha256, fixture.imageSha256);
  assert.equal(result.tarballBytes, fixture.tarball.length);
  assert.equal(result.vhdSize, fixture.vhd.length);
  assert.equal(result.manifest.sha1, fixture.imageSha1);
  assert.equal(result.manifest.cloudProperties.infrastructure, 'azure');
});

test('the extracted root.vhd equals the one in the image', async () => {
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), {
    workDir: await workDir(),
  });
  assert.ok((await readFile(result.vhdPath)).equals(fixture.vhd));
});

test('the extent map beside the VHD lists exactly its non-zero sectors', async () => {
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), {
    workDir: await workDir(),
  });
  assert.deepEqual(await readExtents(result.extentsPath), fixture.extents);
  assert.equal(
    result.dataBytes,
    fixture.extents.reduce((sum, e) => sum + e.length, 0),
  );
});

test('the work paths are the same for the same series and version', () => {
  const first = stemcellWorkPaths('/work', 'bosh-azure-hyperv-ubuntu-noble', '1.5');
  assert.deepEqual(first, stemcellWorkPaths('/work', 'bosh-azure-hyperv-ubuntu-noble', '1.5'));
  assert.notEqual(first.vhdPath, stemcellWorkPaths('/work', 'bosh-azure-hyperv-ubuntu-noble', '1.6').vhdPath);
});

test('fault: a series name that could leave the work directory is refused', () => {
  assert.throws(() => stemcellWorkPaths('/work', '../etc', '1.5'), StemcellError);
  assert.throws(() => stemcellWorkPaths('/work', 'ok', '1/../../x'), StemcellError);
});

test('a complete extraction is found again, and not after its files are removed', async () => {
  const dir = await workDir();
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  assert.deepEqual(
    await findExtractedStemcell(dir, fixture.series, fixture.version, { imageSha256: fixture.imageSha256 }),
    result,
  );
  await removeStemcellWorkFiles(dir, fixture.series, fixture.version);
  assert.equal(await findExtractedStemcell(dir, fixture.series, fixture.version), undefined);
  assert.deepEqual(await filesIn(dir), []);
});

test('fault: an extraction of another image is not reused', async () => {
  const dir = await workDir();
  await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  assert.equal(
    await findExtractedStemcell(dir, fixture.series, fixture.version, { imageSha256: '0'.repeat(64) }),
    undefined,
  );
});

test('an extraction of a tarball other than the one bosh.io lists now is not reused', async () => {
  const dir = await workDir();
  await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  const find = (listedTarball: { sha256?: string; sha1?: string }) =>
    findExtractedStemcell(dir, fixture.series, fixture.version, { listedTarball });
  assert.ok(await find({ sha256: fixture.sha256.toUpperCase() }));
  assert.ok(await find({ sha256: fixture.sha256, sha1: 'e'.repeat(40) }));
  // Verified by SHA-256, its SHA-1 was never computed: a listing with only a SHA-1 cannot vouch for it.
  assert.equal(await find({ sha1: fixture.sha1 }), undefined);
  assert.equal(await find({ sha256: 'e'.repeat(64) }), undefined);
  assert.equal(await find({ sha256: 'e'.repeat(64), sha1: fixture.sha1 }), undefined);
  assert.equal(await find({ sha1: 'e'.repeat(40) }), undefined);
  assert.equal(await find({}), undefined);
});

test('fault: an extraction whose VHD went missing is not reused', async () => {
  const dir = await workDir();
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  await rm(result.vhdPath);
  assert.equal(await findExtractedStemcell(dir, fixture.series, fixture.version), undefined);
});

test('the tarball SHA-1 is checked when bosh.io gives no SHA-256', async () => {
  const release = releaseOf(fixture, { sha256: undefined, sha1: 'f'.repeat(40) });
  delete release.sha256;
  await assertRefused(fixture.tarball, release, /tarball SHA-1 is [0-9a-f]{40}, expected f{40}/);
});

test('a tarball is verified by its SHA-1 when bosh.io lists only that, and found again by it', async () => {
  const dir = await workDir();
  const release = releaseOf(fixture, { sha1: fixture.sha1.toUpperCase() });
  delete release.sha256;
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), release, { workDir: dir });
  assert.equal(result.tarballSha1, fixture.sha1);
  assert.equal(result.tarballSha256, fixture.sha256);
  const find = (listedTarball: { sha256?: string; sha1?: string }) =>
    findExtractedStemcell(dir, fixture.series, fixture.version, { listedTarball });
  assert.ok(await find({ sha1: fixture.sha1 }));
  assert.ok(await find({ sha256: fixture.sha256 }));
  assert.equal(await find({ sha1: 'e'.repeat(40) }), undefined);
});

test('fault: a tarball whose SHA-256 differs from bosh.io is refused even when its SHA-1 matches', async () => {
  await assertRefused(
    fixture.tarball,
    releaseOf(fixture, { sha256: 'a'.repeat(64), sha1: fixture.sha1 }),
    new RegExp(`tarball SHA-256 is ${fixture.sha256}, expected a{64}`),
  );
});

test('fault: a tarball whose SHA-256 differs from bosh.io is refused', async () => {
  await assertRefused(
    fixture.tarball,
    releaseOf(fixture, { sha256: 'a'.repeat(64) }),
    new RegExp(`tarball SHA-256 is ${fixture.sha256}, expected a{64}`),
  );
});

test('fault: an image whose SHA-1 differs from stemcell.MF is refused', async () => {
  await refusedFixture(
    { manifest: { sha1: 'b'.repeat(40) } },
    /SHA-1 of image is [0-9a-f]{40}, expected b{40}/,
  );
});

for (const fraction of [0.001, 0.3, 0.7, 0.999]) {
  test(`fault: a tarball cut at ${fraction * 100}% of its length is refused`, async () => {
    const cut = fixture.tarball.subarray(0, Math.floor(fixture.tarball.length * fraction));
    await assertRefused(cut, releaseOf(fixture), /corrupt or truncated/);
  });
}

test('fault: a tarball without an image entry is refused', async () => {
  await refusedFixture({ omitImage: true }, /stemcell tarball has no `image` entry/);
});

test('an image entry under another name does not count as the image', async () => {
  await refusedFixture({ imageEntryName: 'image.tgz' }, /stemcell tarball has no `image` entry/);
});

test('fault: an image without root.vhd is refused', async () => {
  await refusedFixture({ omitRootVhd: true }, /image has no root\.vhd/);
});

/** Extracting `tarball` into a directory deep below a fresh one must fail and leave nothing anywhere below it. */
async function assertRefusedLeavingNothing(bad: StemcellFixture, message: RegExp): Promise<void> {
  // Deep enough that each `..` of the entry names would still land inside `top`, where it shows.
  const top = await workDir();
  const dir = join(top, 'a', 'b', 'c');
  await mkdir(dir, { recursive: true });
  await assert.rejects(
    extractStemcellFrom(sourceOf(bad.tarball), releaseOf(bad), { workDir: dir }),
    (error) => {
      assert.ok(error instanceof StemcellError, `expected a StemcellError, got ${String(error)}`);
      assert.match(error.message, message);
      return true;
    },
  );
  assert.deepEqual(await pathsUnder(top), []);
}

for (const [what, entry] of [
  [
    'root.vhd as a symlink',
    { name: 'root.vhd', type: 'SymbolicLink', linkpath: '/etc/passwd', archive: 'image' },
  ],
  ['root.vhd as a hard link', { name: 'root.vhd', type: 'Link', linkpath: 'etc/shadow', archive: 'image' }],
  ['image as a symlink', { name: 'image', type: 'SymbolicLink', linkpath: '/dev/zero', archive: 'stemcell' }],
  ['stemcell.MF as a hard link', { name: 'stemcell.MF', type: 'Link', linkpath: 'x', first: true }],
] as const) {
  test(`fault: a tarball with ${what} is refused, the link is never followed and nothing is written`, async () => {
    const linked = await buildStemcellFixture({ extraEntries: [{ ...entry, first: true }] });
    const name = entry.name.replace('.', '\\.');
    await assertRefusedLeavingNothing(
      linked,
      new RegExp(`has ${name} as a ${entry.type} entry to "${entry.linkpath}", expected a regular file`),
    );
  });
}

test('fault: an image whose only root.vhd is a symlink is refused: the link is not followed', async () => {
  await refusedFixture(
    {
      omitRootVhd: true,
      extraEntries: [{ name: 'root.vhd', type: 'SymbolicLink', linkpath: '/etc/passwd', archive: 'image' }],
    },
    /image has root\.vhd as a SymbolicLink entry to "\/etc\/passwd", expected a regular file/,
  );
});

for (const [name, archive] of [
  ['../../escaped.txt', 'stemcell'],
  ['../root.vhd', 'stemcell'],
  ['sbom/../../x.json', 'stemcell'],
  ['/etc/cron.d/evil', 'stemcell'],
  ['../root.vhd', 'image'],
  ['../../../escaped-image.txt', 'image'],
  ['/root.vhd', 'image'],
] as const) {
  test(`fault: an entry named ${name} in the ${archive === 'image' ? 'image' : 'tarball'} is refused and nothing is written anywhere`, async () => {
    const sneaky = await buildStemcellFixture({ extraEntries: [{ name, body: 'outside', archive }] });
    const where = archive === 'image' ? 'image' : 'tarball';
    const quoted = JSON.stringify(name).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    await assertRefusedLeavingNothing(
      sneaky,
      new RegExp(`${where} has an entry named ${quoted}: absolute names and '\\.\\.' are refused`),
    );
  });
}

test('fault: an image with two root.vhd entries is refused', async () => {
  await refusedFixture(
    { extraEntries: [{ name: 'root.vhd', body: 'a second disk', archive: 'image' }] },
    /the image holds root\.vhd twice/,
  );
});

test('the fixture is as the builder makes it: root.vhd is cloud_properties.disk MiB plus the footer', async () => {
  const result = await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), {
    workDir: await workDir(),
  });
  assert.equal(result.manifest.cloudProperties.disk, 16);
  assert.equal(result.vhdSize, 16 * 1024 * 1024 + 512);
});

test('fault: a root.vhd larger than cloud_properties.disk allows is refused before a byte is written', async () => {
  await refusedFixture(
    { virtualSizeMiB: 16, cloudProperties: { disk: 8 } },
    /root\.vhd is 16777728 bytes, larger than the 8389120 expected \(cloud_properties\.disk is 8 MiB, so root\.vhd is at most 8389120 bytes with its 512-byte footer\)/,
  );
});

for (const disk of [null, 0, 1.5, -16]) {
  test(`fault: a stemcell.MF whose cloud_properties.disk is ${String(disk)} is refused: nothing bounds root.vhd`, async () => {
    await refusedFixture(
      { cloudProperties: { disk } },
      new RegExp(
        `cloud_properties\\.disk ${disk === null ? 'null' : String(disk).replace('.', '\\.')}, expected a whole number of MiB`,
      ),
    );
  });
}

/** The inflated byte count in a "refused after N bytes" message, checked against its limit. */
function assertStoppedWithin(error: unknown, label: RegExp): void {
  assert.ok(error instanceof StemcellError, `expected a StemcellError, got ${String(error)}`);
  const match =
    /inflates to more than (\d+) bytes \(cloud_properties\.disk is \d+ MiB.*\): refused after (\d+) bytes/.exec(
      error.message,
    );
  assert.ok(match, error.message);
  assert.match(error.message, label);
  const [limit, read] = [Number(match[1]), Number(match[2])];
  // At most one more inflated chunk (1 MiB) than the limit was looked at.
  assert.ok(read > limit && read <= limit + 1024 * 1024, `read ${read} bytes for a limit of ${limit}`);
}

test('fault: an image that inflates beyond cloud_properties.disk is stopped after at most that many bytes', async () => {
  const bomb = await buildStemcellFixture({
    extraEntries: [{ name: 'filler.bin', zeroBytes: 48 * 1024 * 1024, archive: 'image', first: true }],
  });
  assert.ok(bomb.tarball.length < 4 * 1024 * 1024, 'a small archive');
  const dir = await workDir();
  await assert.rejects(
    extractStemcellFrom(sourceOf(bomb.tarball), releaseOf(bomb), { workDir: dir }),
    (error) => {
      assertStoppedWithin(error, /image inflates/);
      return true;
    },
  );
  assert.deepEqual(await filesIn(dir), []);
});

test('fault: a tarball that inflates beyond its image and side files is stopped after at most that many bytes', async () => {
  const path = join(await workDir(), 'bomb.tgz');
  const bomb = await writeLargeStemcellFixture(path, {
    virtualSizeMiB: 16,
    extraEntries: [{ name: 'filler.bin', zeroBytes: 200 * 1024 * 1024 }],
  });
  assert.ok(bomb.size < 2 * 1024 * 1024, 'a small archive');
  const dir = await workDir();
  const release = { ...releaseOf(fixture), sha256: bomb.sha256 };
  await assert.rejects(extractStemcellFrom(createReadStream(path), release, { workDir: dir }), (error) => {
    assertStoppedWithin(error, /tarball inflates/);
    return true;
  });
  assert.deepEqual(await filesIn(dir), []);
});

test('fault: a VHD whose virtual size is not whole MiB is refused', async () => {
  await refusedFixture(
    { vhdSizeBytes: 4 * 1024 * 1024 + 1024 },
    /virtual size is 4194816 bytes, expected a whole number of MiB/,
  );
});

test('fault: a VHD with a damaged footer is refused', async () => {
  await refusedFixture({ corruptFooter: true }, /footer checksum/);
});

test('fault: a stemcell.MF naming another series is refused', async () => {
  const other = await buildStemcellFixture({ manifest: { name: 'bosh-azure-hyperv-ubuntu-noble' } });
  await assertRefused(
    other.tarball,
    releaseOf(other),
    /describes bosh-azure-hyperv-ubuntu-noble\/1\.100, expected bosh-azure-hyperv-ubuntu-jammy-go_agent\/1\.100/,
  );
});

test('fault: a stemcell.MF naming another version is refused', async () => {
  const other = await buildStemcellFixture({ manifest: { version: '1.99' } });
  await assertRefused(other.tarball, releaseOf(other), /describes .*\/1\.99, expected .*\/1\.100/);
});

test('fault: a stemcell.MF with a missing field is refused, naming the field', async () => {
  await refusedFixture(
    { manifest: { operating_system: null } },
    /`operating_system` must be a non-empty string/,
  );
});

test('fault: a tarball whose first entry is not stemcell.MF is refused', async () => {
  await refusedFixture(
    { extraEntries: [{ name: 'README', body: 'hello', first: true }] },
    /first entry of the tarball is "README", expected stemcell\.MF/,
  );
});

test('a stemcell.MF larger than 1 MiB is refused', async () => {
  await refusedFixture(
    { manifest: { padding: 'x'.repeat(1024 * 1024) } },
    /stemcell\.MF is \d+ bytes, more than/,
  );
});

test(
  'fault: a stemcell.MF larger than 1 MiB is refused before it is read: only its tar header is delivered',
  { timeout: 30_000 },
  async () => {
    const dir = await workDir();
    const header = Buffer.alloc(512);
    new Header({
      path: 'stemcell.MF',
      type: 'File',
      mode: 0o644,
      size: 2 * 1024 * 1024,
      mtime: new Date(0),
    }).encode(header);
    // The gzip stream up to the end of the header and no further: the body is never delivered.
    const headerOnly = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const gzip = createGzip();
      gzip.on('data', (chunk: Buffer) => chunks.push(chunk));
      gzip.on('error', reject);
      gzip.write(header);
      gzip.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve(Buffer.concat(chunks)));
    });
    let delivered = 0;
    let sent = false;
    const source = new Readable({
      read() {
        if (sent) return; // stalls: a reader that waited for the body would never finish
        sent = true;
        delivered += headerOnly.length;
        this.push(headerOnly);
      },
    });

    await assert.rejects(
      extractStemcellFrom(source, releaseOf(fixture), { workDir: dir }),
      (error: unknown) => {
        assert.ok(error instanceof StemcellError, `expected a StemcellError, got ${String(error)}`);
        assert.match(error.message, /stemcell\.MF is 2097152 bytes, more than the 1048576 allowed/);
        return true;
      },
    );
    assert.equal(delivered, headerOnly.length);
    assert.deepEqual(await filesIn(dir), []);
  },
);

test('fault: bytes that are not gzip are refused as corrupt', async () => {
  await assertRefused(
    Buffer.from('this is not a stemcell'.repeat(100)),
    releaseOf(fixture),
    /corrupt or truncated/,
  );
});

test('an error of the source stream is passed on as it is', async () => {
  const dir = await workDir();
  const broken = new Error('connection reset by test');
  const source = new Readable({
    read() {
      this.push(fixture.tarball.subarray(0, 100_000));
      this.destroy(broken);
    },
  });
  await assert.rejects(
    extractStemcellFrom(source, releaseOf(fixture), { workDir: dir }),
    (error) => error === broken,
  );
  assert.deepEqual(await filesIn(dir), []);
});

test('fault: an aborted extraction stops and leaves no file', async () => {
  const dir = await workDir();
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(
    extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), {
      workDir: dir,
      signal: controller.signal,
    }),
    { name: 'AbortError' },
  );
  assert.deepEqual(await filesIn(dir), []);
});

test('a stemcell is downloaded over HTTP and extracted, reporting progress', async () => {
  const server = createServer(tlsOptions(), (_request, response) => {
    response.writeHead(200, { 'content-length': fixture.tarball.length });
    response.end(fixture.tarball);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const progress: number[] = [];
    const result = await downloadAndExtractStemcell(
      releaseOf(fixture, { url: `https://127.0.0.1:${port}/stemcell.tgz` }),
      { workDir: await workDir(), timeoutMs: 5000, onProgress: (p) => progress.push(p.bytes) },
    );
    assert.equal(result.tarballSha256, fixture.sha256);
    assert.equal(progress.at(-1), fixture.tarball.length);
  } finally {
    server.close();
  }
});

test('a stemcell streamed to disk by the large fixture writer extracts to the expected extents', async () => {
  const dir = await workDir();
  const path = join(dir, 'large.tgz');
  const large = await writeLargeStemcellFixture(path, { virtualSizeMiB: 24, dataMiB: 6, seed: 3 });
  const result = await extractStemcellFrom(createReadStream(path), releaseOf({ ...fixture, ...large }), {
    workDir: dir,
  });
  assert.equal(result.tarballBytes, large.size);
  assert.equal(result.imageSha256, large.imageSha256);
  assert.deepEqual(await readExtents(result.extentsPath), large.extents);
});

test('fault: a stemcell.MF whose cloud_properties.name differs from its name is refused', async () => {
  await refusedFixture(
    { cloudProperties: { name: 'bosh-azure-hyperv-ubuntu-noble' } },
    /cloud_properties\.name "bosh-azure-hyperv-ubuntu-noble", expected "bosh-azure-hyperv-ubuntu-jammy-go_agent"/,
  );
});

test('fault: a stemcell.MF whose cloud_properties.version differs from its version is refused', async () => {
  await refusedFixture(
    { cloudProperties: { version: '1.99' } },
    /cloud_properties\.version "1\.99", expected "1\.100"/,
  );
});

/** A pid that no process has (above Linux's pid_max). */
const DEAD_PID = 2_147_483_646;

test('fault: partial files of an interrupted earlier attempt are removed when a new extraction starts', async () => {
  const dir = await workDir();
  const paths = stemcellWorkPaths(dir, fixture.series, fixture.version);
  await mkdir(paths.dir, { recursive: true });
  const stale = [
    paths.vhdPath + partialFileSuffix({ host: THIS_HOST, pid: DEAD_PID }, '0badc0de'),
    paths.extentsPath + partialFileSuffix({ host: THIS_HOST, pid: DEAD_PID }, '0badc0de'),
    paths.vhdPath + partialFileSuffix({ host: THIS_HOST, pid: process.pid }, '0000beef'),
  ];
  for (const path of stale) await writeFile(path, 'left by a killed process');
  let seenAtStart: string[] | undefined;
  const source = new Readable({
    read() {
      // Looks at the directory once the extraction asks for its first bytes.
      readdir(paths.dir).then((names) => {
        seenAtStart = names;
        this.push(fixture.tarball);
        this.push(null);
      }, this.destroy.bind(this));
    },
  });
  await extractStemcellFrom(source, releaseOf(fixture), { workDir: dir });
  assert.deepEqual(seenAtStart, []);
  assert.deepEqual((await filesIn(dir)).sort(), ['root.vhd', 'root.vhd.extents.json', 'stemcell.json']);
});

test('stale partial files go while a complete extraction beside them is kept', async () => {
  const dir = await workDir();
  await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  const paths = stemcellWorkPaths(dir, fixture.series, fixture.version);
  await writeFile(
    paths.vhdPath + partialFileSuffix({ host: THIS_HOST, pid: DEAD_PID }, '0badc0de'),
    'left by a killed process',
  );
  await assert.rejects(
    extractStemcellFrom(sourceOf(Buffer.from('not a stemcell'.repeat(100))), releaseOf(fixture), {
      workDir: dir,
    }),
    StemcellError,
  );
  assert.deepEqual((await filesIn(dir)).sort(), ['root.vhd', 'root.vhd.extents.json', 'stemcell.json']);
  assert.ok(
    await findExtractedStemcell(dir, fixture.series, fixture.version, { imageSha256: fixture.imageSha256 }),
  );
});

test('a recent partial file of a live process is not touched', async () => {
  const dir = await workDir();
  const paths = stemcellWorkPaths(dir, fixture.series, fixture.version);
  await mkdir(paths.dir, { recursive: true });
  const running = paths.vhdPath + partialFileSuffix({ host: THIS_HOST, pid: process.ppid }, '0000cafe');
  await writeFile(running, 'being written by another extraction');
  await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  assert.equal(await readFile(running, 'utf8'), 'being written by another extraction');
});

const OTHER_HOST = `not-${THIS_HOST}`.slice(0, 64);

test("fault: another machine's partial file on a shared work directory is kept although its pid is free here", async () => {
  const dir = await workDir();
  const paths = stemcellWorkPaths(dir, fixture.series, fixture.version);
  await mkdir(paths.dir, { recursive: true });
  const elsewhere = [
    paths.vhdPath + partialFileSuffix({ host: OTHER_HOST, pid: DEAD_PID }, '0badc0de'),
    // Written before partial names carried the host: its machine is unknown.
    `${paths.vhdPath}.partial-${DEAD_PID}-00c0ffee`,
  ];
  const anHourAndMoreAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
  for (const path of elsewhere) {
    await writeFile(path, 'being written by another machine');
    await utimes(path, anHourAndMoreAgo, anHourAndMoreAgo);
  }
  await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  for (const path of elsewhere)
    assert.equal(await readFile(path, 'utf8'), 'being written by another machine');
});

test("another machine's partial file untouched for more than a day is removed", async () => {
  const dir = await workDir();
  const paths = stemcellWorkPaths(dir, fixture.series, fixture.version);
  await mkdir(paths.dir, { recursive: true });
  const abandoned = [
    paths.vhdPath + partialFileSuffix({ host: OTHER_HOST, pid: process.pid }, '0badc0de'),
    `${paths.vhdPath}.partial-${process.pid}-00c0ffee`,
  ];
  const twoDaysAgo = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);
  for (const path of abandoned) {
    await writeFile(path, 'left by a machine that went away');
    await utimes(path, twoDaysAgo, twoDaysAgo);
  }
  await extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir });
  assert.deepEqual((await filesIn(dir)).sort(), ['root.vhd', 'root.vhd.extents.json', 'stemcell.json']);
});

test('two extractions of the same version at once in one process both succeed', async () => {
  const dir = await workDir();
  const results = await Promise.all([
    extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir }),
    extractStemcellFrom(sourceOf(fixture.tarball), releaseOf(fixture), { workDir: dir }),
  ]);
  assert.deepEqual(
    results.map((r) => r.imageSha256),
    [fixture.imageSha256, fixture.imageSha256],
  );
});

/** Serves `handler` on a local port; returns the URL of `/stemcell.tgz` and a close function. */
async function serveStemcell(
  handler: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer(tlsOptions(), handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/stemcell.tgz`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

test('fault: a download that stalls reaches the caller as a transient DownloadError, not a StemcellError', async () => {
  const served = await serveStemcell((_request, response) => {
    response.writeHead(200, { 'content-length': fixture.tarball.length });
    response.write(fixture.tarball.subarray(0, 200_000)); // then nothing more: a stalled server
  });
  try {
    const dir = await workDir();
    await assert.rejects(
      downloadAndExtractStemcell(releaseOf(fixture, { url: served.url }), { workDir: dir, timeoutMs: 100 }),
      (error: unknown) => {
        assert.ok(error instanceof DownloadError, `expected a DownloadError, got ${String(error)}`);
        assert.equal(error.transient, true);
        assert.match(error.message, /no data for 100 ms/);
        return true;
      },
    );
    assert.deepEqual(await filesIn(dir), []);
  } finally {
    await served.close();
  }
});

test('fault: a download answered 503 reaches the caller as a transient DownloadError', async () => {
  const served = await serveStemcell((_request, response) => response.writeHead(503).end());
  try {
    await assert.rejects(
      downloadAndExtractStemcell(releaseOf(fixture, { url: served.url }), {
        workDir: await workDir(),
        timeoutMs: 5000,
      }),
      (error: unknown) => error instanceof DownloadError && error.transient && error.status === 503,
    );
  } finally {
    await served.close();
  }
});
