import test from 'ava';
import { Replica, DEFAULT_CONFIG } from '../spec/replica.ts';
import type { Effect, Input } from '../spec/messages.ts';
import { Kind, frameSize } from '../spec/frame.ts';

function single() {
  const r = new Replica({
    config: { ...DEFAULT_CONFIG, id: 'n1', members: ['n1'] },
    init: { term: 0, votedFor: null, start: 0, end: 0, epochs: [], tail: [] },
    random: () => 0.5,
    now: 0,
  });
  return r;
}

/** Executes storage effects immediately, the way a perfect disk would. */
function run(r: Replica, input: Input): Effect[] {
  const all: Effect[] = [];
  const queue: Input[] = [input];
  while (queue.length) {
    const effects = r.step(queue.shift()!);
    for (const e of effects) {
      all.push(e);
      if (e.type === 'write') queue.push({ type: 'writeDone', seq: e.seq });
      if (e.type === 'sync') queue.push({ type: 'syncDone', upTo: e.upTo, ok: true });
    }
  }
  return all;
}

test('a cluster of one elects itself, commits a noop, then acknowledges appends after sync', (t) => {
  const r = single();
  const fx = run(r, { type: 'tick', now: 1 });
  t.is(r.role, 'leader');
  t.is(r.term, 1);
  t.truthy(fx.find((e) => e.type === 'persist'));
  t.is(r.commitEnd, frameSize(0));
  const head = r.step({ type: 'appendHead', reqId: 7, uploadId: 'u1', length: 10, crc: 123, acks: 'quorum' });
  const alloc = head.find((e) => e.type === 'allocated');
  t.truthy(alloc);
  t.false(head.some((e) => e.type === 'reply'));
  const done = run(r, { type: 'bodyDone', reqId: 7, ok: true, crc: 123 });
  const reply = done.find((e) => e.type === 'reply');
  t.deepEqual(reply && reply.type === 'reply' ? reply.result : null, { type: 'appended', offset: frameSize(0), end: frameSize(0) + frameSize(10), term: 1 });
});

test('a body with the wrong declared checksum becomes an aborted frame and a 400', (t) => {
  const r = single();
  run(r, { type: 'tick', now: 1 });
  r.step({ type: 'appendHead', reqId: 1, uploadId: null, length: 4, crc: 1, acks: 'quorum' });
  const fx = run(r, { type: 'bodyDone', reqId: 1, ok: true, crc: 2 });
  const w = fx.find((e) => e.type === 'write');
  t.is(w && w.type === 'write' ? w.meta.kind : 0, Kind.Aborted);
  const reply = fx.find((e) => e.type === 'reply');
  t.is(reply && reply.type === 'reply' && reply.result.type === 'error' ? reply.result.code : '', 'checksum_mismatch');
});

test('a body lost on the way or refused by the disk becomes an aborted frame; the answer says which', (t) => {
  const r = single();
  run(r, { type: 'tick', now: 1 });
  const answer = (fx: Effect[]) => {
    const reply = fx.find((e) => e.type === 'reply');
    return reply && reply.type === 'reply' && reply.result.type === 'error' ? `${reply.result.code}: ${reply.result.message}` : '';
  };
  r.step({ type: 'appendHead', reqId: 1, uploadId: null, length: 4, crc: 1, acks: 'quorum' });
  const lost = run(r, { type: 'bodyDone', reqId: 1, ok: false, crc: 0 });
  t.is(answer(lost), 'aborted: the request body did not arrive complete');
  r.step({ type: 'appendHead', reqId: 2, uploadId: null, length: 4, crc: 1, acks: 'quorum' });
  const refused = run(r, { type: 'bodyDone', reqId: 2, ok: false, crc: 0, writeError: 'ENOSPC: no space left on device, write' });
  t.is(answer(refused), 'aborted: this node could not write the body (ENOSPC: no space left on device, write): nothing was appended');
  for (const fx of [lost, refused]) {
    const w = fx.find((e) => e.type === 'write');
    t.is(w && w.type === 'write' ? w.meta.kind : 0, Kind.Aborted);
  }
});

test('a stalled body is aborted at the deadline and later appends still commit', (t) => {
  const r = single();
  run(r, { type: 'tick', now: 1 });
  r.step({ type: 'appendHead', reqId: 1, uploadId: null, length: 4, crc: null, acks: 'quorum' });
  r.step({ type: 'appendHead', reqId: 2, uploadId: null, length: 4, crc: null, acks: 'quorum' });
  const early = run(r, { type: 'bodyDone', reqId: 2, ok: true, crc: 9 });
  t.false(early.some((e) => e.type === 'reply'), 'commit cannot pass the open body');
  const fx = run(r, { type: 'tick', now: 1 + DEFAULT_CONFIG.bodyDeadlineMs });
  const codes = fx.filter((e) => e.type === 'reply').map((e) => (e.type === 'reply' ? e.result.type === 'error' ? e.result.code : e.result.type : ''));
  t.deepEqual(codes.sort(), ['appended', 'timeout']);
  t.is(r.commitEnd, r.end);
});

test('the read index of a single node is its commit end', (t) => {
  const r = single();
  run(r, { type: 'tick', now: 1 });
  const fx = r.step({ type: 'readIndex', reqId: 3 });
  t.deepEqual(fx.find((e) => e.type === 'reply'), { type: 'reply', reqId: 3, result: { type: 'readIndex', end: r.commitEnd } });
});

test('a follower fetches an entry without an upload id at once, and waits for an upload otherwise', (t) => {
  const r = new Replica({
    config: { ...DEFAULT_CONFIG, id: 'n2', members: ['n1', 'n2', 'n3'] },
    init: { term: 0, votedFor: null, start: 0, end: 0, epochs: [], tail: [] },
    random: () => 0.5,
    now: 0,
  });
  const entries = [
    { offset: 0, length: 3, term: 1, kind: Kind.Data, crc: 1, uploadId: null },
    { offset: frameSize(3), length: 3, term: 1, kind: Kind.Data, crc: 2, uploadId: 'u2' },
  ];
  const fx = r.step({ type: 'message', from: 'n1', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries, commit: 0, seq: 1 } });
  const writes = fx.filter((e) => e.type === 'write');
  t.is(writes.length, 2);
  const seqs = writes.map((w) => (w.type === 'write' ? w.seq : 0));
  const a = r.step({ type: 'writeFailed', seq: seqs[0], reason: 'missing' });
  t.deepEqual(a.filter((e) => e.type === 'fetch').map((e) => (e.type === 'fetch' ? [e.meta.offset, e.peer] : [])), [[0, 'n1']]);
  const b = r.step({ type: 'writeFailed', seq: seqs[1], reason: 'missing' });
  t.false(b.some((e) => e.type === 'fetch'), 'an upload may still come');
  const later = r.step({ type: 'tick', now: DEFAULT_CONFIG.uploadDeadlineMs + 1 });
  t.true(later.some((e) => e.type === 'fetch' && e.meta.offset === frameSize(3)), 'past the deadline it fetches');
});

/** The result of the reply effect among `fx` (null if none). */
function replied(fx: Effect[]) {
  const r = fx.find((e) => e.type === 'reply');
  return r && r.type === 'reply' ? r.result : null;
}

test('a second head under an upload id already in the log is not placed: committed answers its offset, pending answers conflict', (t) => {
  const r = single();
  run(r, { type: 'tick', now: 1 });
  r.step({ type: 'appendHead', reqId: 1, uploadId: 'u1', length: 10, crc: 5, acks: 'quorum' });
  const first = replied(run(r, { type: 'bodyDone', reqId: 1, ok: true, crc: 5 }));
  const end = r.end;
  // A delayed copy of the same request arrives after the client asked and got its answer.
  const again = run(r, { type: 'appendHead', reqId: 2, uploadId: 'u1', length: 10, crc: 5, acks: 'quorum' });
  t.deepEqual(replied(again), first);
  t.false(again.some((e) => e.type === 'allocated'));
  t.is(r.end, end, 'nothing placed');
  // Still open (pending): a conflict, not a second frame.
  r.step({ type: 'appendHead', reqId: 3, uploadId: 'u2', length: 10, crc: 5, acks: 'quorum' });
  const dup = r.step({ type: 'appendHead', reqId: 4, uploadId: 'u2', length: 10, crc: 5, acks: 'quorum' });
  t.like(replied(dup), { type: 'error', code: 'conflict', details: { offset: end, state: 'pending' } });
});

test('a head under a placed upload id with another length or checksum is a conflict "reused", not the first entry\'s answer', (t) => {
  const r = single();
  run(r, { type: 'tick', now: 1 });
  r.step({ type: 'appendHead', reqId: 1, uploadId: 'u1', length: 10, crc: 5, acks: 'quorum' });
  run(r, { type: 'bodyDone', reqId: 1, ok: true, crc: 5 });
  const at = r.end - frameSize(10);
  const end = r.end;
  t.like(replied(run(r, { type: 'appendHead', reqId: 2, uploadId: 'u1', length: 11, crc: 5, acks: 'quorum' })), { type: 'error', code: 'conflict', details: { offset: at, state: 'reused' } });
  t.like(replied(run(r, { type: 'appendHead', reqId: 3, uploadId: 'u1', length: 10, crc: 6, acks: 'quorum' })), { type: 'error', code: 'conflict', details: { state: 'reused' } });
  // No checksum claimed: only the length can tell, and it matches.
  t.like(replied(run(r, { type: 'appendHead', reqId: 4, uploadId: 'u1', length: 10, crc: null, acks: 'quorum' })), { type: 'appended', offset: at });
  // Still streaming: the head's claimed checksum is what the entry must match.
  r.step({ type: 'appendHead', reqId: 5, uploadId: 'u2', length: 4, crc: 9, acks: 'quorum' });
  t.like(replied(r.step({ type: 'appendHead', reqId: 6, uploadId: 'u2', length: 4, crc: 8, acks: 'quorum' })), { type: 'error', details: { state: 'reused' } });
  t.like(replied(r.step({ type: 'appendHead', reqId: 7, uploadId: 'u2', length: 4, crc: 9, acks: 'quorum' })), { type: 'error', details: { state: 'pending' } });
  t.is(r.end, end + frameSize(4), 'nothing placed for the reused id');
});

test('after a restart, recovered entries get their upload ids back from the fates records; one without a record makes older ids "forgotten", not "unknown"', (t) => {
  const h = frameSize(0);
  const data = (offset: number, length: number) => ({ offset, length, term: 1, kind: Kind.Data, crc: 7, uploadId: null });
  const a = data(h, 10), b = data(h + frameSize(10), 20);
  const end = b.offset + frameSize(20);
  const restart = (fates: { offset: number; length: number; uploadId: string }[], fatesFrom?: number) => {
    const r = new Replica({
      config: { ...DEFAULT_CONFIG, id: 'n1', members: ['n1'] },
      init: {
        term: 1, votedFor: 'n1', start: 0, end, epochs: [{ term: 1, offset: 0 }],
        tail: [{ offset: 0, length: 0, term: 1, kind: Kind.Noop, crc: 0, uploadId: null }, a, b],
        fates: fates.map((f) => ({ ...f, term: 1, kind: Kind.Data, crc: 0 })), fatesFrom, commitHint: end,
      },
      random: () => 0.5,
      now: 0,
    });
    run(r, { type: 'tick', now: 1 }); // leader of term 2, its noop committed
    return r;
  };
  const fate = (r: Replica, uploadId: string, after: number) => replied(run(r, { type: 'fate', reqId: 9, uploadId, after }));

  const whole = restart([{ offset: a.offset, length: 10, uploadId: 'ua' }, { offset: b.offset, length: 20, uploadId: 'ub' }]);
  t.is(whole.fatesFrom, 0, 'every id known');
  t.like(fate(whole, 'ub', a.offset), { type: 'fate', state: 'committed', offset: b.offset });
  t.like(fate(whole, 'never', 0), { type: 'fate', state: 'unknown' });

  // The record of b was lost (power loss before the fates file reached the disk).
  const lost = restart([{ offset: a.offset, length: 10, uploadId: 'ua' }]);
  t.is(lost.fatesFrom, end);
  t.like(fate(lost, 'ub', a.offset), { type: 'fate', state: 'forgotten', since: end });
  t.like(fate(lost, 'never', end), { type: 'fate', state: 'unknown' });
  // What it learned it forgot survives the next restart, records or not.
  t.is(restart([], end).fatesFrom, end);
});

test('a catch-up copy makes the ids below its end forgotten, and says so (to persist) before the copy', (t) => {
  const r = new Replica({
    config: { ...DEFAULT_CONFIG, id: 'n2', members: ['n1', 'n2', 'n3'], windowEntries: 4 },
    init: { term: 0, votedFor: null, start: 0, end: 0, epochs: [], tail: [] },
    random: () => 0.5,
    now: 0,
  });
  const fx = r.step({ type: 'message', from: 'n1', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 5000, seq: 1, catchUp: { to: 5000, epochs: [{ term: 1, offset: 0 }] } } });
  const kinds = fx.map((e) => e.type);
  t.true(kinds.includes('copy'), JSON.stringify(kinds));
  t.true(kinds.indexOf('fatesFrom') >= 0 && kinds.indexOf('fatesFrom') < kinds.indexOf('copy'));
  t.is(r.fatesFrom, 5000);
});

test('a follower whose log restarts at the leader\'s start (reset) forgets the ids below it: elected, it says "forgotten", not "unknown"', (t) => {
  // n2 was down; its log ends at 0. Meanwhile n1 (leader, term 1) took appends, among them
  // 'x' somewhere in [0, S), committed them, and trimmed the log to S.
  const S = 10 * frameSize(100);
  const r = new Replica({
    config: { ...DEFAULT_CONFIG, id: 'n2', members: ['n1', 'n2', 'n3'] },
    init: { term: 0, votedFor: null, start: 0, end: 0, epochs: [], tail: [] },
    random: () => 0.5, now: 0,
  });
  const epochs = [{ term: 1, offset: 0 }];
  // Catch-up instruction carrying the leader's start; the leader's window reaches below S, so `to` = S.
  run(r, { type: 'message', from: 'n1', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: S, seq: 1, trimTo: S, catchUp: { to: S, epochs, start: S } } });
  t.is(r.start, S);
  // Then plain metadata from S on (the leader's window covers it).
  const e1 = { offset: S, length: 5, term: 1, kind: Kind.Data, crc: 1, uploadId: 'y' };
  run(r, { type: 'message', from: 'n1', msg: { type: 'append', term: 1, prevEnd: S, prevTerm: 1, entries: [e1], commit: S + frameSize(5), seq: 2, trimTo: S } });
  t.is(r.end, S + frameSize(5));
  t.is(r.fatesFrom, S);
  // n1 dies; n2 is elected (its log is as up to date as n3's).
  run(r, { type: 'tick', now: 10_000 });
  run(r, { type: 'message', from: 'n3', msg: { type: 'voteReply', term: 2, pre: true, granted: true } });
  run(r, { type: 'message', from: 'n3', msg: { type: 'voteReply', term: 2, pre: false, granted: true } });
  t.is(r.role, 'leader');
  run(r, { type: 'message', from: 'n3', msg: { type: 'appendReply', term: 2, ok: true, end: r.end, conflictTerm: 0, seq: 1 } });
  t.is(r.commitEnd, r.end, 'noop of term 2 committed');
  // A client that knew commit end 0 before appending 'x' (committed in [0, S), then trimmed) asks.
  const ans = replied(run(r, { type: 'fate', reqId: 9, uploadId: 'x', after: 0 }));
  t.like(ans, { type: 'fate', state: 'forgotten', since: S });
});

test('a head whose upload id this leader may have forgotten (its after below fatesFrom) is refused: it may be a stale copy of an entry held without its id', (t) => {
  const h = frameSize(0);
  const x = { offset: h, length: 10, term: 1, kind: Kind.Data, crc: 7, uploadId: null };
  const end = x.offset + frameSize(10);
  // Restarted after a power loss that took x's fates record; x is committed.
  const r = new Replica({
    config: { ...DEFAULT_CONFIG, id: 'n1', members: ['n1'] },
    init: { term: 1, votedFor: 'n1', start: 0, end, epochs: [{ term: 1, offset: 0 }], tail: [{ offset: 0, length: 0, term: 1, kind: Kind.Noop, crc: 0, uploadId: null }, x], fates: [], commitHint: end },
    random: () => 0.5,
    now: 0,
  });
  run(r, { type: 'tick', now: 1 });
  t.is(r.fatesFrom, end);
  // A delayed head of an earlier attempt of the id x was appended under; its client knew commit end 0.
  const stale = run(r, { type: 'appendHead', reqId: 5, uploadId: 'ux', length: 10, crc: 7, acks: 'quorum', after: 0 });
  t.false(stale.some((e) => e.type === 'allocated'));
  t.like(replied(stale), { type: 'error', code: 'conflict', details: { state: 'forgotten', since: end } });
  // From a client that knows a commit end past what was forgotten, the same head is placed.
  const fresh = run(r, { type: 'appendHead', reqId: 6, uploadId: 'ux', length: 10, crc: 7, acks: 'quorum', after: end });
  t.true(fresh.some((e) => e.type === 'allocated'));
});
