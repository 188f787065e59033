import test from 'ava';
import { BUG_NAMES, type BugName } from '../spec/bugs.ts';
import { run } from '../sim/runner.ts';

/**
 * A checker that cannot fail proves nothing: every planted bug (spec/bugs.ts) is caught by
 * the random sweep at a recorded seed (found with `loglog sim --seeds 1000 --bug NAME`), and
 * the same seed passes without the bug. commitOldTerm needs Raft's Figure 8, which the
 * figure-8 scenario stages (test/sim-scenarios.test.ts). Seeds that draw trims changed when
 * the simulated nodes began to delete their bytes: skipPrevCheck (liveness, was seed 2) and
 * noTornTailTruncation (replica-divergence, was seed 92) moved to seeds without trims.
 * Seeds that draw a wipe changed when wipes were added: trimAckAlone (was seed 2),
 * resetHoldingLog (was 549) and placeDuplicateIds (was 292) moved.
 */
const CAUGHT: { bug: BugName; seed: number; check: string; nodes?: number }[] = [
  { bug: 'ackBeforeFsync', seed: 1, check: 'commit-without-durable-majority' },
  { bug: 'commitWithoutMajority', seed: 1, check: 'commit-without-durable-majority' },
  { bug: 'skipPrevCheck', seed: 5, check: 'commit-without-durable-majority' },
  { bug: 'skipPrevCheck', seed: 6, check: 'liveness' },
  { bug: 'voteTwice', seed: 8, check: 'two-leaders' },
  { bug: 'readPastCommit', seed: 1, check: 'read-uncommitted' },
  { bug: 'noSuffixTruncation', seed: 3, check: 'replica-divergence' },
  { bug: 'noSuffixTruncation', seed: 15, check: 'commit-without-durable-majority' },
  { bug: 'noTornTailTruncation', seed: 235, check: 'replica-divergence' },
  { bug: 'noTornTailTruncation', seed: 72, check: 'commit-without-durable-majority' },
  // Exactly-once under resends (the appender sends again when the leader says "unknown").
  { bug: 'fateIgnoresForgotten', seed: 58, check: 'duplicate' },
  { bug: 'placeDuplicateIds', seed: 3167, check: 'duplicate' },
  // Rare on three nodes (none in seeds 1-8000 since the message pattern last changed).
  { bug: 'fateBeforeTermCommit', seed: 4048, check: 'failed-append-visible', nodes: 5 },
  // Trims (readers trim up to where they have read, in about a third of the seeds).
  { bug: 'trimAckAlone', seed: 4, check: 'trim-ack-without-majority' },
  // Nodes delete below their trim points; a follower left behind starts over (reset). A
  // catch-up reaches a follower that holds log past the leader's start rarely (on 3 nodes
  // seeds 828, 1201 and 1285 of 1-1500, since catch-ups wait for heartbeats below the start;
  // 2 of 1-400 on 5 nodes: 210, 333).
  { bug: 'resetHoldingLog', seed: 828, check: 'reset-dropped-committed' },
  { bug: 'resetHoldingLog', seed: 210, check: 'reset-dropped-committed', nodes: 5 },
  // A data directory emptied (in 30% of the seeds): the node must abstain until it knows
  // every term (else it votes twice in one) and then until it has caught up (else it votes
  // with a log that lost committed entries, and a leader without them is elected).
  { bug: 'voteAfterWipe', seed: 44, check: 'two-leaders' },
  { bug: 'voteBeforeCatchUp', seed: 136, check: 'truncated-committed' },
];

for (const c of CAUGHT) {
  test(`${c.bug} is caught by ${c.check} at seed ${c.seed}${c.nodes ? ` on ${c.nodes} nodes` : ''}`, (t) => {
    const bad = run(c.seed, { bugs: [c.bug], nodes: c.nodes });
    t.is(bad.verdict, 'fail');
    t.is(bad.violations[0]?.check, c.check, bad.violations.map((v) => `${v.check}: ${v.message}`).join('\n'));
    t.log(`${bad.violations[0].check}: ${bad.violations[0].message}`);
    const good = run(c.seed, { nodes: c.nodes });
    t.deepEqual(good.violations, [], 'the same seed passes without the bug');
  });
}

test('every planted bug has a recorded catch', (t) => {
  const covered = new Set<string>([...CAUGHT.map((c) => c.bug), 'commitOldTerm']);
  for (const b of BUG_NAMES) t.true(covered.has(b), b);
});
