/**
 * Crash faults in a real 3-node cluster under a steady append load: kill -9 of the leader,
 * of a follower (then restarted), and of the whole cluster (then restarted). Afterwards
 * every acknowledged append must be on every replica exactly once at its acknowledged
 * offset, reads must have been consistent, and the replicas' segment files must be
 * byte-identical over the committed prefix (see helpers/history.ts verifyCluster).
 */
import test, { type ExecutionContext } from 'ava';
import { Cluster, until } from './helpers/cluster.ts';
import { type AppendLoad, History, startWorkload, verifyCluster } from './helpers/history.ts';

/** Default election timeout is 300 ms (each timeout drawn from [300, 600) ms). */
const ELECTION_MS = 300;
/**
 * Small segments so that rolls, truncations and copies cross segment files often; a short
 * upload deadline so that followers race late uploads against fetches from peers.
 */
const CONFIG = { segmentBytes: '256KiB', uploadDeadline: '50ms' };

/**
 * Every test here: a cluster (CONFIG) under the usual workload (writers with a few large and
 * abandoned appends, a tail reader, a linearizable-end probe), the test's `fault` done to it,
 * the workload stopped (also when the fault fails), then every check of verifyCluster.
 */
const underLoad = test.macro(async (t, fault: (t: ExecutionContext, cluster: Cluster, load: AppendLoad) => Promise<void>) => {
  const cluster = await Cluster.start(t, { config: CONFIG });
  const history = new History();
  const work = startWorkload(cluster, history, { largeChance: 0.02, abandonChance: 0.02 });
  try {
    await fault(t, cluster, work.load);
  } finally {
    await work.stop();
  }
  t.log(work.summary());
  await verifyCluster(t, cluster, history);
});

test.serial('kill -9 of the leader under load: a new leader soon, writers continue, nothing acknowledged is lost', underLoad, async (t, cluster, load) => {
  // Twice: the second time the leader is one elected after a failover.
  for (let round = 1; round <= 2; round++) {
    await load.waitMore(150);
    const old = await cluster.waitLeader();
    const before = (await old.status())!.term;
    const killedAt = Date.now();
    await old.kill();
    const next = await cluster.waitLeader({ minTerm: before + 1, ms: 10_000 });
    const took = Date.now() - killedAt;
    t.log(`${old.id} killed in term ${before}; ${next.id} leads after ${took} ms`);
    t.not(next.id, old.id);
    // A few election timeouts (pre-vote + vote), with slack for a busy 2-core machine.
    t.true(took < 12 * ELECTION_MS, `a new leader within a few election timeouts (took ${took} ms)`);
    await load.waitMore(150);
    await old.start();
    await load.waitMore(100);
  }
});

test.serial('kill -9 of a follower under load, then restart: it catches up and nothing is lost', underLoad, async (t, cluster, load) => {
  await load.waitMore(150);
  const leader = await cluster.waitLeader();
  const follower = cluster.nodes.find((n) => n !== leader)!;
  await follower.kill();
  await load.waitMore(250);
  const lead = (await leader.status())!;
  await follower.start();
  await load.waitMore(150);
  t.log(`${follower.id} was down while the log grew past ${lead.end}`);
});

test.serial('restart of the whole cluster (kill -9 all, restart all) under load: nothing acknowledged is lost', underLoad, async (t, cluster, load) => {
  await load.waitMore(200);
  await Promise.all(cluster.nodes.map((n) => n.kill()));
  const downAt = Date.now();
  await Promise.all(cluster.nodes.map((n) => n.start()));
  const leader = await cluster.waitLeader();
  t.log(`${leader.id} leads ${Date.now() - downAt} ms after all nodes were killed`);
  await load.waitMore(200);
});

test.serial('a follower left without a majority stops naming its dead leader, in status and in 421 hints, once it has not heard from it for an election timeout', async (t) => {
  const cluster = await Cluster.start(t);
  const leader = await cluster.waitLeader();
  const [survivor, other] = cluster.nodes.filter((n) => n !== leader);
  await until('the survivor knows the leader', 5000, async () => ((await survivor.status())?.leader === leader.id ? true : undefined));
  await other.kill();
  await leader.kill();
  const st = await until('the survivor no longer names the dead leader', 10_000, async () => {
    const s = await survivor.status();
    return s && s.leader === null ? s : undefined;
  });
  t.is(st.role, 'follower');
  t.is((st as unknown as { leaderUrl: unknown }).leaderUrl, null);
  const res = await fetch(`${survivor.url}/v1/append`, { method: 'POST', body: 'x' });
  const body = await res.json() as { error: { code: string; leader: unknown; leaderUrl: unknown } };
  t.is(res.status, 421);
  t.like(body.error, { code: 'not_leader', leader: null, leaderUrl: null });
});
