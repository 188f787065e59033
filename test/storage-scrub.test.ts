import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Scrubber, type ScrubberOptions, SCRUB_FILE } from '../server/storage/scrubber.ts';
import type { SegmentLog } from '../server/storage/segment-log.ts';
import { segmentPath } from '../server/storage/segment-files.ts';
import { dataFrame, fill, openLog, payload, readAll, tmpDir } from './helpers/storage.ts';
import { until } from './helpers/cluster.ts';

// 100-byte frames (67-byte payloads), four per 400-byte segment: ten segments, [0, 3800).
async function tenSegments(t: ExecutionContext) {
  const dir = await tmpDir(t);
  const log = await openLog(t, dir, { segmentBytes: 400 });
  await fill(log, 38, 67);
  return { dir, log, good: await readAll(log, 0, log.end) };
}

/** Flips one byte of the log at `offset`, in the segment file, as bit rot would. */
function rot(dir: string, base: number, offset: number): void {
  const fd = fs.openSync(segmentPath(dir, base), 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset - base);
    b[0] ^= 0x10;
    fs.writeSync(fd, b, 0, 1, offset - base);
  } finally {
    fs.closeSync(fd);
  }
}

function scrubber(t: ExecutionContext, log: SegmentLog, opts: Partial<ScrubberOptions> = {}) {
  const lines: string[] = [];
  const s = new Scrubber({
    log, intervalMs: 3_600_000, bytesPerSec: 1e12,
    limit: () => log.end, sources: () => [], fetchFrames: () => Promise.reject(new Error('no copies here')),
    report: (line) => lines.push(line), diskFailed: (reason) => lines.push(`disk failed: ${reason}`), now: () => Date.now(),
    ...opts,
  });
  t.teardown(() => s.stop());
  return { s, lines };
}

async function passes(s: Scrubber, n: number) {
  await until(`scrub pass ${n}`, 10_000, () => (s.status().passes >= n ? true : undefined));
}

test('a rotten payload byte in a sealed segment is found and rewritten from another replica', async (t) => {
  const { dir, log, good } = await tenSegments(t);
  rot(dir, 400, 450);
  t.notDeepEqual(await readAll(log, 0, log.end), good);
  const asked: string[] = [];
  const { s, lines } = scrubber(t, log, {
    sources: () => ['n2'],
    fetchFrames: async (source, offset) => { asked.push(`${source}@${offset}`); return good.subarray(offset); },
  });
  s.start();
  await passes(s, 1);
  t.deepEqual(asked, ['n2@400']);
  t.deepEqual(await readAll(log, 0, log.end), good, 'the file holds the good bytes again');
  t.like(s.status(), { enabled: true, passes: 1, damaged: 1, repaired: 1, checkedBytes: 3800, position: null });
  t.is(lines.length, 1);
  t.regex(lines[0], /the frame at 400 \(segment 0{13}190, 100 bytes\) failed its check \(checksum\); rewritten from n2's copy/);
});

test('a rotten header is mended from the first replica whose copy is the same good frame', async (t) => {
  const { dir, log, good } = await tenSegments(t);
  rot(dir, 1200, 1208); // the payload length in the header of the frame at 1200
  const bad = Buffer.from(good.subarray(1200, 1300));
  bad[40] ^= 1; // n2's copy rotted too
  const { s, lines } = scrubber(t, log, {
    sources: () => ['n1', 'n2', 'n3', 'n4'],
    fetchFrames: async (source, offset) => {
      if (source === 'n1') return dataFrame(2, payload(9, 67)); // valid, the same size, another term
      if (source === 'n2') return bad;
      if (source === 'n3') throw new Error('answered 503');
      return good.subarray(offset);
    },
  });
  s.start();
  await passes(s, 1);
  t.deepEqual(await readAll(log, 0, log.end), good);
  t.is(lines.length, 1);
  t.regex(lines[0], /frame at 1200 .*\(header-crc\); rewritten from n4's copy/);
});

test('with no good copy anywhere, the frame is reported on every pass and left as it is', async (t) => {
  const { dir, log, good } = await tenSegments(t);
  rot(dir, 2000, 2050);
  const { s, lines } = scrubber(t, log, { intervalMs: 20, sources: () => ['n2'], fetchFrames: async () => Buffer.from(good.subarray(2100, 2200)) });
  s.start();
  await passes(s, 2);
  await s.stop();
  t.true(s.status().damaged >= 2);
  t.is(s.status().repaired, 0);
  t.regex(lines[0], /frame at 2000 .*failed its check \(checksum\), and no other replica gave a good copy \(n2: its copy is not the same frame or fails its check too\)/);
  t.notDeepEqual(await readAll(log, 0, log.end), good, 'nothing was written over it');

  // (It may first finish the pass the last scrubber stopped in, past the frame.)
  const single = scrubber(t, log, { intervalMs: 20 });
  single.s.start();
  await until('a pass of a cluster of one reports the frame', 10_000, () => single.lines[0]);
  t.regex(single.lines[0], /there is no other replica to copy it from: readers of it get a checksum error/);
});

test('frames past the limit (not known committed) are waited for, not skipped, and the pass ends where the log ended when it began', async (t) => {
  const { dir, log } = await tenSegments(t);
  rot(dir, 2800, 2850);
  let limit = 2800;
  const { s, lines } = scrubber(t, log, { limit: () => limit });
  s.start();
  await until('the pass waits at the limit', 10_000, () => (s.status().position === 2800 && s.status().checkedBytes === 2800 ? true : undefined));
  t.like(s.status(), { running: true, passes: 0, damaged: 0 });
  t.deepEqual(lines, []);
  await fill(log, 4, 67); // appended during the pass: the next pass's
  limit = log.end; // a leader told this node its commit end
  await passes(s, 1);
  t.like(s.status(), { damaged: 1, checkedBytes: 3800 });
  t.regex(lines[0], /frame at 2800 .*failed its check \(checksum\)/);
});

test('a stopped pass is saved, and the next scrubber goes on from where it stood', async (t) => {
  const { dir, log } = await tenSegments(t);
  // 400 bytes per read (reads stop at segments), 2,000 bytes a second: 200 ms per segment.
  const first = scrubber(t, log, { bytesPerSec: 2000 });
  first.s.start();
  await until('the pass is past the first segments', 10_000, () => ((first.s.status().position ?? 0) >= 1200 ? true : undefined));
  await first.s.stop();
  const stood = first.s.status().position!;
  t.true(stood >= 1200 && stood < 3800);
  t.like(JSON.parse(fs.readFileSync(path.join(dir, SCRUB_FILE), 'utf8')), { position: stood, passes: 0 });

  const next = scrubber(t, log);
  t.is(next.s.status().position, stood);
  next.s.start();
  await passes(next.s, 1);
  t.is(next.s.status().checkedBytes, 3800 - stood, 'only the rest of the log was read');
  t.like(JSON.parse(fs.readFileSync(path.join(dir, SCRUB_FILE), 'utf8')), { position: null, passes: 1 });

  // The pass that ended is not run again before the interval is over, across a restart too.
  const after = scrubber(t, log);
  after.s.start();
  await new Promise((r) => setImmediate(r));
  t.like(after.s.status(), { running: false, passes: 1, checkedBytes: 0 });
});

test('an interval of 0 turns scrubbing off', async (t) => {
  const { log } = await tenSegments(t);
  const { s } = scrubber(t, log, { intervalMs: 0 });
  s.start();
  await new Promise((r) => setTimeout(r, 20));
  t.like(s.status(), { enabled: false, running: false, checkedBytes: 0 });
});

test('an unreadable frame (EIO) is rewritten from another replica, and the pass goes on past it', async (t) => {
  const { log, good } = await tenSegments(t);
  const read = log.read.bind(log);
  // As a bad sector under the frame at 1200 answers: every read that covers it fails.
  log.read = async (offset, maxBytes, limit) => {
    if (offset <= 1200 && offset + Math.max(maxBytes, 1) > 1200 && offset >= 1200 - 400) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    return read(offset, maxBytes, limit);
  };
  const { s, lines } = scrubber(t, log, { sources: () => ['n2'], fetchFrames: async (_source, offset) => good.subarray(offset) });
  s.start();
  await passes(s, 1);
  t.like(s.status(), { damaged: 1, repaired: 1 });
  t.is(lines.length, 1);
  t.regex(lines[0], /frame at 1200 .*failed its check \(unreadable: EIO: i\/o error, read\); rewritten from n2's copy/);
});

test('stop() ends a pass at once, even while a repair waits for a replica that does not answer', async (t) => {
  const { dir, log } = await tenSegments(t);
  rot(dir, 1600, 1650);
  let asked!: () => void;
  const fetching = new Promise<void>((r) => { asked = r; });
  const { s, lines } = scrubber(t, log, {
    sources: () => ['n2'],
    fetchFrames: (_source, _offset, signal) => new Promise((_resolve, reject) => {
      asked();
      signal.addEventListener('abort', () => reject(new Error('aborted')));
    }),
  });
  s.start();
  await fetching;
  await s.stop();
  t.like(s.status(), { running: false, position: 1600, damaged: 0 }, 'the frame is checked again after a restart');
  t.deepEqual(lines, []);
});

test('a repair whose write fails fails the log, and the node is told to stop', async (t) => {
  const { dir, log, good } = await tenSegments(t);
  rot(dir, 400, 450);
  // The segment's fd swapped for a read-only one: the repair's write fails (EBADF, for EIO).
  const seg = (log as unknown as { segs: { fd: number | null }[] }).segs[1];
  const rw = seg.fd;
  seg.fd = fs.openSync(segmentPath(dir, 400), 'r');
  t.teardown(() => { fs.closeSync(seg.fd!); seg.fd = rw; });
  const { s, lines } = scrubber(t, log, { sources: () => ['n2'], fetchFrames: async (_source, offset) => good.subarray(offset) });
  s.start();
  await until('the node is told', 10_000, () => lines.find((l) => l.startsWith('disk failed')));
  t.regex(lines.join('\n'), /rewriting it from n2's copy failed: .*EBADF/);
  t.regex(log.status().failed ?? '', /repairing the frame at 400/);
  await t.throwsAsync(log.sync(), { message: /repairing the frame at 400/ });
});
