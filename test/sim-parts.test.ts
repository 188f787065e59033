import test from 'ava';
import { cac } from 'cac';
import { Prng } from '../sim/prng.ts';
import { EventQueue } from '../sim/queue.ts';
import { SimDisk, emptyManglingStats } from '../sim/disk.ts';
import { Network } from '../sim/network.ts';
import { FrameChain } from '../sim/chain.ts';
import { registerSimCommand, type SimCliContext } from '../sim/cli.ts';
import { Kind, encodeFrame } from '../spec/frame.ts';

test('the PRNG is deterministic, forks are independent of later draws', (t) => {
  const a = new Prng(42), b = new Prng(42);
  const xs = Array.from({ length: 5 }, () => a.u32());
  t.deepEqual(Array.from({ length: 5 }, () => b.u32()), xs);
  t.notDeepEqual(Array.from({ length: 5 }, () => new Prng(43).u32()), xs);
  const p = new Prng(7);
  const f1 = p.fork('net').u32();
  p.u32();
  const q = new Prng(7);
  t.is(q.fork('net').u32(), f1, 'a fork depends on the seed and label, not on draws made after it');
  t.not(new Prng(7).fork('disk').u32(), f1);
  for (let i = 0; i < 1000; i++) {
    const x = a.float();
    t.true(x >= 0 && x < 1);
  }
});

test('the event queue runs events by time, ties in scheduling order', (t) => {
  const q = new EventQueue();
  const seen: string[] = [];
  q.at(5, () => seen.push('b'));
  q.at(1, () => seen.push('a'));
  q.at(5, () => seen.push('c'));
  q.at(5, () => q.after(0, () => seen.push('e')));
  q.at(9, () => seen.push('f'));
  q.at(5, () => seen.push('d'));
  q.runUntil(8);
  t.deepEqual(seen, ['a', 'b', 'c', 'd', 'e']);
  t.is(q.now, 8);
  q.runUntil(100);
  t.deepEqual(seen, ['a', 'b', 'c', 'd', 'e', 'f']);
});

test('the disk: writes are volatile until a sync issued after them completes', (t) => {
  const d = new SimDisk();
  const rng = new Prng(1);
  const stats = emptyManglingStats();
  d.write(0, Buffer.from('hello'));
  const mark = d.syncMark();
  d.write(5, Buffer.from('world'));
  t.is(d.view().toString(), 'helloworld');
  t.true(d.syncComplete(mark, rng, { keep: 1, lose: 0, partial: 0, garbage: 0 }, stats));
  t.is(d.durableView().toString(), 'hello', 'the sync covered only what was written before it');
  d.powerLoss(rng, { keep: 0, lose: 1, partial: 0, garbage: 0 }, stats);
  t.is(d.view().toString(), 'hello', 'power loss lost the unsynced write');
  t.is(stats.sectorsLost, 1);
});

test('the disk: power loss mangles per sector; truncation; ENOSPC; fsync errors', (t) => {
  const d = new SimDisk();
  const rng = new Prng(2);
  const stats = emptyManglingStats();
  d.write(0, Buffer.alloc(2048, 1));
  d.powerLoss(rng, { keep: 0, lose: 0, partial: 0, garbage: 1 }, stats);
  t.is(stats.sectorsGarbage, 4, 'four 512-byte sectors, each replaced by garbage');
  t.is(d.liveLen, 2048);
  t.false(d.view().equals(Buffer.alloc(2048, 1)));
  d.truncate(100);
  t.is(d.liveLen, 100);
  t.is(d.read(100, 4).toString('hex'), '00000000', 'bytes past the end read as zero');
  d.spaceLimit = 150;
  t.false(d.write(100, Buffer.alloc(100)), 'ENOSPC past the limit');
  t.true(d.write(0, Buffer.alloc(100)), 'overwriting inside the file still works');
  d.failSyncs = 1;
  t.false(d.syncComplete(d.syncMark(), rng, { keep: 1, lose: 0, partial: 0, garbage: 0 }, stats));
  t.true(d.syncComplete(d.syncMark(), rng, { keep: 1, lose: 0, partial: 0, garbage: 0 }, stats));
});

test('the disk: bytes below the start are gone, live, durable and pending; a reset starts over empty', (t) => {
  const d = new SimDisk();
  const rng = new Prng(4);
  const stats = emptyManglingStats();
  d.write(0, Buffer.alloc(1000, 1));
  d.syncComplete(d.syncMark(), rng, { keep: 1, lose: 0, partial: 0, garbage: 0 }, stats);
  d.write(0, Buffer.alloc(600, 2)); // pending, partly below the coming start
  t.is(d.trimTo(500), 500, 'bytes deleted');
  t.is(d.start, 500);
  t.true(d.read(0, 500).equals(Buffer.alloc(500)), 'live bytes below the start read as zero');
  t.true(d.durableView().subarray(0, 500).equals(Buffer.alloc(500)), 'and durable ones');
  t.true(d.write(100, Buffer.alloc(450, 3)), 'a write below the start lands nowhere but its part above');
  t.true(d.read(500, 50).equals(Buffer.alloc(50, 3)));
  d.powerLoss(rng, { keep: 1, lose: 0, partial: 0, garbage: 0 }, stats);
  t.true(d.read(0, 500).equals(Buffer.alloc(500)), 'a power loss brings nothing below the start back');
  t.true(d.read(500, 100).equals(Buffer.concat([Buffer.alloc(50, 3), Buffer.alloc(50, 2)])), 'pending writes above it survive as kept');
  t.is(d.trimTo(400), 0, 'a start never moves back');
  t.is(d.reset(4000), 500, 'a reset drops what the log held');
  t.deepEqual([d.start, d.liveLen, d.durableLen, d.pendingOps], [4000, 4000, 4000, 0]);
  t.is(d.view().length, 4000, 'the image reaches the start');
  t.true(d.view().equals(Buffer.alloc(4000)));
});

test('the network: partitions block their links and lift only their own', (t) => {
  const q = new EventQueue();
  const net = new Network(q, new Prng(3), ['n1', 'n2', 'c1'], { minDelay: 1, meanDelay: 1, tailP: 0, tailFactor: 1, drop: 0, duplicate: 0 });
  const got: string[] = [];
  net.partition([[0, 1]], 10);
  net.partition([[0, 1], [1, 0]], 20);
  t.false(net.send(0, 1, () => got.push('x'), false));
  q.runUntil(15);
  t.true(net.isBlocked(0, 1), 'the longer partition still holds');
  q.runUntil(25);
  t.false(net.isBlocked(0, 1));
  t.true(net.send(0, 1, () => got.push('y'), false));
  q.runUntil(100);
  t.deepEqual(got, ['y']);
});

test('frame chains fingerprint content, terms included', (t) => {
  const a = Buffer.concat([encodeFrame({ kind: Kind.Noop, term: 1, length: 0, crc: 0 }), encodeFrame({ kind: Kind.Noop, term: 2, length: 0, crc: 0 })]);
  const b = Buffer.concat([encodeFrame({ kind: Kind.Noop, term: 1, length: 0, crc: 0 }), encodeFrame({ kind: Kind.Noop, term: 3, length: 0, crc: 0 })]);
  const ca = new FrameChain(), cb = new FrameChain();
  ca.advance(a);
  cb.advance(b);
  t.is(ca.frames.length, 2);
  t.is(ca.cumAt(33), cb.cumAt(33));
  t.not(ca.cumAt(66), cb.cumAt(66), 'noops of different terms differ (the header CRC field is left out)');
  ca.invalidate(40);
  t.is(ca.end, 33);
});

test('frame chains from a start above 0 agree with the whole chain when seeded with its running value there', (t) => {
  const f = (term: number) => encodeFrame({ kind: Kind.Noop, term, length: 0, crc: 0 });
  const whole = Buffer.concat([f(1), f(1), f(2), f(2)]);
  const full = new FrameChain();
  full.advance(whole);
  // The same image with its first two frames deleted (zeroed), as a trimmed node's.
  const trimmed = Buffer.from(whole);
  trimmed.fill(0, 0, 66);
  const part = new FrameChain();
  part.rebase(66, full.cumAt(66)!);
  part.advance(trimmed);
  t.deepEqual([part.end, part.frames.length], [132, 2]);
  t.is(part.cumAt(132), full.cumAt(132), 'same running value at the end');
  t.is(part.cumAt(33), null, 'nothing below its start');
  const other = Buffer.from(trimmed);
  other.set(f(3), 99);
  const wrong = new FrameChain();
  wrong.rebase(66, full.cumAt(66)!);
  wrong.advance(other);
  t.not(wrong.cumAt(132), full.cumAt(132), 'a different frame above the start is told apart');
  // Rebasing a parsed chain keeps the frames above the new base when the running values agree.
  const moved = new FrameChain();
  moved.advance(whole);
  moved.rebase(66, full.cumAt(66)!);
  t.deepEqual([moved.base, moved.frames.length, moved.cumAt(132)], [66, 2, full.cumAt(132)]);
  moved.rebase(99, 12345);
  t.deepEqual([moved.frames.length, moved.end, moved.cum], [0, 99, 12345], 'and drops them when they do not');
});

/** Runs `loglog sim ARGS` in-process, capturing stdout, stderr and the exit code. */
async function runCli(args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '', err = '';
  const ctx: SimCliContext = {
    out: { write: (s) => { out += s; }, flush: () => undefined },
    io: { stderr: { write: (s: string) => { err += s; return true; } } as unknown as NodeJS.WritableStream },
    exitCode: 0,
  };
  const prog = cac('loglog');
  registerSimCommand(prog, ctx);
  prog.parse(['node', 'loglog', 'sim', ...args], { run: false });
  await prog.runMatchedCommand();
  return { out, err, code: ctx.exitCode };
}

test('loglog sim --seed replays one seed; --trace ends with the verdict', async (t) => {
  const r = await runCli(['--seed', '3']);
  t.is(r.code, 0);
  t.regex(r.out, /^seed 3: PASS/);
  const traced = await runCli(['--seed', '3', '--trace']);
  t.regex(traced.out, /verdict: PASS/);
  t.regex(traced.out, /START incarnation 1/);
});

test('loglog sim --seeds sweeps, exits 1 on a violation and names the reproducing seed', async (t) => {
  const ok = await runCli(['--seeds', '3', '--from', '10', '--json']);
  t.is(ok.code, 0);
  const res = JSON.parse(ok.out) as { seeds: number; failed: number; eventsPerSecond: number };
  t.is(res.seeds, 3);
  t.is(res.failed, 0);
  t.true(res.eventsPerSecond > 0);
  const bad = await runCli(['--seeds', '2', '--bug', 'ackBeforeFsync']);
  t.is(bad.code, 1);
  t.regex(bad.out, /commit-without-durable-majority/);
  t.regex(bad.out, /reproduce: loglog sim --seed 1 --nodes 3 --bug ackBeforeFsync --trace/);
  const usage = await runCli(['--seed', '1', '--bug', 'nope']);
  t.is(usage.code, 1);
  t.regex(usage.err, /unknown planted bug/);
});

test('loglog sim --scenario plays a scripted schedule', async (t) => {
  const r = await runCli(['--scenario', new URL('../sim/scenarios/whole-cluster-restart.json', import.meta.url).pathname]);
  t.is(r.code, 0);
  t.regex(r.out, /scenario whole-cluster-restart, seed 1: PASS/);
});
