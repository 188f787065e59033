import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { HEADER_SIZE, frameSize } from '../spec/frame.ts';
import { SegmentLog } from '../server/storage/segment-log.ts';
import { append, crashImage, dataFrame, fill, openLog, payload, readAll, segmentFiles, tmpDir } from './helpers/storage.ts';

const BODIES = [payload(1, 40), payload(2, 0), payload(3, 100)];
const LAST = payload(4, 60);

/**
 * A log with three synced, checkpointed frames of term 1 and, after them, a fourth frame of
 * term 2 written but never synced. Returns the directory image and the offsets.
 */
async function crashedLog(t: import('ava').ExecutionContext) {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  const offsets: number[] = [];
  for (const b of BODIES) offsets.push(await append(log, 1, b));
  await log.sync();
  await log.checkpointNow();
  const last = await append(log, 2, LAST);
  const image = await crashImage(t, dir);
  await log.close();
  const seg = path.join(image, segmentFiles(image)[0]);
  return { image, seg, offsets, last, prefix: Buffer.concat(BODIES.map((b) => dataFrame(1, b))) };
}

async function expectPrefix(t: import('ava').ExecutionContext, log: SegmentLog, prefix: Buffer, last: number) {
  t.is(log.end, last);
  t.deepEqual(log.epochs, [{ term: 1, offset: 0 }]);
  t.true((await readAll(log, 0, log.end)).equals(prefix));
  t.is(fs.statSync(path.join(log.dir, segmentFiles(log.dir)[0])).size, last, 'the file was cut at the end');
}

test('the unsynced last frame survives a crash intact, with its epoch', async (t) => {
  const { image, last } = await crashedLog(t);
  const log = await openLog(t, image);
  t.is(log.end, last + frameSize(LAST.length));
  t.deepEqual(log.epochs, [{ term: 1, offset: 0 }, { term: 2, offset: last }]);
  t.true(log.recovery.fromCheckpoint);
  t.false(log.recovery.torn);
  t.deepEqual(log.recoveredTail.map((e) => [e.offset, e.term]), [[log.recoveredTail[0].offset, 1], [last, 2]]);
});

test('the last frame cut at every byte: the log keeps exactly the earlier frames', async (t) => {
  const { image, seg, last, prefix } = await crashedLog(t);
  const full = fs.readFileSync(seg);
  for (let cut = last; cut < full.length; cut++) {
    const dir = await crashImage(t, image);
    fs.truncateSync(path.join(dir, path.basename(seg)), cut);
    const log = await SegmentLog.open(dir);
    await expectPrefix(t, log, prefix, last);
    t.true(log.recovery.fromCheckpoint, 'started at the checkpoint');
    t.is(log.recovery.torn, cut > last, `cut at ${cut}`);
    t.is(log.recovery.truncatedBytes, cut - last);
    t.is(log.recoveredTail[log.recoveredTail.length - 1].offset, 0 + frameSize(BODIES[0].length) + frameSize(0));
    await log.close();
  }
});

test('any byte of the last frame corrupted: the log keeps exactly the earlier frames', async (t) => {
  const { image, seg, last, prefix } = await crashedLog(t);
  const full = fs.readFileSync(seg);
  for (let at = last; at < full.length; at++) {
    const dir = await crashImage(t, image);
    const bad = Buffer.from(full);
    bad[at] ^= 0x40;
    fs.writeFileSync(path.join(dir, path.basename(seg)), bad);
    const log = await SegmentLog.open(dir);
    await expectPrefix(t, log, prefix, last);
    t.true(log.recovery.torn, `byte ${at}`);
    t.is(log.recovery.truncatedBytes, full.length - last);
    await log.close();
  }
});

test('damage to the last checkpointed frame is caught too (checkpoint distrusted)', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  const offsets = [];
  for (const b of BODIES) offsets.push(await append(log, 1, b));
  await log.close();
  const file = path.join(dir, segmentFiles(dir)[0]);
  const full = fs.readFileSync(file);
  for (const at of [offsets[2], offsets[2] + HEADER_SIZE + 5, full.length - 1]) {
    const copy = await crashImage(t, dir);
    const bad = Buffer.from(full);
    bad[at] ^= 1;
    fs.writeFileSync(path.join(copy, path.basename(file)), bad);
    const again = await SegmentLog.open(copy);
    t.is(again.end, offsets[2]);
    t.false(again.recovery.fromCheckpoint);
    t.true(again.recovery.torn);
    await again.close();
  }
});

test('an all-zero tail is a clean end, and is cut off', async (t) => {
  const { image, seg, last, prefix } = await crashedLog(t);
  const full = fs.readFileSync(seg);
  // The last frame's bytes never reached the disk, but the file was extended (zeros).
  fs.writeFileSync(seg, Buffer.concat([full.subarray(0, last), Buffer.alloc(4096)]));
  const log = await openLog(t, image);
  await expectPrefix(t, log, prefix, last);
  t.false(log.recovery.torn);
  t.is(log.recovery.stop, 'zero');
  t.is(log.recovery.truncatedBytes, 4096);
});

test('a reopened log appends after the recovered end and recovers again', async (t) => {
  const { image, seg, last, prefix } = await crashedLog(t);
  fs.truncateSync(seg, last + 10);
  const log = await openLog(t, image);
  const body = payload(9, 33);
  t.is(await append(log, 3, body), last);
  await log.close();
  const again = await openLog(t, image);
  t.is(again.end, last + frameSize(33));
  t.deepEqual(again.epochs, [{ term: 1, offset: 0 }, { term: 3, offset: last }]);
  t.true((await readAll(again, 0, again.end)).equals(Buffer.concat([prefix, dataFrame(3, body)])));
});

test('a torn frame in a sealed segment ends the log there; later segments are deleted', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 200 });
  const first = await fill(log, 2, 50); // 83-byte frames: two per segment
  await log.checkpointNow();
  const later = [];
  for (let i = 0; i < 4; i++) later.push(await append(log, 1, payload(i, 50)));
  const image = await crashImage(t, dir);
  await log.close();
  t.deepEqual(segmentFiles(image), ['0000000000000000.seg', '00000000000000a6.seg', '000000000000014c.seg']);
  // The second frame of the middle segment never completed (its trailer is missing).
  const mid = path.join(image, '00000000000000a6.seg');
  const bytes = fs.readFileSync(mid);
  bytes[bytes.length - 1] = 0;
  fs.writeFileSync(mid, bytes);
  const again = await openLog(t, image, { segmentBytes: 200 });
  t.is(again.end, later[1]);
  t.true(again.recovery.torn);
  t.is(again.recovery.deletedSegments, 1);
  t.is(again.recovery.truncatedBytes, 83 + 2 * 83);
  t.deepEqual(segmentFiles(image), ['0000000000000000.seg', '00000000000000a6.seg']);
  t.is(first[0], 0);
  t.is((await readAll(again, 0, again.end)).length, 3 * 83);
  // Appending continues in the cut segment.
  t.is(await append(again, 1, payload(7, 50)), later[1]);
  t.is(again.segmentCount, 2);
});

test('recovery reads only the tail: bytes scanned stay below one segment', async (t) => {
  const dir = await tmpDir(t);
  const segmentBytes = 4096;
  const log = await openLog(t, dir, { segmentBytes });
  for (let batch = 0; batch < 40; batch++) await fill(log, 40, 100 + batch);
  t.true(log.segmentCount > 50, `${log.segmentCount} segments`);
  const end = log.end;
  // A crash while busy: whatever the last checkpoint was.
  await log.checkpointNow();
  await append(log, 1, payload(1, 300));
  const image = await crashImage(t, dir);
  await log.close();

  const clean = await openLog(t, dir, { segmentBytes });
  t.true(clean.recovery.fromCheckpoint);
  t.true(clean.recovery.bytesScanned <= segmentBytes, `${clean.recovery.bytesScanned} bytes`);
  t.is(clean.end, end + frameSize(300));

  const crashed = await openLog(t, image, { segmentBytes });
  t.true(crashed.recovery.fromCheckpoint);
  t.true(crashed.recovery.bytesScanned <= segmentBytes, `${crashed.recovery.bytesScanned} bytes`);
  t.is(crashed.end, end + frameSize(300));
});

test('without any checkpoint recovery scans the whole log', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 1000 });
  await fill(log, 100, 100);
  await log.close();
  for (const damage of [() => fs.writeFileSync(path.join(dir, 'checkpoint'), 'garbage'), () => fs.unlinkSync(path.join(dir, 'checkpoint'))]) {
    damage();
    const again = await SegmentLog.open(dir, { segmentBytes: 1000 });
    t.false(again.recovery.fromCheckpoint);
    t.is(again.recovery.segmentsScanned, segmentFiles(dir).length);
    t.is(again.end, 100 * frameSize(100));
    await again.close();
  }
});

test('a frame never written several segments back is found when the checkpoint index is lost', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 200 });
  const len = 50; // 83-byte frames, two per segment
  const offsets: number[] = [];
  for (let i = 0; i < 10; i++) { offsets.push(log.end); log.place(log.end, len, 1); }
  // One body never arrives (a stalled client) while the later ones fill three more segments.
  const hole = 3;
  await Promise.all(offsets.map((o, i) => (i === hole ? null : log.writeAt(o, dataFrame(1, payload(i, len))))));
  await log.sync();
  t.is(log.durable, offsets[hole]);
  await log.checkpointNow();
  const image = await crashImage(t, dir);
  t.is(segmentFiles(image).length, 5);
  // The power cut took the checkpoint's unsynced index entries.
  fs.writeFileSync(path.join(image, '00000000000000a6.idx'), Buffer.alloc(0));
  const again = await openLog(t, image, { segmentBytes: 200 });
  t.false(again.recovery.fromCheckpoint);
  t.is(again.recovery.scanFrom, 166, 'scanned from the checkpoint\'s segment, not the whole log');
  t.is(again.end, offsets[hole], 'nothing from the hole on was ever durable');
});

test('a lost index tail makes recovery fall back, not lose data', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 1 << 20 });
  await fill(log, 50, 10);
  await log.close();
  // The checkpoint survived a power cut, the unsynced index append did not.
  fs.writeFileSync(path.join(dir, '0000000000000000.idx'), Buffer.alloc(0));
  const again = await openLog(t, dir, { segmentBytes: 1 << 20 });
  t.false(again.recovery.fromCheckpoint);
  t.is(again.end, 50 * frameSize(10));
  t.true(again.isFrameStart(49 * frameSize(10)));
});

test('a torn epoch record is dropped; a lost epochs file is rebuilt by a full scan', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 500 });
  await fill(log, 10, 50, 1);
  await fill(log, 10, 50, 4);
  const epochs = log.epochs.map((e) => ({ ...e }));
  await log.close();
  fs.appendFileSync(path.join(dir, 'epochs'), Buffer.from([1, 2, 3]));
  const torn = await SegmentLog.open(dir, { segmentBytes: 500 });
  t.deepEqual(torn.epochs, epochs);
  await torn.close();
  t.is(fs.statSync(path.join(dir, 'epochs')).size, 40, 'rewritten without the torn record');
  fs.unlinkSync(path.join(dir, 'epochs'));
  const lost = await SegmentLog.open(dir, { segmentBytes: 500 });
  t.deepEqual(lost.epochs, epochs);
  t.is(lost.recovery.scanFrom, 0);
  await lost.close();
});

test('planted bug noTornTailTruncation keeps the torn frame', async (t) => {
  const { image, seg, last } = await crashedLog(t);
  const full = fs.readFileSync(seg);
  full[full.length - 1] = 0;
  fs.writeFileSync(seg, full);
  const log = await openLog(t, image, { bugs: { noTornTailTruncation: true } });
  t.is(log.end, full.length, 'the garbage frame is kept');
  t.is(log.recoveredTail[log.recoveredTail.length - 1].offset, last);
});

test('an empty directory is an empty log; a fresh log survives reopening before any write', async (t) => {
  const dir = path.join(await tmpDir(t), 'nested', 'data');
  const log = await openLog(t, dir);
  t.deepEqual([log.start, log.end, log.segmentCount, log.recoveredTail.length], [0, 0, 0, 0]);
  await log.close();
  const again = await openLog(t, dir);
  t.deepEqual([again.start, again.end], [0, 0]);
  t.is(await append(again, 5, payload(0, 1)), 0);
});

test('a checkpoint waits for beforeCheckpoint and is not written when it fails; checkpointAtOpen: false leaves the old one', async (t) => {
  const dir = await tmpDir(t);
  let fail = true;
  const calls: number[] = [];
  const log = await openLog(t, dir, { beforeCheckpoint: async () => { calls.push(log.status().durable); if (fail) throw new Error('fates file unusable'); } });
  const first = await append(log, 1, payload(1, 40));
  await log.sync();
  await t.throwsAsync(log.checkpointNow(), { message: 'fates file unusable' });
  t.true((log.status().checkpoint ?? 0) <= first, 'no checkpoint past frames whose fates may not be durable');
  fail = false;
  await log.checkpointNow();
  t.is(log.status().checkpoint, first + frameSize(40));
  t.true(calls.length >= 2);
  const second = await append(log, 1, payload(2, 10));
  await log.sync();
  fail = true; // no background checkpoint past the first frame either
  const image = await crashImage(t, dir);
  const reopened = await openLog(t, image, { checkpointAtOpen: false });
  t.is(reopened.status().checkpoint, second, 'opening moved nothing');
  t.true(reopened.recoveredTail.some((m) => m.offset === second), 'the frame after the checkpoint was scanned');
  const image2 = await crashImage(t, dir);
  const moved = await openLog(t, image2);
  t.is(moved.status().checkpoint, second + frameSize(10), 'by default, opening checkpoints at the end');
});

test('segment files removed by hand are refused, not papered over: none left at all, or a hole below the checkpoint', async (t) => {
  const build = async () => {
    const dir = await tmpDir(t);
    const log = await openLog(t, dir, { segmentBytes: 4096 });
    for (let i = 0; i < 12; i++) await append(log, 1, payload(i, 1000));
    await log.sync();
    await log.checkpointNow();
    await log.close();
    return dir;
  };
  const dir = await build();
  const segs = segmentFiles(dir);
  t.true(segs.length >= 3, segs.join());
  fs.unlinkSync(path.join(dir, segs[1]));
  const hole = await t.throwsAsync(SegmentLog.open(dir, {}));
  t.regex(hole?.message ?? '', /bytes \d+\.\.\d+ are missing .* below the checkpoint/);
  t.regex(hole?.message ?? '', /restore the missing \.seg files/);
  t.is(segmentFiles(dir).length, segs.length - 1, 'nothing deleted');

  const dir2 = await build();
  for (const f of segmentFiles(dir2)) fs.unlinkSync(path.join(dir2, f));
  const none = await t.throwsAsync(SegmentLog.open(dir2, {}));
  t.regex(none?.message ?? '', /has no segment files, but its checkpoint and epochs files say the log reached offset \d+/);
});
