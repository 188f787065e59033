import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { loadHardState, saveHardStateSync } from '../server/storage/hard-state.ts';
import { loadTrimPoint, saveTrimPointSync } from '../server/storage/trim-point.ts';
import { WriteFrontier } from '../server/storage/write-frontier.ts';
import { segmentsToDelete } from '../server/storage/retention.ts';
import { append, crashImage, fill, openLog, payload, tmpDir } from './helpers/storage.ts';

test('hard state: defaults, round trip, refuses a damaged file', async (t) => {
  const dir = await tmpDir(t);
  t.deepEqual(loadHardState(dir), { term: 0, votedFor: null, abstain: true }, 'a directory without it may have lost votes');
  saveHardStateSync(dir, { term: 5, votedFor: 'n2', abstain: true });
  t.deepEqual(loadHardState(dir), { term: 5, votedFor: 'n2', abstain: true });
  saveHardStateSync(dir, { term: 5, votedFor: 'n2', abstain: false });
  t.deepEqual(loadHardState(dir), { term: 5, votedFor: 'n2', abstain: false });
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'hardstate'), 'utf8')), { term: 5, votedFor: 'n2' }, 'as older versions wrote it');
  saveHardStateSync(dir, { term: 6, votedFor: null, abstain: false });
  t.deepEqual(loadHardState(dir), { term: 6, votedFor: null, abstain: false });
  t.false(fs.existsSync(path.join(dir, 'hardstate.tmp')));
  fs.writeFileSync(path.join(dir, 'hardstate'), '{"term":');
  t.throws(() => loadHardState(dir), { code: 'internal' });
  fs.writeFileSync(path.join(dir, 'hardstate'), '{"term":-1,"votedFor":null}');
  t.throws(() => loadHardState(dir), { message: /malformed/ });
  fs.writeFileSync(path.join(dir, 'hardstate'), '{"term":1,"votedFor":null,"abstain":"yes"}');
  t.throws(() => loadHardState(dir), { message: /malformed/ });
});

test('trim point: 0 when never saved, round trip, a damaged file reads as 0 and says so', async (t) => {
  const dir = await tmpDir(t);
  t.deepEqual(loadTrimPoint(dir), { point: 0, damaged: false });
  saveTrimPointSync(dir, 2 ** 40 + 7);
  t.deepEqual(loadTrimPoint(dir), { point: 2 ** 40 + 7, damaged: false });
  const file = path.join(dir, 'trim-point');
  const b = fs.readFileSync(file);
  b[3] ^= 1;
  fs.writeFileSync(file, b);
  t.deepEqual(loadTrimPoint(dir), { point: 0, damaged: true });
});

test('write frontier: only the contiguous written prefix counts', (t) => {
  const f = new WriteFrontier(100);
  f.add(150, 200);
  f.add(300, 400);
  t.is(f.value, 100);
  t.true(f.covers(50, 100), 'below the frontier');
  t.true(f.covers(300, 400) && f.covers(320, 380), 'inside a range above it');
  t.false(f.covers(150, 300), 'across a gap');
  t.false(f.covers(90, 160), 'from the frontier into a range, across the gap between');
  f.add(100, 150);
  t.is(f.value, 200);
  f.add(250, 300);
  f.add(200, 260);
  t.is(f.value, 400);
  f.add(50, 120); // rewrite below the frontier (an aborted frame's header)
  t.is(f.value, 400);
  f.add(500, 600);
  f.truncate(450);
  f.add(400, 450);
  t.is(f.value, 450, 'ranges past a truncation are forgotten');
});

test('retention plan: oldest first, stops at the first keeper, asks mtimes lazily', async (t) => {
  const segs = [0, 100, 200, 300].map((b) => ({ base: b, end: b + 100 }));
  const asked: number[] = [];
  const mtimes = [0, 10, 1000, 0];
  const n = await segmentsToDelete(segs, 500, { maxAgeMs: 500 }, 1000, async (i) => { asked.push(i); return mtimes[i]; });
  t.is(n, 2);
  t.deepEqual(asked, [0, 1, 2]);
  t.is(await segmentsToDelete(segs, 500, { maxBytes: 250 }, 0, async () => 0), 3);
  t.is(await segmentsToDelete(segs, 500, {}, 0, async () => 0), 0);
});

test('checkpoints follow syncs by themselves (on a new segment, else at most once per interval)', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400, checkpointIntervalMs: 60_000 });
  const waitCheckpoint = async (offset: number) => {
    for (let i = 0; i < 200 && log.status().checkpoint !== offset; i++) await new Promise((r) => setTimeout(r, 5));
    return log.status().checkpoint;
  };
  await fill(log, 1, 67);
  t.is(await waitCheckpoint(100), 100, 'the first sync checkpoints');
  await fill(log, 2, 67);
  await new Promise((r) => setTimeout(r, 50));
  t.is(log.status().checkpoint, 100, 'not again within the interval');
  await fill(log, 2, 67); // crosses into segment [400, 800)
  t.is(await waitCheckpoint(500), 500, 'a new segment checkpoints at once');
  // A crash now recovers from there.
  await append(log, 1, payload(1, 10));
  const image = await crashImage(t, dir);
  const again = await openLog(t, image, { segmentBytes: 400 });
  t.true(again.recovery.fromCheckpoint);
  t.is(again.recovery.scanFrom, 400);
  t.is(again.end, 500 + 43);
});

test('close makes everything durable and is idempotent; a closed log refuses work', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await append(log, 1, payload(1, 10));
  await log.close();
  await log.close();
  t.throws(() => log.place(log.end, 1, 1), { code: 'unavailable' });
  const again = await openLog(t, dir);
  t.is(again.end, 43);
  t.is(again.recovery.bytesScanned, 43, 'only the last frame is re-read');
});

test('a second sync does not resolve before the fdatasync covering its writes', async (t) => {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir);
  await append(log, 1, payload(1, 100));
  let firstDone = false;
  const first = log.sync().then(() => { firstDone = true; });
  await log.sync();
  t.true(firstDone, `the second sync resolved with durable=${log.durable} while the first fdatasync was still running`);
  await first;
});

test('a data-directory file that cannot be read (a directory in its place) is named in the error', async (t) => {
  const { readFileOrNullSync } = await import('../server/storage/fs-util.ts');
  const dir = await tmpDir(t);
  const p = (await import('node:path')).join(dir, 'hardstate');
  (await import('node:fs')).mkdirSync(p);
  t.throws(() => readFileOrNullSync(p), { message: new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: EISDIR`) });
  t.is(readFileOrNullSync(`${p}-none`), null);
});

test.serial('a data directory file this user may not open (left by a node run as root, say) is one line that says what to do', async (t) => {
  const { LogNode } = await import('../server/log-node.ts');
  const { DEFAULT_NODE_CONFIG } = await import('../server/config.ts');
  const dir = await tmpDir(t);
  const config = { ...DEFAULT_NODE_CONFIG, dataDir: dir };
  await (await LogNode.open(config)).close();
  // Root can open any file: chmod cannot make this happen in a test run as root.
  const hardstate = path.join(dir, 'hardstate');
  const { readFileSync } = fs;
  (fs as { readFileSync: unknown }).readFileSync = (file: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
    if (file === hardstate) { const e = new Error(`EACCES: permission denied, open '${file}'`) as NodeJS.ErrnoException; e.code = 'EACCES'; throw e; }
    return (readFileSync as (...a: unknown[]) => unknown)(file, ...rest);
  };
  try {
    const e = await t.throwsAsync(LogNode.open(config));
    t.is(e!.message, `cannot open the data directory ${dir}: EACCES: permission denied, open '${hardstate}'; every file in it must be readable and writable by this user (a node once run as another user, root say, leaves files it cannot open: chown them to this one)`);
  } finally {
    Object.assign(fs, { readFileSync });
  }
  t.false(fs.existsSync(path.join(dir, 'lock')), 'the lock is let go');
});
