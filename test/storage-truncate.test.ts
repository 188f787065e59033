import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { frameSize } from '../spec/frame.ts';
import { append, crashImage, dataFrame, fill, openLog, payload, readAll, segmentFiles, tmpDir } from './helpers/storage.ts';

test('truncate drops the suffix; appending continues at the cut; reopening keeps it', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  const offsets = await fill(log, 5, 67, 1);
  await fill(log, 3, 67, 2);
  t.is(log.epochs.length, 2);
  await log.truncate(offsets[3]);
  t.is(log.end, offsets[3]);
  t.deepEqual(log.epochs, [{ term: 1, offset: 0 }], 'the epoch of the dropped suffix is gone');
  t.is(fs.statSync(path.join(dir, segmentFiles(dir)[0])).size, offsets[3]);
  const body = payload(42, 10);
  t.is(await append(log, 3, body), offsets[3]);
  await log.sync();
  const expected = Buffer.concat([await readAll(log, 0, offsets[3]), dataFrame(3, body)]);
  await log.close();
  const again = await openLog(t, dir);
  t.is(again.end, offsets[3] + frameSize(10));
  t.deepEqual(again.epochs, [{ term: 1, offset: 0 }, { term: 3, offset: offsets[3] }]);
  t.true((await readAll(again, 0, again.end)).equals(expected));
});

test('truncate into an earlier segment deletes the later ones and makes it active', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 20, 67); // five full segments
  await log.close();
  const again = await openLog(t, dir, { segmentBytes: 400 });
  await again.truncate(1000); // mid-segment [800,1200), its index loaded on demand
  t.deepEqual(segmentFiles(dir).map((f) => Number.parseInt(f, 16)), [0, 400, 800]);
  t.is(fs.statSync(path.join(dir, segmentFiles(dir)[2])).size, 200);
  await fill(again, 4, 67);
  t.deepEqual(segmentFiles(dir).map((f) => Number.parseInt(f, 16)), [0, 400, 800, 1200]);
  t.is(again.end, 1400);
  await again.close();
  const third = await openLog(t, dir, { segmentBytes: 400 });
  t.is(third.end, 1400);
  t.is((await readAll(third, 0, 1400)).length, 1400);
  t.true(third.isFrameStart(1100));
});

test('truncate at a segment base keeps that segment, empty', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 10, 67);
  await log.truncate(800);
  t.deepEqual([log.end, log.segmentCount], [800, 3]);
  await log.close();
  const again = await openLog(t, dir, { segmentBytes: 400 });
  t.deepEqual([again.end, again.segmentCount], [800, 3]);
  t.is(again.recoveredTail.at(-1)?.offset, 700, 'the tail still names the last frame');
});

test('writes in flight when truncate is called cannot resurrect the suffix', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await fill(log, 2, 67);
  // Old suffix: placed and being written when the truncation comes.
  const stale: Promise<void>[] = [];
  for (let i = 0; i < 20; i++) {
    const at = log.end;
    log.place(at, 1000, 1);
    stale.push(log.writeAt(at, dataFrame(1, payload(i, 1000))));
  }
  const cut = log.truncate(200);
  // New frames placed right away, before the truncation finished.
  const body = payload(99, 10);
  log.place(200, 10, 2);
  const fresh = log.writeAt(200, dataFrame(2, body));
  await Promise.all([...stale, cut, fresh]);
  await log.sync();
  t.is(log.end, 200 + frameSize(10));
  t.is(fs.statSync(path.join(dir, segmentFiles(dir)[0])).size, log.end, 'no stale byte past the end');
  t.true((await log.read(200, 100, log.end)).data.equals(dataFrame(2, body)));
  t.is(log.durable, log.end, 'the durable boundary follows the new frames');
});

test('a write queued behind one truncation and cut by a second writes nothing and counts as nothing', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await append(log, 1, payload(1, 100));
  const x = log.end;
  log.place(x, 100, 1);
  await log.writeAt(x, dataFrame(1, payload(2, 100)));
  const cut1 = log.truncate(x);
  log.place(x, 100, 2);
  // Waits for cut1's barrier, so it is not in flight when cut2 comes.
  const stale = log.writeAt(x, dataFrame(2, payload(3, 100)));
  const cut2 = log.truncate(x);
  log.place(x, 100, 3); // a different frame, never written
  await Promise.all([cut1, cut2, stale]);
  t.false(log.isWritten(x, x + frameSize(100)), 'the term-3 frame was never written');
  await log.sync();
  t.is(log.durable, x, 'nothing past the cut became durable');
  t.is(fs.statSync(path.join(dir, segmentFiles(dir)[0])).size, x, 'no stale byte past the cut');
});

test('a crash right after truncate and new appends recovers the new log', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await fill(log, 3, 67, 1);
  await log.checkpointNow(); // checkpoint at 300
  await log.truncate(100);
  const body = payload(5, 150); // spans the old checkpoint
  await append(log, 2, body);
  await log.sync();
  const image = await crashImage(t, dir);
  const again = await openLog(t, image);
  t.is(again.end, 100 + frameSize(150));
  t.true(again.recovery.fromCheckpoint);
  t.true(again.recovery.scanFrom <= 100, 'the checkpoint was lowered to the cut');
  t.deepEqual(again.epochs, [{ term: 1, offset: 0 }, { term: 2, offset: 100 }]);
});

test('truncate validates its offset', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 10, 67);
  await log.trim(450);
  await t.throwsAsync(log.truncate(550), { code: 'bad_offset' });
  await t.throwsAsync(log.truncate(100), { code: 'trimmed' });
  await t.throwsAsync(log.truncate(5000), { code: 'out_of_range' });
  await log.truncate(log.end);
  t.is(log.end, 1000);
  await log.truncate(400);
  t.deepEqual([log.start, log.end], [400, 400]);
});

test('reset restarts an empty log at any offset', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await fill(log, 3, 67, 1);
  await log.reset(123_456);
  t.deepEqual([log.start, log.end, log.epochs.length], [123_456, 123_456, 0]);
  t.is(await append(log, 7, payload(1, 1)), 123_456);
  await log.close();
  const again = await openLog(t, dir);
  t.deepEqual([again.start, again.end], [123_456, 123_456 + frameSize(1)]);
  t.deepEqual(again.epochs, [{ term: 7, offset: 123_456 }]);
  await t.throwsAsync(again.read(0, 10, again.end), { code: 'trimmed' });
});

test('reset keeps the terms it is given below the new start, across a reopen', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await fill(log, 3, 67, 1);
  await log.reset(5000, [{ term: 2, offset: 0 }, { term: 4, offset: 3000 }, { term: 9, offset: 5000 }]);
  t.deepEqual(log.epochs, [{ term: 2, offset: 0 }, { term: 4, offset: 3000 }], 'only those below the start');
  await log.close();
  const again = await openLog(t, dir);
  t.deepEqual([again.start, again.end], [5000, 5000]);
  t.deepEqual(again.epochs, [{ term: 2, offset: 0 }, { term: 4, offset: 3000 }], 'an empty log still knows the term before its start');
  t.is(await append(again, 4, payload(1, 1)), 5000);
  t.deepEqual(again.epochs, [{ term: 2, offset: 0 }, { term: 4, offset: 3000 }], 'the same term goes on without a new boundary');
  await again.close();
});

// A second cut before the first one's file work ran used to reopen, by path, a segment the
// second had already removed: ENOENT, and the node stopped.
test('a truncation into an earlier segment before the previous truncation finished', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 12, 67); // segments at 0, 400, 800; 100-byte frames
  const first = log.truncate(1000); // in segment 800
  const second = log.truncate(300); // in segment 0: drops 400 and 800
  const r = await Promise.allSettled([first, second]);
  t.deepEqual(r.map((x) => x.status), ['fulfilled', 'fulfilled'], JSON.stringify(r.map((x) => (x as PromiseRejectedResult).reason?.message)));
  t.is(log.status().failed, null);
  t.deepEqual(segmentFiles(dir), ['0000000000000000.seg']);
  t.is(fs.statSync(path.join(dir, '0000000000000000.seg')).size, 300);
});

test('a reset before a truncation finished', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 6, 67);
  const first = log.truncate(300);
  const second = log.reset(5000);
  const r = await Promise.allSettled([first, second]);
  t.deepEqual(r.map((x) => x.status), ['fulfilled', 'fulfilled'], JSON.stringify(r.map((x) => (x as PromiseRejectedResult).reason?.message)));
  t.is(log.status().failed, null);
  t.deepEqual(segmentFiles(dir), ['0000000000001388.seg']);
  t.false(fs.existsSync(path.join(dir, '0000000000000000.idx')), 'no index file recreated for the dropped segment');
});
