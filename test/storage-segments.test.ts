import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { LogError } from '../spec/errors.ts';
import { crc32c, frameSize, parseFrames } from '../spec/frame.ts';
import { append, dataFrame, fill, openLog, payload, readAll, segmentFiles, tmpDir } from './helpers/storage.ts';
import { writevAllSync } from '../server/storage/fs-util.ts';

test('segments roll when a frame does not fit; frames never straddle; files are named by base', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 1000 });
  const sizes = [100, 500, 300, 10, 700, 0, 999 - 33, 50];
  const offsets: number[] = [];
  for (const [i, n] of sizes.entries()) offsets.push(await append(log, 1, payload(i, n)));
  await log.sync();
  // Expected bases: a new segment whenever the frame would cross 1000 bytes.
  const bases: number[] = [];
  let base = -1;
  for (const [i, n] of sizes.entries()) {
    if (base < 0 || offsets[i] - base + frameSize(n) > 1000) bases.push((base = offsets[i]));
  }
  t.deepEqual(segmentFiles(dir), bases.map((b) => `${b.toString(16).padStart(16, '0')}.seg`));
  t.is(log.segmentCount, bases.length);
  t.is(log.bytes, log.end);
  // Each segment holds whole frames only.
  for (const [i, b] of bases.entries()) {
    const file = fs.readFileSync(path.join(dir, segmentFiles(dir)[i]));
    const frames = [...parseFrames(file, b)];
    t.is(frames[0].offset, b);
    t.is(b + file.length, bases[i + 1] ?? log.end);
  }
});

test('a frame bigger than a segment gets a segment of its own', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 100 });
  await append(log, 1, payload(0, 10));
  const big = await append(log, 1, payload(1, 500));
  const after = await append(log, 1, payload(2, 10));
  await log.sync();
  t.deepEqual(segmentFiles(dir).map((f) => Number.parseInt(f, 16)), [0, big, after]);
  const r = await log.read(big, 10, log.end);
  t.is(r.next, after, 'at least one frame, even beyond maxBytes');
  t.true(r.data.equals(dataFrame(1, payload(1, 500))));
});

test('reads return whole frames within one segment and never past the limit', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  const offsets = await fill(log, 20, 67); // 100-byte frames, four per segment
  const all = await readAll(log, 0, log.end, 250);
  t.is(all.length, log.end);
  t.deepEqual([...parseFrames(all, 0)].map((f) => f.offset), offsets);

  let r = await log.read(0, 250, log.end);
  t.deepEqual([r.data.length, r.next], [200, 200], 'as many whole frames as fit in maxBytes');
  r = await log.read(300, 10_000, log.end);
  t.is(r.next, 400, 'stops at the segment end');
  r = await log.read(100, 10_000, 300);
  t.is(r.next, 300, 'stops at the limit');
  r = await log.read(300, 0, log.end);
  t.is(r.next, 400, 'one frame even with maxBytes 0');
  r = await log.read(500, 1000, 500);
  t.deepEqual([r.data.length, r.next], [0, 500], 'empty at the limit');
  r = await log.read(500, 1000, 550);
  t.deepEqual([r.data.length, r.next], [0, 500], 'a frame that ends past the limit is not served');
});

test('read errors: out of range, not a frame start', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 8, 67);
  const oor = await t.throwsAsync(log.read(700, 100, 600));
  t.like(oor, { code: 'out_of_range', details: { start: 0, end: 600 } });
  const bad = await t.throwsAsync(log.read(150, 100, 600));
  t.like(bad, { code: 'bad_offset', details: { start: 0, end: 600 } });
  t.false(log.isFrameStart(150));
  t.true(log.isFrameStart(100));
  t.true(log.isFrameStart(log.end));
  t.false(log.isFrameStart(log.end + 1));
});

test('sealed indexes load lazily after reopening; a missing or damaged .idx is rebuilt', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  const offsets = await fill(log, 40, 67);
  const before = await readAll(log, 0, log.end);
  await log.close();
  const idx = fs.readdirSync(dir).filter((f) => f.endsWith('.idx')).sort();
  t.is(idx.length, 10, 'every segment has an index file');
  fs.unlinkSync(path.join(dir, idx[1]));
  fs.writeFileSync(path.join(dir, idx[2]), Buffer.alloc(20, 7));
  fs.truncateSync(path.join(dir, idx[3]), 8);
  // An intact-looking index that does not fit its segment (left over from an older one).
  fs.copyFileSync(path.join(dir, idx[5]), path.join(dir, idx[4]));

  const again = await openLog(t, dir, { segmentBytes: 400 });
  t.true(again.recovery.bytesScanned <= 400);
  t.is(again.status().cachedIndexes, 0, 'no sealed index is read at start-up');
  await again.read(800, 100, again.end);
  t.is(again.status().cachedIndexes, 1, 'a read loads its segment\'s index');
  t.true((await readAll(again, 0, again.end)).equals(before));
  t.is(again.status().cachedIndexes, 8, 'the cache is bounded');
  for (const o of offsets) t.true(again.isFrameStart(o));
  t.false(again.isFrameStart(450));
  await again.close();
  // The rebuilt indexes were written back.
  for (const f of idx.slice(1, 5)) t.is(fs.statSync(path.join(dir, f)).size, 4 * 4 + 16, f);
});

test('bit rot inside a sealed segment is reported by reads, not served', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 12, 67);
  await log.close();
  const seg = path.join(dir, segmentFiles(dir)[0]);
  const bytes = fs.readFileSync(seg);
  bytes[250] ^= 1; // inside the third frame's payload
  fs.writeFileSync(seg, bytes);
  fs.unlinkSync(path.join(dir, '0000000000000000.idx'));
  const again = await openLog(t, dir, { segmentBytes: 400 });
  const told: string[] = [];
  again.onDamaged = (m) => told.push(m);
  const r = await again.read(0, 10_000, again.end);
  t.is(r.next, 200, 'the frames before the damage');
  const e = await t.throwsAsync(again.read(200, 100, again.end), { code: 'damaged', message: /damaged from offset 200.*another replica/ });
  t.like((e as LogError | undefined)?.details, { offset: 200, damagedAt: 200 });
  t.is(told.length, 1, 'the damage is told once');
  t.regex(told[0], /segment 0000000000000000 is damaged from offset 200/);
  t.is((await again.read(400, 100, again.end)).next, 500, 'other segments are fine');
});

test('catch-up frames from a peer are validated, placed and written', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 300 });
  await fill(log, 1, 10);
  const frames = Buffer.concat([1, 2, 3, 4, 5].map((i) => dataFrame(i < 3 ? 1 : 2, payload(i, 67))));
  await log.appendFrames(log.end, frames);
  await log.sync();
  t.is(log.end, frameSize(10) + frames.length);
  t.deepEqual(log.epochs, [{ term: 1, offset: 0 }, { term: 2, offset: frameSize(10) + 200 }]);
  t.true((await readAll(log, frameSize(10), log.end)).equals(frames));
  const bad = Buffer.from(dataFrame(2, payload(9, 5)));
  bad[33] ^= 1;
  await t.throwsAsync(log.appendFrames(log.end, bad), { code: 'bad_request' });
  t.is(log.end, frameSize(10) + frames.length, 'nothing placed');
  t.is(crc32c(frames), crc32c(await readAll(log, frameSize(10), log.end)));
});

test('place checks its offset and term order; writes stay inside placed frames', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await append(log, 3, payload(0, 10));
  t.throws(() => log.place(0, 10, 3), { code: 'internal' });
  t.throws(() => log.place(log.end, 10, 2), { code: 'internal', message: /below the log's last term/ });
  await t.throwsAsync(log.writeAt(log.end, Buffer.alloc(1)), { code: 'internal' });
  // Pieces of one frame may be written out of order, e.g. the header last.
  const body = payload(1, 100);
  const frame = dataFrame(3, body);
  const at = log.end;
  log.place(at, body.length, 3);
  await Promise.all([
    log.writeAt(at + 32, [frame.subarray(32, 80), frame.subarray(80)]),
    log.writeAt(at, frame.subarray(0, 32)),
  ]);
  await log.sync();
  t.true((await log.read(at, 1000, log.end)).data.equals(frame));
  t.is(log.durable, log.end);
});

test('writevAllSync writes buffers back to back at a position, skipping empty ones', async (t) => {
  const dir = await tmpDir(t);
  const file = path.join(dir, 'w.bin');
  const fd = fs.openSync(file, 'w+');
  try {
    fs.writeSync(fd, Buffer.alloc(10, 0x2e), 0, 10, 0);
    writevAllSync(fd, [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde')], 3);
    writevAllSync(fd, [Buffer.from('Z')], 12);
    writevAllSync(fd, [], 0);
    writevAllSync(fd, [Buffer.alloc(0)], 0);
  } finally {
    fs.closeSync(fd);
  }
  t.is(fs.readFileSync(file).toString('latin1'), '...abcde..\0\0Z');
});

test('small frames (written inline) and large ones (threadpool) read back identically', async (t) => {
  const log = await openLog(t, await tmpDir(t));
  const sizes = [1, 100, 16 * 1024 - 40, 16 * 1024, 64 * 1024, 3];
  const offsets: number[] = [];
  for (const n of sizes) offsets.push(await append(log, 1, payload(n, n)));
  await log.sync();
  const frames = [...parseFrames(await readAll(log, log.start, log.end), log.start)];
  t.deepEqual(frames.map((f) => f.offset), offsets);
  t.deepEqual(frames.map((f) => crc32c(f.payload)), sizes.map((n) => crc32c(payload(n, n))));
});

test.serial('close waits for a sync in flight and throws its failure, so nobody reports a clean stop', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await append(log, 1, payload(0, 100));
  const real = fs.fdatasync;
  // The disk fails the next fdatasync, a little later.
  fs.fdatasync = ((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    setTimeout(() => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })), 50);
  }) as typeof fs.fdatasync;
  t.teardown(() => { fs.fdatasync = real; });
  const syncing = log.sync().then(() => 'synced', (e: Error) => e.message);
  await t.throwsAsync(log.close(), { message: /EIO/ });
  t.regex(await syncing, /EIO/);
});

test('reading many sealed segments with no sync in between keeps only a few of them open', async (t) => {
  const dir = await tmpDir(t);
  const w = await openLog(t, dir, { segmentBytes: 400 });
  await fill(w, 400, 67); // 100 segments
  await w.close();
  const log = await openLog(t, dir, { segmentBytes: 400 });
  const openFds = () => fs.readdirSync('/proc/self/fd').length;
  const before = openFds();
  await readAll(log, 0, log.end);
  const more = openFds() - before;
  t.true(more <= 16 + 2, `${more} more fds open after reading ${log.segmentCount} segments`);
});
