/**
 * A member whose data directory is emptied (a replaced disk) comes back with nothing. It must
 * not vote until it knows every member's term and holds what the leader committed (spec
 * ReplicaInit.abstain): with one member down it cannot know that, and it waits; once that
 * member is back it catches up, votes again, and every acknowledged append is intact.
 */
import test from 'ava';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Cluster, until } from './helpers/cluster.ts';
import { History, startWorkload, verifyCluster } from './helpers/history.ts';

test('an emptied follower abstains while a member is down, then catches up and votes again; no acknowledged append is lost', async (t) => {
  const cluster = await Cluster.start(t);
  const history = new History();
  const work = startWorkload(cluster, history, { name: 'before', clients: 2 });
  await until('100 appends acknowledged', 30_000, () => (work.load.ok >= 100 ? true : undefined));
  await work.stop();
  const leader = await cluster.waitLeader();
  const [wiped, other] = cluster.nodes.filter((n) => n !== leader);
  await other.kill();
  await wiped.kill();
  await rm(wiped.dataDir, { recursive: true, force: true });
  await mkdir(wiped.dataDir, { recursive: true });
  await wiped.start();

  const s = await until(`${wiped.id} to report abstaining`, 10_000, async () => (await wiped.status()) ?? undefined);
  t.true(s.abstaining, 'it does not vote: it cannot hear the term of the member that is down');
  t.regex(wiped.log, /has no saved vote/, 'and its log says why');
  const hard = JSON.parse(await readFile(join(wiped.dataDir, 'hardstate'), 'utf8').catch(() => '{"abstain":true}'));
  t.true(hard.abstain, 'a restart now would abstain again');

  await other.start();
  const back = await until(`${wiped.id} to vote again`, 30_000, async () => {
    const st = await wiped.status();
    return st && st.abstaining === false ? st : undefined;
  });
  t.is(back.role === 'leader' || back.role === 'follower', true);
  t.regex(wiped.log, /votes again/);
  t.false(JSON.parse(await readFile(join(wiped.dataDir, 'hardstate'), 'utf8')).abstain === true, 'saved: a restart votes at once');

  // Writes go on, and every acknowledged one, before and after, is on every node.
  const after = startWorkload(cluster, history, { name: 'after', clients: 2 });
  await until('50 more appends acknowledged', 30_000, () => (after.load.ok >= 50 ? true : undefined));
  await after.stop();
  await verifyCluster(t, cluster, history);
});
