import test from 'ava';
import { checkHistory, formatHistory, parseHistory, type AppendOp, type FinalLog, type HistoryOp } from '../spec/history.ts';

const O = 33; // frame overhead

/** A final log of data frames with the given payload lengths/crcs, starting with a noop. */
function log(entries: [number, number][], extra: FinalLog['frames'] = []): FinalLog {
  const frames: FinalLog['frames'] = [[0, 0, 0, 'noop']];
  let at = O;
  for (const [len, crc] of entries) { frames.push([at, len, crc, 'data']); at += O + len; }
  for (const f of extra) { frames.push([at, f[1], f[2], f[3]]); at += O + f[1]; }
  return { start: 0, end: at, frames };
}

function append(client: string, id: string, invoke: number, complete: number, result: AppendOp['result'], offset: number | null, len: number, crc: number): AppendOp {
  return { client, op: 'append', invoke_ms: invoke, complete_ms: complete, result, upload_id: id, offset, len, crc };
}

const checks = (ops: HistoryOp[], final: FinalLog, unseen = false) => checkHistory(ops, final, { checkUnseen: unseen }).violations.map((v) => v.check);

test('a clean history passes and counts its operations', (t) => {
  const final = log([[10, 1], [20, 2]]);
  const ops: HistoryOp[] = [
    append('a', 'u1', 0, 5, 'ok', 33, 10, 1),
    append('b', 'u2', 6, 9, 'ok', 76, 20, 2),
    append('a', 'u3', 10, 12, 'fail', null, 5, 3),
    append('b', 'u4', 10, 40, 'unknown', null, 7, 4),
    { client: 'r', op: 'read', from: 0, entries: [[33, 10, 1], [76, 20, 2]] },
    { client: 'r', op: 'end', invoke_ms: 20, complete_ms: 21, end: final.end },
  ];
  const r = checkHistory(ops, final, { checkUnseen: true });
  t.deepEqual(r.violations, []);
  t.true(r.ok);
  t.is(r.stats.ok, 2);
  t.is(r.stats.fail, 1);
  t.is(r.stats.unknown, 1);
  t.is(r.stats.dataFrames, 2);
});

test('JSON lines round-trip', (t) => {
  const ops: HistoryOp[] = [append('a', 'u1', 0, 5, 'ok', 33, 10, 1), { client: 'r', op: 'read', from: 0, entries: [[33, 10, 1]] }];
  t.deepEqual(parseHistory(`${formatHistory(ops)}\n\n`), ops);
});

test('an acknowledged append missing from the final log is lost', (t) => {
  t.deepEqual(checks([append('a', 'u1', 0, 5, 'ok', 33, 10, 1)], log([])), ['lost']);
});

test('an acknowledged offset holding another entry is an inconsistent offset', (t) => {
  const ops = [append('a', 'u1', 0, 5, 'ok', 33, 10, 1), append('a', 'u2', 6, 8, 'ok', 33, 20, 2)];
  const got = checks(ops, log([[10, 1], [20, 2]]));
  t.true(got.includes('duplicate-offset'));
  t.true(got.includes('inconsistent-offset'));
});

test('one payload at two offsets is a duplicate', (t) => {
  t.deepEqual(checks([append('a', 'u1', 0, 5, 'ok', 33, 10, 1)], log([[10, 1], [10, 1]])), ['duplicate']);
});

test('a failed append that is in the log is reported', (t) => {
  t.deepEqual(checks([append('a', 'u1', 0, 5, 'fail', null, 10, 1)], log([[10, 1]])), ['failed-append-visible']);
});

test('frames must tile the log', (t) => {
  const final: FinalLog = { start: 0, end: 100, frames: [[0, 0, 0, 'noop'], [40, 10, 1, 'data']] };
  t.deepEqual(checks([], final), ['dense-framing', 'dense-framing']);
});

test('acknowledged before invoked means a lower offset (real-time order)', (t) => {
  const final = log([[10, 1], [20, 2]]);
  // u2 was acknowledged at 5, u1 invoked at 6, but u1 sits before u2.
  const ops = [append('a', 'u2', 0, 5, 'ok', 76, 20, 2), append('b', 'u1', 6, 9, 'ok', 33, 10, 1)];
  t.deepEqual(checks(ops, final), ['realtime-order']);
  // Overlapping operations may land in either order.
  const overlapping = [append('a', 'u2', 0, 7, 'ok', 76, 20, 2), append('b', 'u1', 6, 9, 'ok', 33, 10, 1)];
  t.deepEqual(checks(overlapping, final), []);
});

test('an unknown append found in the log takes part in real-time order', (t) => {
  const final = log([[10, 1], [20, 2]]);
  const ops = [append('a', 'u2', 0, 5, 'ok', 76, 20, 2), append('b', 'u1', 6, 100, 'unknown', null, 10, 1)];
  t.deepEqual(checks(ops, final), ['realtime-order']);
});

test('one client\'s sequential appends get increasing offsets', (t) => {
  const final = log([[10, 1], [20, 2]]);
  const ops = [append('a', 'u2', 0, 5, 'ok', 76, 20, 2), append('a', 'u1', 5, 9, 'ok', 33, 10, 1)];
  t.true(checks(ops, final).includes('nonmonotonic-send'));
});

test('reads must return committed data frames, in order, without gaps', (t) => {
  const final = log([[10, 1], [20, 2], [30, 3]], [[0, 5, 0, 'aborted']]);
  const aborted = final.frames[4][0];
  t.deepEqual(checks([{ client: 'r', op: 'read', from: 0, entries: [[33, 10, 1], [76, 20, 2]] }], final), []);
  t.deepEqual(checks([{ client: 'r', op: 'read', from: 0, entries: [[33, 10, 1], [129, 30, 3]] }], final), ['read-gap']);
  t.deepEqual(checks([{ client: 'r', op: 'read', from: 0, entries: [[33, 10, 9]] }], final), ['read-uncommitted']);
  t.deepEqual(checks([{ client: 'r', op: 'read', from: final.end, entries: [[final.end, 4, 4]] }], final), ['read-uncommitted']);
  t.deepEqual(checks([{ client: 'r', op: 'read', from: aborted, entries: [[aborted, 5, 0]] }], final), ['read-aborted']);
  t.deepEqual(checks([{ client: 'r', op: 'read', from: 0, entries: [[76, 20, 2], [33, 10, 1]] }], final).includes('nonmonotonic-read'), true);
});

test('unseen: an acknowledged append no read returned', (t) => {
  const final = log([[10, 1], [20, 2]]);
  const ops: HistoryOp[] = [append('a', 'u1', 0, 5, 'ok', 33, 10, 1), append('a', 'u2', 6, 9, 'ok', 76, 20, 2), { client: 'r', op: 'read', from: 0, entries: [[33, 10, 1]] }];
  t.deepEqual(checks(ops, final, true), ['unseen']);
  t.deepEqual(checks(ops, final, false), []);
});

test('a linearizable end covers every append acknowledged before it was asked', (t) => {
  const final = log([[10, 1], [20, 2]]);
  const ops: HistoryOp[] = [append('a', 'u1', 0, 5, 'ok', 33, 10, 1), { client: 'r', op: 'end', invoke_ms: 6, complete_ms: 7, end: 33 }];
  t.deepEqual(checks(ops, final), ['end-stale']);
  t.deepEqual(checks([{ client: 'r', op: 'end', invoke_ms: 6, complete_ms: 7, end: 40 }], final), ['end-invalid']);
});
