import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { test } from 'node:test';
import { Coalesce } from '../../src/stemcell-pipeline.js';

/** The pieces as pushed (an async iterator would join whatever is buffered). */
async function piecesOf(chunks: Buffer[], size: number): Promise<Buffer[]> {
  const pieces: Buffer[] = [];
  const coalesce = Readable.from(chunks).pipe(new Coalesce(size));
  coalesce.on('data', (piece: Buffer) => pieces.push(piece));
  await finished(coalesce);
  return pieces;
}

test('small chunks are joined into pieces of the given size, the bytes unchanged and in order', async () => {
  const data = randomBytes(10_000);
  const chunks: Buffer[] = [];
  for (let at = 0, n = 1; at < data.length; at += n, n = (n * 7) % 997)
    chunks.push(data.subarray(at, at + n));
  const pieces = await piecesOf(chunks, 1024);
  assert.ok(Buffer.concat(pieces).equals(data));
  assert.deepEqual(
    pieces.map((piece) => piece.length),
    [...Array<number>(9).fill(1024), 10_000 - 9 * 1024],
  );
});

test('a chunk at least a piece long passes through uncopied when nothing waits before it', async () => {
  const large = randomBytes(4096);
  const pieces = await piecesOf([large, Buffer.from('ab'), Buffer.from('cd')], 1024);
  assert.equal(pieces[0], large);
  assert.deepEqual(pieces.slice(1), [Buffer.from('abcd')]);
});

test('an empty stream gives no piece', async () => {
  assert.deepEqual(await piecesOf([], 1024), []);
});

test('what waits is passed on when the source goes quiet: a stalled download is never held back', async () => {
  const source = new PassThrough();
  const coalesce = source.pipe(new Coalesce(1024, 10));
  const first = new Promise<Buffer>((resolve) => coalesce.once('data', resolve));
  source.write(Buffer.from('header'));
  // The source neither ends nor sends more: the bytes still arrive.
  assert.deepEqual(await first, Buffer.from('header'));
  coalesce.destroy();
});
