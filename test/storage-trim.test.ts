import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { append, fill, openLog, payload, readAll, segmentFiles, tmpDir } from './helpers/storage.ts';

// 100-byte frames (67-byte payloads), four per 400-byte segment.
async function tenSegments(t: import('ava').ExecutionContext) {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 38, 67);
  return { dir, log };
}

test('trim deletes whole segments below the point; reads below start are trimmed', async (t) => {
  const { dir, log } = await tenSegments(t);
  t.is(await log.trim(850), 800, 'segments [0,400) and [400,800) go, [800,1200) holds 850');
  t.is(log.start, 800);
  t.is(segmentFiles(dir).length, 8);
  t.false(fs.existsSync(path.join(dir, '0000000000000000.idx')));
  const err = await t.throwsAsync(log.read(0, 100, log.end));
  t.like(err, { code: 'trimmed', status: 410, details: { start: 800 } });
  t.is((await log.read(800, 100, log.end)).next, 900);
  t.is(log.bytes, log.end - 800);
  t.is(await log.trim(100), 800, 'trimming below start is a no-op');
});

test('trim never deletes the active segment, and the start survives reopening', async (t) => {
  const { dir, log } = await tenSegments(t);
  t.is(await log.trim(1e12), 3600, 'only the active segment [3600,3800) remains');
  t.is(log.segmentCount, 1);
  await append(log, 1, payload(1, 67));
  await log.close();
  const again = await openLog(t, dir, { segmentBytes: 400 });
  t.deepEqual([again.start, again.end], [3600, 3900]);
  t.true((await readAll(again, 3600, 3900)).length === 300);
});

test('retention by size keeps the newest segments within the budget', async (t) => {
  const { log } = await tenSegments(t);
  t.is(await log.applyRetention({ maxBytes: 1000 }, Date.now()), 2800);
  t.true(log.bytes <= 1000);
  t.is(log.bytes, 1000);
  t.is(await log.applyRetention({ maxBytes: 0 }, Date.now()), 3600, 'never the active segment');
});

test('retention by age deletes segments last written before the cut-off', async (t) => {
  const { dir, log } = await tenSegments(t);
  const now = Date.now();
  // Age the first three segments by an hour.
  for (const f of segmentFiles(dir).slice(0, 3)) fs.utimesSync(path.join(dir, f), (now - 3_600_000) / 1000, (now - 3_600_000) / 1000);
  t.is(await log.applyRetention({ maxAgeMs: 60_000 }, now), 1200);
  t.is(await log.applyRetention({ maxAgeMs: 60_000 }, now), 1200, 'the rest is young');
  t.is(await log.applyRetention({ maxAgeMs: 60_000 }, now + 120_000), 3600);
});

test('retention never deletes at or above its limit', async (t) => {
  const { log } = await tenSegments(t);
  t.is(await log.applyRetention({ maxBytes: 0, limit: 1250 }, Date.now()), 1200, 'segments ending by 1250 go, [1200,1600) stays');
});

test('a read racing a trim of its segment fails as trimmed, not with the file\'s ENOENT', async (t) => {
  const dir = await tmpDir(t);
  const first = await openLog(t, dir, { segmentBytes: 400 });
  await fill(first, 12, 67);
  await first.close();
  for (let i = 0; i < 5; i++) {
    // Reopened each time, so the read must load the segment's index from disk first.
    const copy = await tmpDir(t);
    for (const f of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, f), path.join(copy, f));
    const log = await openLog(t, copy, { segmentBytes: 400 });
    const read = log.read(100, 1000, log.end);
    await log.trim(800);
    const err = await t.throwsAsync(read);
    t.is((err as { code?: string }).code, 'trimmed', err?.message);
    await log.close();
  }
});
