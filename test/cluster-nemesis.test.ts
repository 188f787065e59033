/**
 * Random faults against a real 3-node cluster under load. `npm test` runs a short round
 * (15 s, fixed seed 1); a longer soak:
 *
 *   LOGLOG_NEMESIS_SECONDS=120 [LOGLOG_NEMESIS_NODES=5] [LOGLOG_NEMESIS_SEED=n] npx ava test/cluster-nemesis.test.ts
 *
 * Every step picks one of: kill -9 a node (the leader more often), freeze one (SIGSTOP),
 * cut one off (TCP proxies, held or reset), cut one link one way, restart every node; each
 * fault is undone a moment later. At the end everything heals and the usual checks run
 * (history checked against every replica, byte-identical segments, fates).
 */
import test from 'ava';
import { Cluster, type ClusterNode, sleep } from './helpers/cluster.ts';
import { History, startWorkload, verifyCluster } from './helpers/history.ts';

const SECONDS = Number(process.env.LOGLOG_NEMESIS_SECONDS ?? 15);
const SEED = Number(process.env.LOGLOG_NEMESIS_SEED ?? 1);
const NODES = Number(process.env.LOGLOG_NEMESIS_NODES ?? 3);

/** A small seeded PRNG so a run's fault schedule can be replayed (timing still varies). */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

test.serial(`nemesis: random crashes, freezes and partitions of ${NODES} nodes for ${SECONDS} s`, async (t) => {
  t.timeout((SECONDS + 120) * 1000);
  const rnd = prng(SEED);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  t.log(`seed ${SEED}`);
  const cluster = await Cluster.start(t, { size: NODES, proxied: true, config: { segmentBytes: '256KiB', uploadDeadline: '50ms' } });
  const history = new History();
  const work = startWorkload(cluster, history, { largeChance: 0.02, abandonChance: 0.02 });
  const faults: string[] = [];
  const until = Date.now() + SECONDS * 1000;
  try {
    while (Date.now() < until) {
      await sleep(300 + rnd() * 1200);
      const leader = (await cluster.statuses()).size > 0 ? await cluster.waitLeader({ ms: 15_000 }).catch(() => null) : null;
      const victim: ClusterNode = leader && rnd() < 0.5 ? leader : pick(cluster.nodes);
      const others = cluster.nodes.filter((n) => n !== victim).map((n) => n.id);
      const hold = 300 + rnd() * 2000;
      const r = rnd();
      if (r < 0.3) {
        faults.push(`kill ${victim.id}${victim === leader ? ' (leader)' : ''}`);
        await victim.kill();
        await sleep(hold);
        await victim.start();
      } else if (r < 0.45) {
        faults.push(`freeze ${victim.id}`);
        victim.pause();
        await sleep(hold);
        victim.resume();
      } else if (r < 0.7) {
        const mode = rnd() < 0.5 ? 'hold' : 'reset';
        // A minority: the victim and, in larger clusters, up to (n-1)/2 - 1 more nodes.
        const group = [victim.id];
        const extra = Math.floor(rnd() * Math.floor((cluster.nodes.length - 1) / 2));
        for (const id of others) if (group.length <= extra) group.push(id);
        faults.push(`isolate ${group.join('+')} (${mode})`);
        cluster.partition(group, cluster.nodes.map((n) => n.id).filter((id) => !group.includes(id)), { mode });
        await sleep(hold);
        cluster.heal();
      } else if (r < 0.9) {
        const to = pick(others);
        faults.push(`cut ${victim.id}->${to}`);
        cluster.link(victim.id, to).cut(rnd() < 0.5 ? 'hold' : 'reset');
        await sleep(hold);
        cluster.heal();
      } else {
        faults.push('restart all');
        await Promise.all(cluster.nodes.map((n) => n.kill()));
        await Promise.all(cluster.nodes.map((n) => n.start()));
      }
    }
  } finally {
    cluster.heal();
    for (const n of cluster.nodes) n.resume();
    for (const n of cluster.nodes) if (!n.alive) await n.start();
    await cluster.waitLeader({ ms: 30_000 }).then(() => work.load.waitMore(50, 60_000)).catch((e) => t.log(`after the faults: ${(e as Error).message}`));
    await work.stop();
  }
  t.log(`${faults.length} faults: ${faults.join(', ')}`);
  t.log(work.summary());
  await verifyCluster(t, cluster, history, { convergeMs: 60_000 });
});
