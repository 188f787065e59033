/**
 * The SDK and CLI against real 3-node clusters (real loglogd processes on loopback, temp
 * dirs): client-offloaded appends and the leader's egress, reads spread over replicas with
 * read-your-writes, a corrupt replica reported by name, ack levels end to end (a stopped
 * follower holds `all` but not `quorum`), linearizable end, and appends across a failover.
 */
import test from 'ava';
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { LogClient } from '../client/log-client.ts';
import { LogError } from '../spec/errors.ts';
import { HEADER_SIZE } from '../spec/frame.ts';
import type { CorruptionReport, Entry } from '../client/types.ts';
import { Cluster, type ClusterNode, until } from './helpers/cluster.ts';
import { startNode } from './helpers/node-process.ts';
import { runCliInProcess as cli, spawnCli } from './helpers/cli.ts';
import { freePortRange } from '../client/cli/commands/dev.ts';

interface Traffic { appendedBytes: number; peerSentBytes: number; peerMessageBytes: number; peerPayloadBytes: number; peerCopyBytes: number }

async function traffic(n: ClusterNode): Promise<Traffic> {
  const st = (await n.status()) as unknown as { traffic: Traffic } | null;
  if (!st) throw new Error(`${n.id} did not answer /v1/status`);
  return st.traffic;
}

async function collect(it: AsyncIterable<Entry>): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

/** Flips the first payload byte of the entry at `offset` in `node`'s first segment file (bit rot). */
function corruptPayload(node: ClusterNode, offset: number): void {
  const fd = openSync(join(node.dataDir, `${'0'.repeat(16)}.seg`), 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset + HEADER_SIZE);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, offset + HEADER_SIZE);
  } finally {
    closeSync(fd);
  }
}

function client(t: { teardown(fn: () => unknown): void }, servers: string[], extra: ConstructorParameters<typeof LogClient>[0] = {}): LogClient {
  const c = new LogClient({ servers, ...extra });
  t.teardown(() => c.close());
  return c;
}

test.serial('offloaded appends: followers take the client copies, the leader serves no payload; without offload followers fetch at once', async (t) => {
  // Followers would wait this long for a copy that a client without offload never sends.
  const c = await Cluster.start(t, { config: { uploadDeadline: '1h' } });
  const leader = await c.waitLeader();
  const follower = c.nodes.find((n) => n !== leader)!;
  // The leader is elected before every follower has heard from it.
  await until(`${follower.id} knows the leader`, 10_000, async () => ((await follower.status())?.leader === leader.id ? true : undefined));
  // Seeded with one follower only: the client discovers the members and the leader.
  const sdk = client(t, [follower.url]);
  const view = await sdk.discover();
  t.deepEqual([...view.members].sort(), c.nodes.map((n) => n.url).sort());
  t.is(view.leader, leader.url);
  t.true(sdk.offloading, 'offload is the default with several members');

  const before = await traffic(leader);
  const payloads = Array.from({ length: 40 }, () => randomBytes(1024));
  for (const p of payloads) await sdk.append(p);
  const end = await c.waitConverged();
  const after = await traffic(leader);
  const appended = after.appendedBytes - before.appendedBytes;
  const served = after.peerPayloadBytes - before.peerPayloadBytes;
  t.log(`offload: ${appended} payload bytes appended, ${served} payload bytes served to peers, ${after.peerMessageBytes - before.peerMessageBytes} message bytes`);
  t.is(appended, 40 * 1024);
  t.true(served <= appended * 0.1, `followers fetched ${served} of ${appended} bytes from the leader`);
  c.compareSegments(end);

  // Without offload every follower fetches every payload from the leader, at once: the
  // client says it sends no copies (acks=all waits for both followers' bytes).
  const plain = client(t, [leader.url], { offload: false, acks: 'all' });
  t.false(plain.offloading);
  for (let i = 0; i < 5; i++) await plain.append(randomBytes(1024));
  const end2 = await c.waitConverged();
  const fetched = (await traffic(leader)).peerPayloadBytes - after.peerPayloadBytes;
  t.true(fetched >= 2 * 5 * 1024, `followers fetched ${fetched} bytes`);
  c.compareSegments(end2);
});

test.serial('reads spread over replicas see the client\'s own writes; linearizable end at the leader; a corrupt replica is named', async (t) => {
  const c = await Cluster.start(t);
  const leader = await c.waitLeader();
  const sdk = client(t, c.nodes.map((n) => n.url));
  const written: { offset: number; end: number; payload: Buffer }[] = [];
  // Each read goes to the next replica; a follower must not answer before it has committed
  // the append this client just had acknowledged.
  for (let i = 0; i < 30; i++) {
    const payload = Buffer.from(`entry ${i} ${randomBytes(8).toString('hex')}`);
    const r = await sdk.append(payload);
    written.push({ ...r, payload });
    const got = await collect(sdk.read(r.offset));
    t.deepEqual(got.map((e) => e.payload.toString()), [payload.toString()], `read ${i} sees its own write`);
  }
  const last = written[written.length - 1];
  t.is(sdk.lastAckedEnd, last.end);
  t.true((await sdk.end({ linearizable: true })) >= last.end);
  // The CLI, pointed at a follower, asks the leader.
  const follower = c.nodes.find((n) => n !== leader)!;
  const lin = await cli(['end', '--linearizable', '--server', follower.url]);
  t.is(lin.code, 0, lin.err);
  t.is(Number(lin.out), (await leader.status())!.commit);
  await c.waitConverged();

  const victim = written[7];
  corruptPayload(follower, victim.offset);
  const reports: CorruptionReport[] = [];
  const reader = client(t, c.nodes.map((n) => n.url), { onCorruption: (r) => reports.push(r) });
  const got = await collect(reader.read(written[0].offset, { server: follower.url }));
  t.deepEqual(got.map((e) => e.payload.toString()), written.map((w) => w.payload.toString()), 'the bad entry is read intact from another replica');
  t.deepEqual(reports, [{ offset: victim.offset, replica: follower.url, reason: 'checksum' }]);
});

test.serial('loglog read and tail warn on stderr about each corrupt frame a replica serves, and print every record intact', async (t) => {
  const c = await Cluster.start(t);
  await c.waitLeader();
  const servers = c.nodes.map((n) => n.url).join(',');
  const sdk = client(t, c.nodes.map((n) => n.url));
  const written: { offset: number }[] = [];
  for (const v of ['zero', 'one', 'two']) written.push(await sdk.append(Buffer.from(v), { acks: 'all' }));
  await c.waitConverged();
  // Entry i rots on node i only: whichever replica a read or a tail starts on, it serves one
  // bad frame, and every frame is intact on the two others. (The SDK reads a bad frame from
  // another replica; the CLI used to say nothing about the replica that served it.)
  const rotten = new Set<string>();
  c.nodes.forEach((n, i) => {
    corruptPayload(n, written[i].offset);
    rotten.add(`${n.url} ${written[i].offset}`);
  });
  const warning = /^loglog: warning: (\S+) served a corrupt frame at offset (\d+) \(checksum mismatch\); reading it from another replica \(check that replica's disk\)$/;
  const checkWarnings = (err: string, what: string) => {
    const lines = err.trim().split('\n').filter((l) => l !== '');
    t.true(lines.length >= 1, `${what}: a warning on stderr`);
    for (const line of lines) {
      const m = warning.exec(line);
      t.truthy(m, `${what}: ${line}`);
      if (m) t.true(rotten.has(`${m[1]} ${m[2]}`), `${what}: ${line} names a replica and the frame that rotted there`);
    }
  };

  const read = await cli(['read', '--from', 'start', '--server', servers]);
  t.is(read.code, 0, read.err);
  t.is(read.out, 'zero\none\ntwo\n');
  checkWarnings(read.err, 'read');

  const tail = spawnCli(['tail', '--from', 'start', '--server', servers]);
  t.teardown(() => { tail.proc.kill('SIGKILL'); });
  await tail.waitOut(/^zero\none\ntwo\n$/);
  await tail.waitErr(/warning/);
  tail.proc.kill('SIGINT');
  const done = await tail.done;
  t.is(done.code, 130, done.err);
  t.is(done.out, 'zero\none\ntwo\n');
  checkWarnings(done.err, 'tail');
});

test.serial('ack levels end to end: with a follower stopped, quorum and leader acks answer, all waits for it', async (t) => {
  const c = await Cluster.start(t);
  const leader = await c.waitLeader();
  const sdk = client(t, c.nodes.map((n) => n.url));
  await sdk.append(Buffer.from('warm up'), { acks: 'all' });
  const bad = await t.throwsAsync(sdk.append(Buffer.from('x'), { acks: 'some' as 'all' }), { instanceOf: LogError });
  t.is(bad?.code, 'bad_request', 'the server reads the ack level');

  const stopped = c.nodes.find((n) => n !== leader)!;
  stopped.proc!.kill('SIGSTOP');
  t.teardown(() => { if (stopped.alive) stopped.proc!.kill('SIGCONT'); });
  let allDone = false;
  const all = sdk.append(Buffer.from('needs everyone'), { acks: 'all' }).then((r) => { allDone = true; return r; });
  const q = await sdk.append(Buffer.from('needs a majority'), { acks: 'quorum' });
  const l = await sdk.append(Buffer.from('needs the leader'), { acks: 'leader' });
  t.false(allDone, 'acks=all is still waiting for the stopped follower');
  stopped.proc!.kill('SIGCONT');
  const a = await all;
  t.true(a.offset < q.offset && q.offset < l.offset);

  const cliAll = await cli(['append', '--acks', 'all', '--server', c.nodes.map((n) => n.url).join(',')], 'one\ntwo\n');
  t.is(cliAll.code, 0, cliAll.err);
  t.like(JSON.parse(cliAll.out), { records: 2 });
  const cliBad = await cli(['append', '--acks', 'most', '--server', leader.url], 'x\n');
  t.is(cliBad.code, 1);
  t.regex(cliBad.err, /--acks must be one of leader, quorum, all/);
});

test.serial('acks=all with a follower down: answered "unconfirmed" after allAckTimeout, with the offset the entry is committed at', async (t) => {
  const c = await Cluster.start(t, { config: { allAckTimeout: '800ms' } });
  const leader = await c.waitLeader();
  const sdk = client(t, c.nodes.map((n) => n.url));
  await sdk.append(Buffer.from('warm up'), { acks: 'all' });
  const stopped = c.nodes.find((n) => n !== leader)!;
  stopped.proc!.kill('SIGSTOP');
  t.teardown(() => { if (stopped.alive) stopped.proc!.kill('SIGCONT'); });
  const e = await t.throwsAsync(sdk.append(Buffer.from('needs everyone'), { acks: 'all' }), { instanceOf: LogError });
  t.is(e?.code, 'unconfirmed', e?.message);
  t.false(e?.retriable);
  t.deepEqual(e?.details.missing, [stopped.id]);
  t.regex(e?.message ?? '', /it is in the log, do not append it again/);
  const offset = e?.details.offset as number;
  const [entry] = await collect(sdk.read(offset, { to: offset + 1, server: leader.url }));
  t.is(entry?.offset, offset);
  t.is(entry?.payload.toString(), 'needs everyone');
  // The CLI counts such records as appended (they are in the log) and still fails.
  const servers = c.nodes.map((n) => n.url).join(',');
  for (const args of [['append'], ['append', '--raw']]) {
    const r = await cli([...args, '--acks', 'all', '--server', servers], 'one\ntwo\n');
    t.not(r.code, 0);
    const summary = JSON.parse(r.out);
    t.like(summary, { entries: 1, records: args.length === 1 ? 2 : 1, failed: 0, unconfirmed: args.length === 1 ? 2 : 1, error: { code: 'unconfirmed' } });
    t.regex(r.err, /are in the log .*committed but not confirmed by every replica: do not append them again/);
    const [landed] = await collect(sdk.read(summary.first, { to: summary.first + 1, server: leader.url }));
    t.is(landed?.offset, summary.first);
  }
  stopped.proc!.kill('SIGCONT');
  t.truthy(await sdk.append(Buffer.from('everyone again'), { acks: 'all' }));
});

test.serial('a trim on the leader reaches the followers: every replica deletes the segments below it, one that was down too once it is back', async (t) => {
  const c = await Cluster.start(t, { config: { segmentBytes: '4KiB' } });
  const leader = await c.waitLeader();
  const sdk = client(t, c.nodes.map((n) => n.url), { acks: 'all' });
  for (let i = 0; i < 40; i++) await sdk.append(Buffer.alloc(1000, i));
  const away = c.nodes.find((n) => n !== leader)!;
  await away.kill();
  const start = await sdk.trim(20_000);
  t.true(start > 0 && start <= 20_000, String(start));
  const back = c.nodes.filter((n) => n !== leader && n !== away)[0];
  await until('the running follower trimmed', 10_000, async () => ((await back.status())?.start ?? 0) > 0 || undefined);
  await away.start();
  await until('the follower that was down trimmed too', 15_000, async () => ((await away.status())?.start ?? 0) > 0 || undefined);
  for (const n of [back, away]) {
    const s = (await n.status())!;
    t.true(s.start > 0 && s.start <= start + 4096, `${n.id} start ${s.start}`);
    const e = await t.throwsAsync(collect(sdk.read(0, { server: n.url })), { instanceOf: LogError });
    t.is(e?.code, 'trimmed');
  }
});

test.serial('a trim is acknowledged only once a majority holds it, and then outlives its leader; a follower refuses a trim with 421', async (t) => {
  const c = await Cluster.start(t, { config: { segmentBytes: '4KiB' } });
  const leader = await c.waitLeader();
  const sdk = client(t, c.nodes.map((n) => n.url), { acks: 'all' });
  for (let i = 0; i < 40; i++) await sdk.append(Buffer.alloc(1000, i));
  const [away, holder] = c.nodes.filter((n) => n !== leader);
  const direct = await fetch(`${away.url}/v1/trim?before=20000`, { method: 'POST' });
  t.is(direct.status, 421);
  // Neither follower hears the trim: the leader must not acknowledge it. It gives up with
  // its leadership (check-quorum) and says so.
  for (const f of [away, holder]) f.proc!.kill('SIGSTOP');
  t.teardown(() => { for (const f of [away, holder]) if (f.alive) f.proc!.kill('SIGCONT'); });
  const alone = await fetch(`${leader.url}/v1/trim?before=20000`, { method: 'POST' });
  t.is(alone.status, 421, await alone.text());
  for (const f of [away, holder]) f.proc!.kill('SIGCONT');
  const now = await c.waitLeader();
  // With one follower away, the other makes the majority: acknowledged, then the leader
  // dies for good, and the follower that was away takes the trim up from the holder.
  const others = c.nodes.filter((n) => n !== now);
  others[0].proc!.kill('SIGSTOP');
  t.teardown(() => { if (others[0].alive) others[0].proc!.kill('SIGCONT'); });
  const trimmed = (await (await fetch(`${now.url}/v1/trim?before=20000`, { method: 'POST' })).json()) as { start: number };
  t.true(trimmed.start > 0, JSON.stringify(trimmed));
  await now.kill();
  others[0].proc!.kill('SIGCONT');
  await c.waitLeader({ among: others });
  await until('both remaining replicas trimmed', 15_000, async () => {
    const starts = await Promise.all(others.map(async (n) => (await n.status())?.start ?? 0));
    return starts.every((s) => s > 0) || undefined;
  });
  t.pass();
});

test.serial('across a failover (leader killed -9) appends retry onto the new leader, each entry exactly once', async (t) => {
  const c = await Cluster.start(t);
  const leader = await c.waitLeader();
  const sdk = client(t, c.nodes.map((n) => n.url), { retry: { retries: 12, minDelayMs: 25, maxDelayMs: 1000 } });
  const payloads = Array.from({ length: 30 }, (_, i) => Buffer.from(`failover ${i} ${randomBytes(6).toString('hex')}`));
  for (const p of payloads.slice(0, 10)) await sdk.append(p);
  // Appends in flight while the leader dies: their replies are lost; the client asks their
  // fate (upload id) on the new leader before sending again.
  const inFlight = payloads.slice(10).map((p) => sdk.append(p));
  await leader.kill();
  const results = await Promise.allSettled(inFlight);
  const failed = results.filter((r) => r.status === 'rejected');
  t.is(failed.length, 0, failed.map((f) => String((f as PromiseRejectedResult).reason)).join('; '));
  const next = await c.waitLeader();
  t.not(next.id, leader.id);
  t.is(sdk.leader, next.url);
  await c.waitConverged();
  const all = await collect(sdk.read(0));
  const seen = all.map((e) => e.payload.toString());
  for (const p of payloads) t.is(seen.filter((s) => s === p.toString()).length, 1, `${p} once`);
});

test.serial('a single loglogd behind a three-address server list: the CLI works and says nothing on stderr, but status lists the servers named that are down', async (t) => {
  const node = await startNode(t);
  const dead = [await freePortRange(1), await freePortRange(1)].map((p) => `http://127.0.0.1:${p}`);
  const servers = [node.url, ...dead].join(',');
  const ap = await cli(['append', '--server', servers], 'one\ntwo\n');
  t.is(ap.code, 0, ap.err);
  t.is(ap.err, '');
  for (let i = 0; i < 3; i++) {
    const rd = await cli(['read', '--from', '0', '--server', servers]);
    t.is(rd.out, 'one\ntwo\n');
    t.is(rd.err, '');
  }
  // Named, a server that is down is listed as such (it used to be left out), and exits 2.
  const st = await cli(['status', '--server', servers]);
  t.is(st.code, 2, st.err);
  t.is(st.err, `loglog: 2 of 3 servers did not answer: ${dead.join(', ')}\n`);
  t.is(st.out.split('\n').filter((l) => l.startsWith('http')).length, 3, 'the node and both servers named');
  t.regex(st.out, new RegExp(`^${node.url}  leader  id n1  cluster loglog  term `, 'm'));
  for (const d of dead) t.regex(st.out, new RegExp(`^${d}  unreachable: .*\\(network\\)$`, 'm'));
  const json = await cli(['status', '--json', '--server', servers]);
  t.is(json.code, 2, json.err);
  const lines = json.out.trim().split('\n').map((l) => JSON.parse(l) as { server: string; role?: string; error?: { code: string } });
  t.deepEqual(lines.map((l) => [l.server, l.role ?? l.error?.code]), [[node.url, 'leader'], ...dead.map((d) => [d, 'network'])]);
  const end = await cli(['end', '--linearizable', '--server', servers]);
  t.is(end.code, 0, end.err);
  t.regex(end.out, /^\d+\n$/);
});

test.serial('read and tail from "start" (wherever trims left it) and "end" (only what comes next)', async (t) => {
  const n = await startNode(t, { args: ['--segment-bytes', '4KiB'] });
  const sdk = client(t, [n.url]);
  for (let i = 0; i < 12; i++) await sdk.append(Buffer.alloc(1000, i));
  const start = await sdk.trim(6000);
  const fromStart = await collect(sdk.read('start'));
  t.is(fromStart[0].offset, start);
  const viaCli = await cli(['read', '--from', 'start', '--format', 'json', '--server', n.url]);
  t.is(viaCli.code, 0, viaCli.err);
  t.is(JSON.parse(viaCli.out.split('\n')[0]).offset, start);
  const bad = await cli(['read', '--from', 'begin', '--server', n.url]);
  t.is(bad.code, 1, 'a usage error');
  t.regex(bad.err, /--from/);
  await t.throwsAsync(collect(sdk.read(0)), { instanceOf: LogError, message: /trimmed|below/ });
  const ac = new AbortController();
  const tailed: string[] = [];
  const tail = (async () => { for await (const e of sdk.tail('end', { signal: ac.signal })) { tailed.push(e.payload.toString()); ac.abort(); } })().catch(() => {});
  // Appends until the tail sees one: whichever it is, it is new, never one of the old entries.
  let k = 0;
  await until('the tail yields', 10_000, async () => { await sdk.append(Buffer.from(`next-${k++}`)); return tailed.length > 0 || undefined; });
  await tail;
  t.regex(tailed[0], /^next-\d+$/);
});
