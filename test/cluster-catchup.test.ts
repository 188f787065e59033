/**
 * A follower left 100 MB behind (stopped while the rest of the cluster appends 100 MB,
 * then restarted) catches up, while a light load continues, and afterwards its segment
 * files hold exactly the leader's bytes over the committed prefix.
 */
import test from 'ava';
import { request } from 'undici';
import { Cluster } from './helpers/cluster.ts';
import { AppendLoad, History, startWorkload, verifyCluster } from './helpers/history.ts';
import { until } from './helpers/cluster.ts';

const MB = 1024 * 1024;

const behindBy100MB = test.macro(async (t, restartOthers: boolean) => {
  // Smaller segments than the default so the lag spans several segment files.
  const cluster = await Cluster.start(t, { config: { segmentBytes: '16MiB' } });
  const history = new History();
  const leader = await cluster.waitLeader();
  const lagging = cluster.nodes.find((n) => n !== leader)!;
  const left = (await lagging.status())!.end;
  await lagging.kill();

  const bulk = new AppendLoad(cluster, history, { name: 'bulk', clients: 4, minBytes: 64 * 1024, maxBytes: 1 * MB }).start();
  const t0 = Date.now();
  try {
    await until('100 MB acknowledged', 60_000, () => (bulk.bytesOk >= 100 * MB ? true : undefined), () => `${(bulk.bytesOk / MB).toFixed(1)} MB so far; ${bulk.errors.slice(-3).join('; ')}`);
  } finally {
    await bulk.stop();
  }
  if (restartOthers) {
    // A restarted leader knows entry metadata only for its recovered tail: the lagging
    // node is below its window and must copy committed frames verbatim (catch-up copy).
    const others = cluster.nodes.filter((n) => n !== lagging);
    await Promise.all(others.map((n) => n.restart()));
    await cluster.waitLeader();
  }
  const behind = (await (await cluster.waitLeader()).status())!;
  t.log(`appended ${(bulk.bytesOk / MB).toFixed(1)} MB in ${bulk.ok} entries in ${Date.now() - t0} ms; leader end ${behind.end}, ${lagging.id} stopped at ${left}`);

  // Restart the lagging node under a light load and time its catch-up.
  const work = startWorkload(cluster, history, { name: 'light', clients: 2 });
  const light = work.load;
  const restartedAt = Date.now();
  try {
    await lagging.start();
    if (restartOthers) {
      // Crash it in the middle of its catch-up copy; it recovers and resumes from its tail.
      await until(`${lagging.id} to be mid-copy`, 60_000, async () => {
        const s = await lagging.status();
        return s && s.bytes > behind.end / 3 ? true : undefined;
      });
      const mid = (await lagging.status())!;
      await lagging.restart();
      t.log(`${lagging.id} killed holding ${mid.bytes} bytes (replica durable end ${mid.durable}, of ${behind.end}) and restarted`);
    }
    await until(`${lagging.id} to catch up past ${behind.end}`, 60_000, async () => {
      const s = await lagging.status();
      return s && s.readable >= behind.end ? true : undefined;
    });
    t.log(`${lagging.id} caught up ${(behind.end / MB).toFixed(1)} MB in ${Date.now() - restartedAt} ms`);
    await light.waitMore(100);
  } finally {
    await work.stop();
  }
  const traffic = await cluster.peerTraffic();
  t.log(`peers served ${(traffic.payload / MB).toFixed(1)} MB of fetched payloads and ${(traffic.copy / MB).toFixed(1)} MB of catch-up copies`);
  if (restartOthers) t.true(traffic.copy >= behind.end / 2, 'the lagging node copied frames (catch-up copy)');
  else t.true(traffic.payload >= behind.end / 2, 'the lagging node fetched payloads from peers');
  const { end } = await verifyCluster(t, cluster, history, { convergeMs: 60_000, sameSplits: true });
  t.true(end > behind.end);
  t.true(lagging.segmentBases().length >= 6, 'the copied log spans several segments');
});

test.serial('a follower 100 MB behind catches up (payloads from peers) and holds the same bytes', behindBy100MB, false);
test.serial('a follower 100 MB behind a restarted leader catches up (frame copy) and holds the same bytes', behindBy100MB, true);

// A follower catching up through the metadata window places frames far ahead of the bytes
// it has written, across more segments than SegmentLog keeps frame indexes of in memory;
// readers following its commit must still be served every frame.
test.serial('a follower catching up over many segments serves every frame to a reader that follows its commit', async (t) => {
  // Tiny segments: the lag spans far more segments than a node keeps frame indexes of in memory.
  const cluster = await Cluster.start(t, { config: { segmentBytes: '64KiB', uploadDeadline: '50ms' } });
  const history = new History();
  const leader = await cluster.waitLeader();
  const lagging = cluster.nodes.find((n) => n !== leader)!;
  await lagging.kill();
  const bulk = new AppendLoad(cluster, history, { name: 'bulk', clients: 4, minBytes: 1024, maxBytes: 8192 }).start();
  try {
    await until('4 MB acknowledged', 60_000, () => (bulk.bytesOk >= 4 * MB ? true : undefined));
  } finally {
    await bulk.stop();
  }
  const target = (await leader.status())!.commit;
  await lagging.start();
  // Read the lagging node alone, from 0, always at its own commit end.
  let offset = 0;
  let reads = 0;
  const errors: string[] = [];
  const deadline = Date.now() + 60_000;
  while (offset < target && Date.now() < deadline) {
    const r = await request(`${lagging.url}/v1/read?offset=${offset}&limit=65536&wait=500`, { headersTimeout: 5000, bodyTimeout: 5000 });
    const body = Buffer.from(await r.body.arrayBuffer());
    if (r.statusCode === 200) {
      if (body.length > 0) reads++;
      offset = Number(r.headers['x-loglog-next']);
    } else if (r.statusCode !== 416 && r.statusCode !== 504) {
      errors.push(`${r.statusCode} at ${offset}: ${body.toString().slice(0, 200)}`);
      if (errors.length > 3) break;
    }
  }
  t.deepEqual(errors, [], 'every committed frame is readable on the catching-up follower');
  t.true(offset >= target, `the reader reached ${target} (at ${offset} after ${reads} reads)`);
  t.log(`${lagging.id} served ${reads} reads while catching up ${(target / MB).toFixed(1)} MB over ${lagging.segmentBases().length} segments`);
  await verifyCluster(t, cluster, history, { sameSplits: true });
});

test.serial('a follower whose log ends below the start the others trimmed to catches up from their start', async (t) => {
  const cluster = await Cluster.start(t, { config: { segmentBytes: '64KiB' } });
  const history = new History();
  const leader = await cluster.waitLeader();
  const lagging = cluster.nodes.find((n) => n !== leader)!;
  const work = startWorkload(cluster, history, { clients: 2 });
  try {
    await work.load.waitMore(100);
    await lagging.kill();
    const left = lagging.segmentBases();
    await work.load.waitMore(300);
    // A trim on the leader (it reaches the running follower) deletes every segment the lagging node has.
    const now = await cluster.waitLeader();
    const before = (await now.status())!.commit;
    const r = await request(`${now.url}/v1/trim?before=${before}`, { method: 'POST' });
    const j = (await r.body.json()) as { start: number };
    t.is(r.statusCode, 200);
    t.log(`${now.id} trimmed to ${j.start}`);
    const starts = await until('the running nodes trimmed', 10_000, async () => {
      const s = [...(await cluster.statuses()).values()].map((x) => x.start);
      return s.length === cluster.alive().length && Math.min(...s) > 0 ? s : undefined;
    });
    t.log(`${lagging.id} stopped with segments ${left.join(',')}; the others now start at ${starts.join(', ')}`);
    await lagging.start();
    await until(`${lagging.id} to catch up`, 20_000, async () => {
      const [s, l] = [await lagging.status(), await (await cluster.waitLeader()).status()];
      return s && l && s.readable >= l.commit - 100_000 ? true : undefined;
    }, () => lagging.log.split('\n').slice(-5).join('\n'));
    await work.load.waitMore(100);
  } finally {
    await work.stop();
  }
  // Deleting everything it held is said, as every other deletion is.
  t.regex(lagging.log, /the leader's log starts at \d+, past all this node held \(\d+\.\.\d+, trimmed there meanwhile\): deleted every segment, copying the log from \d+ on/);
  // Every node now starts where the others trimmed to, and holds the same bytes from there.
  const end = await cluster.waitConverged();
  const starts = new Set([...(await cluster.statuses()).values()].map((s) => s.start));
  t.is(starts.size, 1, `every node starts at the same offset (${[...starts].join(', ')})`);
  const [from] = starts;
  t.true(from > 0);
  cluster.compareSegments(end, cluster.nodes, { from });
  // The history from the trimmed start on checks out against every replica.
  const since = history.from(from);
  for (const n of cluster.nodes) {
    const final = await n.finalLog();
    t.is(final.start, from);
    t.is(final.end, end);
    since.check(t, final, n.id, { checkUnseen: false });
  }
  t.log(work.summary());
});

test.serial('a follower back from an outage fetches the entries it missed in runs (one request for many), not one request each', async (t) => {
  const cluster = await Cluster.start(t);
  const leader = await cluster.waitLeader();
  const away = cluster.nodes.find((n) => n !== leader)!;
  const { LogClient } = await import('../client/log-client.ts');
  const client = new LogClient({ servers: [leader.url] });
  t.teardown(() => client.close());
  await away.kill();
  // Small entries, as most logs have: per-entry requests made catching up crawl at 1-3 MB/s.
  for (let i = 0; i < 40; i++) await client.append(Array.from({ length: 50 }, (_, j) => Buffer.alloc(200, (i * 50 + j) % 251)));
  const was = (await leader.status())!.traffic!;
  await away.start();
  const end = await cluster.waitConverged({ ms: 30_000 });
  const now = (await leader.status())!.traffic!;
  const fetched = now.peerPayloadBytes - was.peerPayloadBytes;
  const requests = now.peerFetchRequests! - was.peerFetchRequests!;
  t.log(`${away.id} caught up: ${fetched} bytes fetched in ${requests} requests`);
  t.true(fetched >= 2000 * 200, `the 2,000 entries were fetched (${fetched} bytes)`);
  t.true(requests <= 100, `in runs: ${requests} requests for 2,000 entries`);
  cluster.compareSegments(end);
});
