/**
 * Multi-replica cases the simulator found, replayed by hand on the real replica: each test
 * pins one fix in spec/replica.ts (see the commit log).
 */
import test from 'ava';
import { Replica, DEFAULT_CONFIG, type ReplicaInit } from '../spec/replica.ts';
import type { Effect, NodeId } from '../spec/messages.ts';
import type { EntryMeta } from '../spec/entry.ts';
import { Kind, frameSize } from '../spec/frame.ts';
import { EMPTY, Harness, MEMBERS, noop } from './helpers/replica-harness.ts';

test('a node behind in terms but ahead in log and a node ahead in terms elect a leader (pre-vote denial carries the term)', (t) => {
  // a: term 1, log [noop t1, noop t1]; c: term 2 (voted for b), log [noop t1]; b is gone.
  const n = frameSize(0);
  const h = new Harness({
    a: { term: 1, votedFor: 'a', start: 0, end: 2 * n, epochs: [{ term: 1, offset: 0 }], tail: [noop(0, 1), noop(n, 1)] },
    c: { term: 2, votedFor: 'b', start: 0, end: n, epochs: [{ term: 1, offset: 0 }], tail: [noop(0, 1)] },
  });
  h.cut.add('b');
  h.run(2000);
  const l = h.leader();
  t.truthy(l, 'a leader is elected');
  t.is(l?.id, 'a', 'the node with the longer log wins');
  t.true(l!.term > 2);
});

test('a new leader drops entries it holds only as metadata (their bytes may exist nowhere)', (t) => {
  const h = new Harness();
  h.run(1000);
  const old = h.leader()!;
  t.truthy(old);
  // An append whose body reaches the leader but whose uploads reach nobody.
  h.step(old.id, { type: 'appendHead', reqId: 1, uploadId: 'lost', length: 10, crc: 5, acks: 'quorum' });
  h.step(old.id, { type: 'bodyDone', reqId: 1, ok: true, crc: 5 });
  h.deliver();
  const followers = MEMBERS.filter((id) => id !== old.id).map((id) => h.get(id));
  const offset = old.end - frameSize(10);
  for (const f of followers) t.is(f.end, old.end, 'followers hold the entry metadata');
  for (const f of followers) t.is(f.writtenEnd, offset, '... but not its bytes');
  // The old leader dies with the only copy.
  h.cut.add(old.id);
  h.run(3000);
  const l = h.leader();
  t.truthy(l && l.id !== old.id, 'a new leader is elected');
  t.is(l!.commitEnd, l!.end, 'and commits: it is not stuck on the unobtainable entry');
  t.is(l!.end, offset + frameSize(0), 'its noop replaced the entry');
});

test('a leader keeps fetching the bytes of a committed entry it received as a follower', (t) => {
  const h = new Harness();
  h.run(1000);
  const old = h.leader()!;
  const f = MEMBERS.find((id) => id !== old.id)!;
  // The entry reaches the third node (its upload is there) but not f.
  h.cut.add(f);
  h.uploads.add('u1');
  h.step(old.id, { type: 'appendHead', reqId: 1, uploadId: 'u1', length: 10, crc: 5, acks: 'quorum' });
  h.step(old.id, { type: 'bodyDone', reqId: 1, ok: true, crc: 5 });
  h.deliver();
  h.run(50);
  const committed = old.commitEnd;
  t.is(committed, old.end);
  // f learns the entry and its commit, but its upload never comes.
  h.uploads.delete('u1');
  h.cut.delete(f);
  h.run(30);
  t.is(h.get(f).commitEnd, committed);
  t.true(h.get(f).writtenEnd < committed);
  // The old leader goes; f wins (with `other`'s vote) while still lacking the bytes.
  h.cut.add(old.id);
  for (let i = 0; i < 400 && h.get(f).role !== 'leader'; i++) h.run(5);
  if (h.get(f).role !== 'leader') { t.pass('f did not win this election; nothing to check'); return; }
  const before = h.effects(f).length;
  h.run(300);
  const fetches = h.effects(f).slice(before).filter((e) => e.type === 'fetch');
  t.true(fetches.length > 0, 'the leader fetches the missing payload');
  t.true(fetches.every((e) => e.type === 'fetch' && e.peer !== f), 'never from itself');
});

test('a stale catch-up instruction does not truncate entries that match the leader', (t) => {
  const n = frameSize(0);
  const tail = [noop(0, 1), noop(n, 1), noop(2 * n, 1), noop(3 * n, 1)];
  const h = new Harness({ c: { term: 1, votedFor: 'a', start: 0, end: 4 * n, epochs: [{ term: 1, offset: 0 }], tail } });
  const c = h.get('c');
  // A catch-up to 2n, sent before c had caught up to 4n, arrives late.
  h.step('c', { type: 'message', from: 'a', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 2 * n, seq: 1, catchUp: { to: 2 * n, epochs: [{ term: 1, offset: 0 }] } } });
  t.false(h.effects('c').some((e) => e.type === 'truncate'), 'nothing is truncated');
  t.is(c.end, 4 * n);
  t.is(c.commitEnd, 2 * n);
  const reply = h.effects('c').filter((e) => e.type === 'send').pop();
  t.true(reply?.type === 'send' && reply.msg.type === 'appendReply' && reply.msg.ok);
});

test('a catch-up instruction still drops a divergent suffix below its target', (t) => {
  const n = frameSize(0);
  // c's entries from n on are of term 1; the leader's log has term 2 from n.
  const tail = [noop(0, 1), noop(n, 1), noop(2 * n, 1)];
  const h = new Harness({ c: { term: 2, votedFor: 'a', start: 0, end: 3 * n, epochs: [{ term: 1, offset: 0 }], tail } });
  h.step('c', { type: 'message', from: 'a', msg: { type: 'append', term: 2, prevEnd: n, prevTerm: 1, entries: [], commit: 0, seq: 1, catchUp: { to: 4 * n, epochs: [{ term: 1, offset: 0 }, { term: 2, offset: n }] } } });
  const fx = h.effects('c');
  t.deepEqual(fx.filter((e) => e.type === 'truncate'), [{ type: 'truncate', to: n }]);
  t.deepEqual(fx.filter((e) => e.type === 'copy'), [{ type: 'copy', peer: 'a', start: n, to: 4 * n, term: 2 }]);
});

test('a restarted leader catches up followers below its metadata window although nothing is committed yet', (t) => {
  // After a whole-cluster restart nothing is known to be committed (commit = start); the
  // leader's recovered window starts at its last entry, the followers hold nothing.
  const n = frameSize(0);
  const tail = [noop(3 * n, 1)];
  const h = new Harness({ a: { term: 1, votedFor: 'a', start: 0, end: 4 * n, epochs: [{ term: 1, offset: 0 }], tail } });
  h.run(2000);
  const a = h.get('a');
  t.is(a.role, 'leader');
  const copies = [...h.effects('b'), ...h.effects('c')].filter((e) => e.type === 'copy');
  t.true(copies.length > 0 && copies.every((e) => e.type === 'copy' && e.to >= 3 * n), 'followers copy the frames below the window');
  t.is(a.commitEnd, a.end, 'and the leader commits');
  t.is(h.get('b').commitEnd, a.end);
  const catchUps = h.effects('a').filter((e) => e.type === 'send' && e.msg.type === 'append' && e.msg.catchUp).length;
  t.true(catchUps < 50, `catch-up instructions do not bounce back and forth (${catchUps} sent)`);
});

// ------------------------------------------------------------------ follower acknowledgements

/** Follower f of leader x (members x, f, z), empty in term 1 unless `init` says otherwise. */
function follower(maxBatchEntries = DEFAULT_CONFIG.maxBatchEntries, init: ReplicaInit = { ...EMPTY, term: 1 }): Replica {
  return new Replica({ config: { ...DEFAULT_CONFIG, id: 'f', members: ['x', 'f', 'z'], maxBatchEntries }, init, random: () => 0.5, now: 0 });
}
const sends = (fx: Effect[]) => fx.flatMap((e) => (e.type === 'send' && e.msg.type === 'appendReply' ? [e.msg] : []));

test('a follower acknowledges new entries once durable; heartbeat rounds and empty messages at once', (t) => {
  const f = follower();
  t.is(sends(f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq: 1 } })).length, 1, 'a heartbeat is answered at once');
  // Same round, a new entry: no answer until it is durable.
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [noop(0, 1)], commit: 0, seq: 1 } });
  t.is(sends(fx).length, 0, 'no non-durable acknowledgement');
  const w = fx.find((e) => e.type === 'write')!;
  const s = f.step({ type: 'writeDone', seq: (w as { seq: number }).seq }).find((e) => e.type === 'sync') as { upTo: number };
  const acks = sends(f.step({ type: 'syncDone', upTo: s.upTo, ok: true }));
  t.deepEqual(acks.map((m) => [m.ok, m.end]), [[true, frameSize(0)]], 'the durable acknowledgement carries the new end');
  // A new round that also carries an entry is answered at once (check-quorum, read index).
  const next = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: frameSize(0), prevTerm: 1, entries: [noop(frameSize(0), 1)], commit: 0, seq: 2 } });
  t.deepEqual(sends(next).map((m) => m.seq), [2]);
});

test('heartbeat rounds count per term: a leader elected again starts over and is answered', (t) => {
  const f = follower();
  for (let seq = 1; seq <= 500; seq++) f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq } });
  // x leads again in term 2 (f never saw the vote); its rounds restart at 1.
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 2, prevEnd: 0, prevTerm: 0, entries: [noop(0, 2)], commit: 0, seq: 1 } });
  t.deepEqual(sends(fx).map((m) => m.seq), [1], 'round 1 of the new term is answered at once');
  const w = fx.find((e) => e.type === 'write') as { seq: number };
  const s = f.step({ type: 'writeDone', seq: w.seq }).find((e) => e.type === 'sync') as { upTo: number };
  const acks = sends(f.step({ type: 'syncDone', upTo: s.upTo, ok: true }));
  t.true(acks.every((m) => m.seq <= 1), `no acknowledgement claims a round of the old term (${acks.map((m) => m.seq)})`);
});

test('a full batch is answered at once, so a follower that is behind gets the next one without waiting for its disk', (t) => {
  const f = follower(2);
  f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq: 1 } });
  const full = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [noop(0, 1), noop(frameSize(0), 1)], commit: 0, seq: 1 } });
  t.deepEqual(sends(full).map((m) => [m.ok, m.end]), [[true, 0]], 'answered at once, with the old durable end');
  const partial = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 2 * frameSize(0), prevTerm: 1, entries: [noop(2 * frameSize(0), 1)], commit: 0, seq: 1 } });
  t.is(sends(partial).length, 0, 'a batch that is not full waits for durability');
});

test('a node does not stand for election while it copies frames, and does once the copy ends', (t) => {
  const f = follower();
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq: 1, catchUp: { to: 10_000, epochs: [{ term: 1, offset: 0 }], start: 0 } } });
  t.true(fx.some((e) => e.type === 'copy'), 'the copy starts');
  const votes = (effects: Effect[]) => effects.filter((e) => e.type === 'send' && e.msg.type === 'vote').length;
  t.is(votes(f.step({ type: 'tick', now: 60_000 })), 0, 'the leader went quiet, but a copy is running');
  f.step({ type: 'copyDone', start: 0, to: 0, epochs: [], ok: false });
  t.true(votes(f.step({ type: 'tick', now: 120_000 })) > 0, 'after the copy it stands');
});

test('an entry the client sends no copies of is fetched at once; one with copies waits for its upload', (t) => {
  const data = (offset: number, uploadId: string, copies?: false): EntryMeta => ({ offset, length: 10, term: 1, kind: Kind.Data, crc: 5, uploadId, ...(copies === false ? { copies } : {}) });
  // The leader marks the entry when the client says it uploads none.
  const h = new Harness();
  h.run(1000);
  const leader = h.leader()!;
  const allocated = h.get(leader.id).step({ type: 'appendHead', reqId: 1, uploadId: 'u0', length: 10, crc: 5, acks: 'quorum', copies: false });
  t.deepEqual(allocated.flatMap((e) => (e.type === 'allocated' ? [e.meta.copies] : [])), [false]);

  const f = follower();
  f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq: 1 } });
  const missing = (fx: Effect[]) => fx.flatMap((e) => (e.type === 'write' ? [{ type: 'writeFailed' as const, seq: e.seq, reason: 'missing' as const }] : []));
  // With copies on their way: the upload is missing, and the follower waits for it.
  const [w1] = missing(f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [data(0, 'u1')], commit: 0, seq: 1 } }));
  t.false(f.step(w1).some((e) => e.type === 'fetch'), 'waits for the client copy');
  // Without: fetched from the leader in the same step.
  const [w2] = missing(f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: frameSize(10), prevTerm: 1, entries: [data(frameSize(10), 'u2', false)], commit: 0, seq: 1 } }));
  const fetches = f.step(w2).filter((e) => e.type === 'fetch');
  t.deepEqual(fetches.map((e) => e.type === 'fetch' && [e.meta.uploadId, e.peer]), [['u2', 'x']]);
});

test('a follower does not answer "unknown" for an upload id (a client resends on it): it points to the leader; the leader does answer it', (t) => {
  const f = follower();
  f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq: 1 } });
  const reply = f.step({ type: 'fate', reqId: 9, uploadId: 'never-seen' }).find((e) => e.type === 'reply');
  t.like(reply && reply.type === 'reply' ? reply.result : null, { type: 'error', code: 'not_leader', details: { leader: 'x' } });

  const one = new Replica({ config: { ...DEFAULT_CONFIG, id: 'n1', members: ['n1'] }, init: EMPTY, random: () => 0.5, now: 0 });
  const elected = one.step({ type: 'tick', now: 1 });
  t.is(one.role, 'leader');
  const ask = (after?: number) => {
    const r = one.step({ type: 'fate', reqId: 3, uploadId: 'never-seen', after }).find((e) => e.type === 'reply');
    return r && r.type === 'reply' ? r.result : null;
  };
  // Not before its term's first entry (the noop) commits: an older leader's entry might still.
  t.like(ask(), { type: 'error', code: 'unavailable' });
  for (const e of elected) if (e.type === 'write') one.step({ type: 'writeDone', seq: e.seq });
  one.step({ type: 'syncDone', upTo: one.end, ok: true });
  t.deepEqual(ask(), { type: 'fate', state: 'unknown' });
});

test('an acks=all append that stays committed without every replica is answered "unconfirmed" after allAckTimeoutMs, naming the missing replica; an uncommitted one never is', (t) => {
  const replyTo = (h: Harness, id: NodeId, reqId: number) => h.effects(id).flatMap((e) => (e.type === 'reply' && e.reqId === reqId ? [e.result] : []));
  const h = new Harness();
  h.run(1000);
  const leader = h.leader()!.id;
  const [down, up] = MEMBERS.filter((id) => id !== leader);
  h.uploads.add('all-1');
  h.cut.add(down);
  h.step(leader, { type: 'appendHead', reqId: 1, uploadId: 'all-1', length: 10, crc: 5, acks: 'all' });
  h.step(leader, { type: 'bodyDone', reqId: 1, ok: true, crc: 5 });
  h.run(100);
  t.true(h.get(leader).commitEnd >= h.get(up).commitEnd && h.get(leader).commitEnd > 0, 'committed by the leader and one follower');
  t.deepEqual(replyTo(h, leader, 1), [], 'no answer before the timeout');
  h.run(DEFAULT_CONFIG.allAckTimeoutMs);
  const [r] = replyTo(h, leader, 1);
  t.like(r, { type: 'error', code: 'unconfirmed', details: { missing: [down] } });
  const offset = r?.type === 'error' ? r.details?.offset : undefined;
  t.is(typeof offset, 'number');
  t.is(r?.type === 'error' ? r.details?.end : undefined, (offset as number) + frameSize(10));

  // With both followers cut off, nothing commits: no "unconfirmed" (the leader steps down instead).
  h.cut.add(up);
  h.uploads.add('all-2');
  h.step(leader, { type: 'appendHead', reqId: 2, uploadId: 'all-2', length: 10, crc: 5, acks: 'all' });
  h.step(leader, { type: 'bodyDone', reqId: 2, ok: true, crc: 5 });
  h.run(DEFAULT_CONFIG.allAckTimeoutMs + 500);
  t.notDeepEqual(replyTo(h, leader, 2).map((x) => x.type === 'error' && x.code), ['unconfirmed']);
});

test('a follower that lost acknowledged frames (an emptied data directory, a recovery cut) is caught up again by the same leader', (t) => {
  const h = new Harness();
  h.run(1000);
  const leader = h.leader()!;
  for (let i = 1; i <= 5; i++) h.append(leader.id, i, `u${i}`, 'all');
  h.run(200);
  const [lost] = MEMBERS.filter((id) => id !== leader.id);
  t.is(h.get(lost).durableEnd, leader.end, 'every replica held the entries');
  // Its log gone, it comes back knowing the leader's term (a vote it cannot recall is another matter).
  h.start(lost, { ...EMPTY, term: leader.term });
  h.run(1000);
  t.is(h.leader(), leader, 'the same leader stays');
  t.is(h.get(lost).durableEnd, leader.end, 'and brings the follower back to its end');
  t.is(h.get(lost).commitEnd, leader.commitEnd);
});

test('a fetch that keeps failing alternates between the leader and each other peer in turn', (t) => {
  const data: EntryMeta = { offset: 0, length: 10, term: 1, kind: Kind.Data, crc: 5, uploadId: 'u1', copies: false };
  // f's peers are x and z, in that order; z leads (so peers[odd % 2] would always be z).
  const f = new Replica({ config: { ...DEFAULT_CONFIG, id: 'f', members: ['x', 'f', 'z'] }, init: { ...EMPTY, term: 1 }, random: () => 0.5, now: 0 });
  const fx = f.step({ type: 'message', from: 'z', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [data], commit: 0, seq: 1 } });
  const write = fx.find((e) => e.type === 'write');
  let out = f.step({ type: 'writeFailed', seq: write!.type === 'write' ? write!.seq : 0, reason: 'missing' });
  const peers: string[] = [];
  for (let now = 0; peers.length < 6; now += DEFAULT_CONFIG.heartbeatMs) {
    for (const e of out) {
      if (e.type !== 'fetch') continue;
      peers.push(e.peer);
      out = f.step({ type: 'writeFailed', seq: e.seq, reason: 'corrupt' });
    }
    if (!out.some((e) => e.type === 'fetch')) out = f.step({ type: 'tick', now });
  }
  t.deepEqual(peers, ['z', 'x', 'z', 'x', 'z', 'x']);
});

/** What `id` answered to request `reqId`, if it has. */
function answer(h: Harness, id: NodeId, reqId: number) {
  const e = h.effects(id).find((x) => x.type === 'reply' && x.reqId === reqId);
  return e?.type === 'reply' ? e.result : undefined;
}

/** A leader with a few committed entries, and the commit end to trim at. */
function withEntries(h: Harness): { leader: Replica; before: number } {
  h.run(1000);
  const leader = h.leader()!;
  for (let i = 1; i <= 3; i++) h.append(leader.id, 100 + i, `t${i}`, 'all');
  h.run(200);
  return { leader, before: leader.commitEnd };
}

test('a trim is answered once a majority holds its point durably, and each holder saved it before saying so', (t) => {
  const h = new Harness();
  const { leader, before } = withEntries(h);
  const [b, c] = MEMBERS.filter((id) => id !== leader.id);
  h.cut.add(b).add(c);
  h.step(leader.id, { type: 'trim', reqId: 1, before });
  h.run(100);
  t.is(answer(h, leader.id, 1), undefined, 'the leader alone holds it: no answer');
  t.is(leader.trimPoint, before);
  h.cut.delete(b);
  h.run(100);
  t.deepEqual(answer(h, leader.id, 1), { type: 'trimmed', start: 0 });
  t.is(h.get(b).trimPoint, before);
  t.is(h.get(c).trimPoint, 0, 'the cut-off follower has not heard of it');
  // b's trim effect comes before the first reply that reports the point.
  const fx = h.effects(b);
  const saved = fx.findIndex((e) => e.type === 'trim' && e.before === before);
  const told = fx.findIndex((e) => e.type === 'send' && e.msg.type === 'appendReply' && e.msg.trimTo === before);
  t.true(saved >= 0 && told > saved, `trim effect at ${saved}, first report at ${told}`);
  h.cut.delete(c);
  h.run(100);
  t.is(h.get(c).trimPoint, before, 'and the last follower takes it up once it is back');
});

test('a trim is refused past the commit end and by a follower; one whose leader lost its majority fails not_leader', (t) => {
  const h = new Harness();
  const { leader, before } = withEntries(h);
  const follower = MEMBERS.find((id) => id !== leader.id)!;
  h.step(follower, { type: 'trim', reqId: 1, before });
  t.like(answer(h, follower, 1), { type: 'error', code: 'not_leader', details: { leader: leader.id } });
  h.step(leader.id, { type: 'trim', reqId: 2, before: before + 1 });
  t.like(answer(h, leader.id, 2), { type: 'error', code: 'out_of_range', details: { end: before } });
  t.is(leader.trimPoint, 0);
  for (const id of MEMBERS) if (id !== leader.id) h.cut.add(id);
  h.step(leader.id, { type: 'trim', reqId: 3, before });
  h.run(1000);
  t.is(leader.role, 'follower');
  t.like(answer(h, leader.id, 3), { type: 'error', code: 'not_leader' });
});

test('an acknowledged trim outlives its leader: the next leader takes it up from the follower that holds it', (t) => {
  const h = new Harness();
  const { leader, before } = withEntries(h);
  const [b, c] = MEMBERS.filter((id) => id !== leader.id);
  h.cut.add(c);
  h.step(leader.id, { type: 'trim', reqId: 1, before });
  h.run(50);
  t.like(answer(h, leader.id, 1), { type: 'trimmed' });
  // The old leader is gone for good; c, which never heard of the trim, comes back.
  h.cut.delete(c);
  h.cut.add(leader.id);
  h.run(2000);
  const next = h.leader()!;
  t.not(next.id, leader.id);
  t.is(h.get(b).trimPoint, before);
  t.is(h.get(c).trimPoint, before);
});

test('a node restarted with a saved trim point above its start carries on deleting toward it', (t) => {
  const r = new Replica({ config: { ...DEFAULT_CONFIG, id: 'a', members: MEMBERS }, init: { ...EMPTY, trimPoint: 500 }, random: () => 0.5, now: 0 });
  t.is(r.trimPoint, 500);
  t.deepEqual(r.step({ type: 'tick', now: 1 }).filter((e) => e.type === 'trim'), [{ type: 'trim', before: 500 }]);
  t.deepEqual(r.step({ type: 'tick', now: 2 }).filter((e) => e.type === 'trim'), [], 'asked once');
});

test('a follower holding entries whose bytes every peer has since deleted starts over at the leader\'s start', (t) => {
  // c takes the entries' metadata but never gets their payloads (its uploads are lost and
  // its fetches go unanswered). a and b commit them, and a client trims them away: no peer
  // can serve them any more. Before the fix c acknowledged an end below the leader's start
  // forever (an ok answer never sent it to catch-up, and a catch-up only restarted a log
  // whose *end* lay below the leader's start), so it never held the log again.
  const h = new Harness();
  h.deletes = true;
  h.run(1000);
  const leader = h.leader()!;
  const c = MEMBERS.find((id) => id !== leader.id)!;
  h.starved.add(c);
  for (let i = 1; i <= 3; i++) h.append(leader.id, 100 + i, `s${i}`);
  h.run(200);
  const f = h.get(c);
  t.is(f.end, leader.end, 'c holds the metadata');
  t.true(f.writtenEnd < leader.commitEnd, 'but not the bytes');
  const before = leader.commitEnd;
  h.step(leader.id, { type: 'trim', reqId: 1, before });
  h.run(200);
  t.like(answer(h, leader.id, 1), { type: 'trimmed', start: before });
  t.is(leader.start, before, 'the leader deleted everything below the trim point');
  h.run(1000);
  t.deepEqual(h.effects(c).flatMap((e) => (e.type === 'reset' ? [e.to] : [])), [before], 'c started over at the leader\'s start');
  t.is(f.start, before);
  t.is(f.writtenEnd, leader.end, 'and copied the log from there');
  t.is(f.commitEnd, leader.commitEnd);
});

test('a follower whose log diverges from the leader\'s below the leader\'s start, and not below its own commit, starts over at that start', (t) => {
  // f holds [noop t1][noop t2][noop t2] (the t2 ones from a leader that lost): only the first
  // is committed. Leader x (term 3) has [noop t1][noop t3]... and deleted everything below
  // 2n. It cannot send from below its start, and f cannot accept at 2n (its term there is
  // 2, not 3): before the fix f answered no, x clamped its next index to its start and sent
  // the same catch-up again at once, a message storm that never ended (sim seed 41, 5 nodes).
  const n = frameSize(0);
  const f = follower(undefined, { term: 2, votedFor: null, start: 0, end: 3 * n, epochs: [{ term: 1, offset: 0 }, { term: 2, offset: n }], tail: [noop(0, 1), noop(n, 2), noop(2 * n, 2)] });
  const epochs = [{ term: 1, offset: 0 }, { term: 3, offset: n }];
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 3, prevEnd: 2 * n, prevTerm: 3, entries: [], commit: 4 * n, seq: 1, catchUp: { to: 4 * n, epochs, start: 2 * n } } });
  t.deepEqual(fx.filter((e) => e.type === 'reset'), [{ type: 'reset', to: 2 * n, epochs }], 'f drops its divergent suffix and starts over at the leader\'s start, with its terms below');
  t.deepEqual(fx.flatMap((e) => (e.type === 'copy' ? [[e.start, e.to]] : [])), [[2 * n, 4 * n]], 'and copies from there');
  t.deepEqual(sends(fx).map((m) => m.ok), [true], 'instead of refusing the catch-up');
  t.is(f.termBefore(2 * n), 3, 'the leader\'s terms below the start');
});

test('a catch-up does not restart a follower that shares the leader\'s log up to the leader\'s start', (t) => {
  const n = frameSize(0);
  const f = follower(undefined, { term: 3, votedFor: null, start: 0, end: 3 * n, epochs: [{ term: 1, offset: 0 }, { term: 3, offset: n }], tail: [noop(0, 1), noop(n, 3), noop(2 * n, 3)] });
  const epochs = [{ term: 1, offset: 0 }, { term: 3, offset: n }];
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 3, prevEnd: 3 * n, prevTerm: 3, entries: [], commit: 4 * n, seq: 1, catchUp: { to: 4 * n, epochs, start: 2 * n } } });
  t.deepEqual(fx.filter((e) => e.type === 'reset' || e.type === 'truncate'), [], 'it keeps its log');
  t.deepEqual(fx.flatMap((e) => (e.type === 'copy' ? [[e.start, e.to]] : [])), [[3 * n, 4 * n]], 'and copies what it lacks');
});

test('a follower that starts over at the leader\'s start saves it as its trim point before any answer reports it', (t) => {
  // Its answers report max(trim point, start) as its trim point, and a leader counts that
  // toward the majority an acknowledged trim needs. A reset's own durability is the file
  // system's (the server unlinks the old segments without an fsync of the directory), so the
  // point must be in the trim-point file first (sim seed 617, 3 nodes: a trim acknowledged
  // by a leader that counted a follower which had only reset to it).
  const n = frameSize(0);
  const f = follower();
  const epochs = [{ term: 1, offset: 0 }];
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: 2 * n, prevTerm: 1, entries: [], commit: 4 * n, seq: 1, catchUp: { to: 4 * n, epochs, start: 2 * n } } });
  const reset = fx.findIndex((e) => e.type === 'reset');
  const saved = fx.findIndex((e) => e.type === 'trim' && e.before === 2 * n);
  const told = fx.findIndex((e) => e.type === 'send' && e.msg.type === 'appendReply' && (e.msg.trimTo ?? 0) >= 2 * n);
  t.true(reset >= 0, 'it starts over');
  t.true(saved > reset, `the trim point is saved after the reset (reset at ${reset}, trim at ${saved})`);
  t.true(told > saved, `and before the first answer that reports it (at ${told})`);
  t.is(f.trimPoint, 2 * n);
});

test('a stale catch-up from below a follower\'s start drops nothing (its terms below the start may be unknown)', (t) => {
  // f started over at 2n (reset), then restarted: its epochs file has no term below 2n, so
  // termAt says 0 there. A catch-up still on the wire from before, at prevEnd n, compared
  // terms from n and found them "different": it truncated the committed log at n and threw
  // (sim seed 1140, 3 nodes). Below its start a node holds nothing that could diverge.
  const n = frameSize(0);
  const f = follower(undefined, { term: 1, votedFor: null, start: 2 * n, end: 4 * n, epochs: [{ term: 1, offset: 2 * n }], tail: [noop(2 * n, 1), noop(3 * n, 1)], commitHint: 4 * n });
  t.is(f.commitEnd, 4 * n);
  const epochs = [{ term: 1, offset: 0 }];
  let fx: Effect[] = [];
  t.notThrows(() => { fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 1, prevEnd: n, prevTerm: 1, entries: [], commit: 3 * n, seq: 1, catchUp: { to: 3 * n, epochs, start: n } } }); });
  t.deepEqual(fx.filter((e) => e.type === 'truncate' || e.type === 'reset' || e.type === 'copy'), [], 'it keeps its log and copies nothing');
  t.is(f.end, 4 * n);
});

test('a node that started over at a leader\'s start keeps the terms below it across a restart, and votes by them', (t) => {
  // The committed log: [noop t1][noop t2][noop t2], trimmed below 3n. f starts over at 3n
  // and restarts before copying anything. Its epochs came back empty (the reset emptied the
  // epochs file), so its last term read 0, and it granted its vote to a candidate whose log
  // ends at n in term 1, which lacks the committed t2 entries: elected with f's vote and
  // its own, that candidate would lose them. The reset effect now carries the terms below
  // the start, for the executor to keep in its epochs file.
  const n = frameSize(0);
  const f = follower();
  const leaderEpochs = [{ term: 1, offset: 0 }, { term: 2, offset: n }];
  const fx = f.step({ type: 'message', from: 'x', msg: { type: 'append', term: 2, prevEnd: 3 * n, prevTerm: 2, entries: [], commit: 3 * n, seq: 1, catchUp: { to: 3 * n, epochs: leaderEpochs, start: 3 * n } } });
  const reset = fx.find((e) => e.type === 'reset');
  t.truthy(reset);
  const kept = reset?.type === 'reset' ? (reset as { epochs?: { term: number; offset: number }[] }).epochs ?? [] : [];
  t.deepEqual(kept, leaderEpochs, 'the reset carries the leader\'s terms below the start');
  // The restart: the log is empty at 3n; the epochs are what the executor kept.
  const again = follower(undefined, { term: 2, votedFor: null, start: 3 * n, end: 3 * n, epochs: kept, tail: [] });
  t.is(again.lastTerm(), 2);
  const vote = again.step({ type: 'message', from: 'z', msg: { type: 'vote', term: 3, pre: false, lastEnd: n, lastTerm: 1 } });
  t.deepEqual(vote.flatMap((e) => (e.type === 'send' && e.msg.type === 'voteReply' ? [e.msg.granted] : [])), [false], 'no vote for a log that lacks committed entries');
});

test('a follower that has written past the leader\'s start but holds it durably below is sent to catch-up on heartbeats, not on every acknowledgement', (t) => {
  // c writes every entry, but its fdatasyncs hang: it acknowledges an end below the leader's
  // start after a trim. Each acknowledgement of a catch-up instruction came at once, and
  // the leader answered each with another instruction: a message storm (sim seed 1760, 3 nodes).
  const h = new Harness();
  h.deletes = true;
  h.run(1000);
  const leader = h.leader()!;
  const c = MEMBERS.find((id) => id !== leader.id)!;
  h.unsynced.add(c);
  const append = (i: number) => h.append(leader.id, 100 + i, `u${i}`);
  for (let i = 1; i <= 3; i++) append(i);
  h.run(200);
  const before = leader.commitEnd;
  h.step(leader.id, { type: 'trim', reqId: 1, before });
  h.run(200);
  t.is(leader.start, before);
  t.true(h.get(c).writtenEnd >= before && h.get(c).durableEnd < before, 'c has written past the start, but synced below it');
  for (let i = 4; i <= 5; i++) append(i);
  const sent = () => h.effects(leader.id).filter((e) => e.type === 'send' && e.to === c && e.msg.type === 'append' && e.msg.catchUp).length;
  const was = sent();
  h.run(200);
  // Ten heartbeats in 200 ms: an instruction with each, and a few more, not thousands.
  t.true(sent() - was <= 20, `${sent() - was} catch-up instructions in 200 ms`);
  t.is(leader.commitEnd, leader.end, 'the others go on committing');
});
