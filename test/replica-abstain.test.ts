/**
 * A node that may have forgotten its votes and entries (a new or emptied data directory:
 * ReplicaInit.abstain) neither votes nor stands until it knows every peer's term and has
 * caught up to its leader's commit end. The simulator's wipe fault covers this at random
 * (planted bugs voteAfterWipe and voteBeforeCatchUp); these pin each rule by hand.
 */
import test from 'ava';
import type { Effect, Message, NodeId } from '../spec/messages.ts';
import { EMPTY, Harness, MEMBERS } from './helpers/replica-harness.ts';

const WIPED = { ...EMPTY, abstain: true, incarnation: 7 };

function sent(fx: Effect[], type: Message['type']): Message[] {
  return fx.flatMap((e) => (e.type === 'send' && e.msg.type === type ? [e.msg] : []));
}

/** A running cluster with a leader and a few committed entries, then `wiped` restarted empty. */
function clusterWithWipe(wiped: NodeId) {
  const h = new Harness();
  h.run(1000);
  const leader = h.leader()!;
  for (let i = 1; i <= 3; i++) h.append(leader.id, i, `u${i}`);
  h.run(100);
  h.start(wiped, WIPED);
  // Effects of its new life only.
  h.seen.set(wiped, []);
  return { h, leader };
}

test('it grants no vote and stands for nothing until every peer has told it its term', (t) => {
  // a voted for b in term 3 before its directory was emptied; b is still a candidate there.
  const h = new Harness({ b: { ...EMPTY, term: 3, votedFor: 'b' }, c: { ...EMPTY, term: 2 } });
  h.start('a', WIPED);
  const a = h.get('a');
  // c asks for a's vote in term 3, the term a may already have voted in.
  const fx = a.step({ type: 'message', from: 'c', msg: { type: 'vote', term: 3, pre: false, lastEnd: 0, lastTerm: 0 } });
  t.deepEqual(sent(fx, 'voteReply').map((m) => m.type === 'voteReply' && m.granted), [false], 'no vote in a term it may have voted in');
  const pre = a.step({ type: 'message', from: 'c', msg: { type: 'vote', term: 4, pre: true, lastEnd: 0, lastTerm: 0 } });
  t.deepEqual(sent(pre, 'voteReply').map((m) => m.type === 'voteReply' && m.granted), [false], 'no pre-vote either');
  // Time passes: it probes instead of standing for election.
  const ticks = a.step({ type: 'tick', now: 10_000 });
  t.deepEqual(sent(ticks, 'vote'), [], 'it does not stand');
  t.deepEqual(sent(ticks, 'probe').length, 2, 'it asks both peers for their terms');
  t.true(a.abstaining);
});

test('the highest term heard becomes its own, counted as voted in', (t) => {
  const h = new Harness({ b: { ...EMPTY, term: 3, votedFor: 'b' }, c: { ...EMPTY, term: 2 } });
  h.start('a', WIPED);
  h.cut.add('c');
  h.run(200);
  t.is(h.get('a').term, 0, 'one peer is not enough: c might be the candidate it voted for');
  h.cut.delete('c');
  h.step('a', { type: 'tick', now: h.now + 100 });
  h.deliver();
  const a = h.get('a');
  t.is(a.term, 3);
  t.is(a.votedFor, 'a', 'no second vote in term 3');
  const persisted = h.effects('a').filter((e) => e.type === 'persist').pop();
  t.deepEqual(persisted, { type: 'persist', term: 3, votedFor: 'a', abstain: true }, 'durably, and still abstaining: there is no leader to catch up with');
});

test('a probe answer meant for an earlier start of the node is ignored', (t) => {
  const h = new Harness({ b: { ...EMPTY, term: 5 }, c: { ...EMPTY, term: 5 } });
  h.start('a', WIPED);
  const a = h.get('a');
  for (const from of ['b', 'c']) a.step({ type: 'message', from, msg: { type: 'probeReply', term: 1, nonce: 6 } });
  t.is(a.term, 0, 'stale answers (nonce 6, not 7) count for nothing');
  for (const from of ['b', 'c']) a.step({ type: 'message', from, msg: { type: 'probeReply', term: 5, nonce: 7 } });
  t.is(a.term, 5);
});

test('it ignores appends until it knows the current term (the sender may be a deposed leader)', (t) => {
  const h = new Harness({ b: { ...EMPTY, term: 4 }, c: { ...EMPTY, term: 4 } });
  h.start('a', WIPED);
  const a = h.get('a');
  const fx = a.step({ type: 'message', from: 'c', msg: { type: 'append', term: 2, prevEnd: 0, prevTerm: 0, entries: [], commit: 0, seq: 1 } });
  t.deepEqual(fx, [], 'no reply that a deposed leader of term 2 could count');
  t.is(a.term, 0);
});

test('it follows and acknowledges, but votes only once it durably holds what its leader had committed', (t) => {
  const wiped = 'c';
  const { h, leader } = clusterWithWipe(wiped);
  h.unsynced.add(wiped);
  h.run(500);
  const c = h.get(wiped);
  t.is(c.term, leader.term, 'it knows the term');
  t.is(c.leader, leader.id, 'and follows the leader');
  t.is(c.writtenEnd, leader.end, 'it has the entries');
  t.true(c.abstaining, 'but not durably: it still abstains');
  const fx = c.step({ type: 'message', from: 'b', msg: { type: 'vote', term: leader.term + 1, pre: false, lastEnd: leader.end, lastTerm: leader.term } });
  t.false(sent(fx, 'voteReply').some((m) => m.type === 'voteReply' && m.granted));
  // Its disk catches up: the fdatasync it has been waiting on completes.
  h.unsynced.delete(wiped);
  h.step(wiped, { type: 'syncDone', upTo: c.writtenEnd, ok: true });
  h.append(leader.id, 9, 'u9');
  h.run(200);
  t.false(c.abstaining, 'durable at the commit end: it votes again');
  const persisted = h.effects(wiped).filter((e) => e.type === 'persist').pop();
  t.deepEqual(persisted, { type: 'persist', term: leader.term, votedFor: wiped }, 'durably, no longer abstaining');
});

test('a restart while abstaining abstains again', (t) => {
  const { h, leader } = clusterWithWipe('b');
  h.cut.add('b');
  h.run(50);
  const persisted = h.effects('b').filter((e) => e.type === 'persist');
  t.true(persisted.every((e) => e.type === 'persist' && e.abstain === true), 'every save says so, for the next start to read');
  h.cut.delete('b');
  h.start('b', { ...EMPTY, term: leader.term, abstain: true, incarnation: 8 });
  t.true(h.get('b').abstaining);
  h.run(500);
  t.false(h.get('b').abstaining, 'and stops once caught up');
  t.is(h.get('b').durableEnd, leader.end);
});

test('a new cluster whose every node starts abstaining elects a leader (every term heard is 0)', (t) => {
  const h = new Harness(Object.fromEntries(MEMBERS.map((id, i) => [id, { ...WIPED, incarnation: i + 1 }])));
  h.run(1000);
  t.truthy(h.leader());
  for (const id of MEMBERS) t.false(h.get(id).abstaining, id);
});

test('told the cluster is new (--new-cluster), a majority answering term 0 is enough; any higher term voids it', (t) => {
  const h = new Harness(Object.fromEntries(MEMBERS.map((id, i) => [id, { ...WIPED, newCluster: true, incarnation: i + 1 }])));
  h.cut.add('c');
  h.run(1000);
  t.truthy(h.leader(), 'a and b elect without c');
  // An emptied node wrongly started with the flag: its peers answer terms above 0.
  const stale = h.leader()!.term;
  h.start('a', { ...WIPED, newCluster: true, incarnation: 9 });
  const a = h.get('a');
  a.step({ type: 'message', from: 'b', msg: { type: 'probeReply', term: stale, nonce: 9 } });
  t.true(a.abstaining, 'b answered a term above 0: the cluster is not new, and c is not heard');
});

test('with a member silent, a new cluster elects no leader: nobody can know it never voted', (t) => {
  const h = new Harness(Object.fromEntries(MEMBERS.map((id, i) => [id, { ...WIPED, incarnation: i + 1 }])));
  h.cut.add('c');
  h.run(2000);
  t.is(h.leader(), undefined);
  h.cut.delete('c');
  h.run(1000);
  t.truthy(h.leader(), 'it comes once the member answers');
});

test('a leader still counting the forgotten acknowledgements: the node catches up past the leader\'s end, not only its commit end', (t) => {
  // Found by a second reader: the leader counts c's pre-wipe acknowledgement of u4 after
  // answering c's probe, so u4 commits above the commit end that answer gave.
  const h = new Harness();
  h.run(1000);
  const L = h.leader()!.id;
  const [B, C] = MEMBERS.filter((x) => x !== L);
  for (let i = 1; i <= 3; i++) h.append(L, i, `u${i}`);
  h.run(100);
  h.blocked.add(`${L}>${B}`).add(`${B}>${L}`);
  // u4 reaches c (durable there, acknowledged) while L's own fdatasync is pending.
  h.unsynced.add(L);
  h.append(L, 4, 'u4');
  h.run(30);
  const M = h.get(L).end;
  // c's directory is emptied: u4 is now only in L's page cache.
  h.uploads.delete('u4');
  h.net = h.net.filter((m) => m.from !== C && m.to !== C);
  h.start(C, { ...WIPED, incarnation: 99 });
  h.step(C, { type: 'tick', now: h.now });
  h.deliver(10_000, (m) => m.msg.type === 'probe' || m.msg.type === 'probeReply');
  // L's sync completes: it commits u4 counting c's old acknowledgement.
  h.unsynced.delete(L);
  h.step(L, { type: 'syncDone', upTo: h.get(L).writtenEnd, ok: true });
  t.true(h.get(L).commitEnd >= M, 'u4 is committed');
  h.now += 20;
  h.step(L, { type: 'tick', now: h.now });
  h.step(C, { type: 'tick', now: h.now });
  h.net = h.net.filter((m) => m.msg.type !== 'probe');
  h.deliver();
  const c = h.get(C);
  t.true(c.abstaining || c.durableEnd >= M, 'it votes only once it holds u4');
  // L goes; b and c elect, and u4 (in c's log only if c caught up) must survive.
  h.blocked.add(`${L}>${C}`).add(`${C}>${L}`);
  h.run(600);
  h.blocked.clear();
  h.run(500);
  for (const id of MEMBERS) t.true(h.get(id).commitEnd >= M, `${id} keeps u4 committed`);
});
