import test from 'ava';
import { Kind, encodeFrame, frameSize } from '../spec/frame.ts';
import { scanFrames } from '../spec/recovery.ts';
import { dataFrame, payload } from './helpers/storage.ts';

const a = dataFrame(1, payload(1, 40));
const b = dataFrame(1, payload(2, 10));
const c = dataFrame(2, payload(3, 25));
const noop = encodeFrame({ kind: Kind.Noop, term: 2, length: 0, crc: 0 });
const all = Buffer.concat([a, b, noop, c]);
const ends = [a.length, a.length + b.length, a.length + b.length + noop.length, all.length];

test('a clean run of frames scans to the end, with entries and epochs', (t) => {
  const r = scanFrames(all, 1000);
  t.is(r.validEnd, 1000 + all.length);
  t.is(r.stop, 'end');
  t.false(r.torn);
  t.deepEqual(r.entries.map((e) => [e.offset, e.length, e.term, e.kind, e.uploadId]), [
    [1000, 40, 1, Kind.Data, null],
    [1000 + ends[0], 10, 1, Kind.Data, null],
    [1000 + ends[1], 0, 2, Kind.Noop, null],
    [1000 + ends[2], 25, 2, Kind.Data, null],
  ]);
  t.deepEqual(r.epochs, [{ term: 1, offset: 1000 }, { term: 2, offset: 1000 + ends[1] }]);
});

test('an all-zero tail of any length is a clean end', (t) => {
  for (const zeros of [1, 5, 31, 32, 33, 4096]) {
    const r = scanFrames(Buffer.concat([all, Buffer.alloc(zeros)]), 0);
    t.is(r.validEnd, all.length);
    t.is(r.stop, 'zero');
    t.false(r.torn);
    t.is(r.entries.length, 4);
  }
  const empty = scanFrames(Buffer.alloc(0), 77);
  t.deepEqual([empty.validEnd, empty.stop, empty.torn, empty.entries.length], [77, 'end', false, 0]);
});

test('a frame cut at every byte is torn and the scan ends before it', (t) => {
  for (let cut = ends[2] + 1; cut < all.length; cut++) {
    const r = scanFrames(all.subarray(0, cut), 0);
    t.is(r.validEnd, ends[2], `cut at ${cut}`);
    t.true(r.torn);
    t.is(r.entries.length, 3);
  }
});

test('a never-completed frame (zero trailer, zero payload) is torn', (t) => {
  const f = Buffer.from(c);
  f.fill(0, 32);
  const r = scanFrames(Buffer.concat([a, f]), 0);
  t.is(r.validEnd, a.length);
  t.true(r.torn);
  t.is(r.stop, 'trailer');
});

test('non-zero bytes after a zero header are still a torn write', (t) => {
  const buf = Buffer.concat([a, Buffer.alloc(40), Buffer.from([1])]);
  const r = scanFrames(buf, 0);
  t.is(r.validEnd, a.length);
  t.is(r.stop, 'zero');
  t.true(r.torn);
});

test('the planted bug keeps a torn frame whose header decodes', (t) => {
  const cut = all.subarray(0, all.length - 5);
  const honest = scanFrames(cut, 0);
  t.is(honest.validEnd, ends[2]);
  const buggy = scanFrames(cut, 0, { bugs: { noTornTailTruncation: true } });
  t.is(buggy.validEnd, all.length, 'claims the frame up to where its header says it ends');
  t.is(buggy.entries.length, 4);
  t.true(buggy.torn);
  // A header that does not decode cannot be kept, even by the bug.
  const garbage = Buffer.concat([a, Buffer.alloc(frameSize(3), 0x33)]);
  t.is(scanFrames(garbage, 0, { bugs: { noTornTailTruncation: true } }).validEnd, a.length);
});
