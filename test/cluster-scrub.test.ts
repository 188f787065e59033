/**
 * The scrubber on real processes: bit rot in a follower's sealed segment is found by its
 * scrub and rewritten from another replica's copy, so that the replicas hold the same bytes
 * again without any client having read the frame.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { LogClient } from '../client/log-client.ts';
import { Cluster, until } from './helpers/cluster.ts';
import { segmentPath } from '../server/storage/segment-files.ts';
import type { ScrubStatus } from '../server/storage/scrubber.ts';
import { formatScrub } from '../client/cli/commands/admin.ts';
import { runCli } from './helpers/cli.ts';

test('a rotten byte in a follower\'s sealed segment is rewritten from another replica by its scrub', async (t) => {
  const cluster = await Cluster.start(t, { config: { segmentBytes: '64KiB', scrubInterval: '100ms' } });
  const leader = await cluster.waitLeader();
  const client = new LogClient({ servers: [leader.url] });
  t.teardown(() => client.close());
  const offsets: number[] = [];
  for (let i = 0; i < 24; i++) offsets.push((await client.append(Buffer.alloc(8192, i + 1))).offset);
  const end = (await leader.status())!.commit;
  await until('every replica has committed and holds every entry', 10_000, async () => {
    const all = await cluster.statuses();
    return [...all.values()].every((s) => s.readable === end) ? true : undefined;
  });

  const follower = cluster.nodes.find((n) => n !== leader)!;
  const victim = offsets[2]; // in the first segment, sealed long since
  const file = segmentPath(follower.dataDir, 0);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([0xee]), 0, 1, victim + 32 + 100);
  fs.closeSync(fd);
  t.false(fs.readFileSync(file).equals(fs.readFileSync(segmentPath(leader.dataDir, 0))));

  const scrub = await until('the follower\'s scrub mended the frame', 15_000, async () => {
    const s = (await follower.status()) as unknown as { scrub: ScrubStatus } | null;
    return s && s.scrub.repaired >= 1 ? s.scrub : undefined;
  });
  t.like(scrub, { enabled: true, damaged: 1, repaired: 1 });
  t.true(fs.readFileSync(file).equals(fs.readFileSync(segmentPath(leader.dataDir, 0))), 'the follower holds the leader\'s bytes again');
  t.regex(follower.log, new RegExp(`scrub: the frame at ${victim} \\(segment 0+, 8225 bytes\\) failed its check \\(checksum\\); rewritten from n\\d's copy`));
  t.true(fs.existsSync(path.join(follower.dataDir, 'scrub')));
  const status = await runCli(['status', '--server', follower.url]);
  t.regex(status.out, /\n {2}scrub {4}\d+ pass(es)? done, the last \d+ s ago.*; since start 1 damaged frame found, 1 rewritten from another replica/, status.out);
});

test('loglog status says how a node\'s scrubber stands', (t) => {
  const base = { enabled: true, running: false, position: null, passes: 0, lastPassEndedAt: null, checkedBytes: 0, damaged: 0, repaired: 0 };
  t.is(formatScrub({ ...base, enabled: false }, 0), 'off (loglogd --scrub-interval)');
  t.is(formatScrub({ ...base, running: true, position: 4096 }, 0), '0 passes done, checking at 4096');
  t.is(formatScrub({ ...base, passes: 1, lastPassEndedAt: 0 }, 3 * 3_600_000), '1 pass done, the last 3 h ago');
  t.is(formatScrub({ ...base, passes: 2, lastPassEndedAt: 0, damaged: 2, repaired: 1 }, 90_000), '2 passes done, the last 90 s ago; since start 2 damaged frames found, 1 rewritten from another replica (the node\'s log says which)');
});
