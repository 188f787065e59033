/** The CLI against a real loglogd: 100,000 records in, the same records out, in order. */
import test from 'ava';
import { encodeBatch } from '../client/envelope.ts';
import { runCli, runCliInProcess, spawnCli } from './helpers/cli.ts';
import { LogClient } from '../client/log-client.ts';
import { startNode } from './helpers/node-process.ts';
import { request } from 'undici';
import { until } from './helpers/cluster.ts';

test('loglog append then read: 100,000 records round trip identical and in order', async (t) => {
  const n = await startNode(t);
  const records = Array.from({ length: 100_000 }, (_, i) => `record ${i} ${'#'.repeat(i % 37)}`);
  const appended = await runCli(['append', '--server', n.url], { stdin: records.join('\n') + '\n' });
  t.is(appended.code, 0, appended.err);
  const summary = JSON.parse(appended.out.trim());
  t.is(summary.records, 100_000);
  t.true(summary.entries >= 1);
  t.true(summary.first <= summary.last);

  const read = await runCli(['read', '--server', n.url, '--from', '0']);
  t.is(read.code, 0, read.err);
  const lines = read.out.split('\n');
  t.is(lines.pop(), '');
  t.is(lines.length, records.length);
  t.deepEqual(lines, records);

  const end = await runCli(['end', '--server', n.url]);
  t.is(end.code, 0);
  t.regex(end.out, /^\d+\n$/);
});

test('loglog append --file - reads stdin (it was refused as --file without its value), and --help says so', async (t) => {
  const n = await startNode(t);
  for (const args of [['--file', '-'], ['--file=-'], ['--raw', '--file', '-']]) {
    const appended = await runCli(['append', '--server', n.url, ...args], { stdin: 'from\nstdin\n' });
    t.is(appended.code, 0, `${args.join(' ')}: ${appended.err}`);
    t.like(JSON.parse(appended.out), { records: args.includes('--raw') ? 1 : 2 }, args.join(' '));
  }
  const read = await runCli(['read', '--server', n.url, '--from', 'start']);
  t.is(read.code, 0, read.err);
  t.is(read.out, 'from\nstdin\nfrom\nstdin\nfrom\nstdin\n\n');
  const help = await runCli(['append', '--help']);
  t.regex(help.out, /--file <path>.*--file - is stdin/);
});

test('CLI errors are one line on stderr with a non-zero exit', async (t) => {
  const n = await startNode(t);
  const bad = await runCli(['read', '--server', n.url, '--from', 'abc']);
  t.not(bad.code, 0);
  t.is(bad.err.trim().split('\n').length, 1, bad.err);
  const beyond = await runCli(['read', '--server', n.url, '--from', '999999999']);
  t.not(beyond.code, 0);
  t.is(beyond.err.trim().split('\n').length, 1, beyond.err);
  t.regex(beyond.err, /out_of_range|beyond/);
  const down = await runCli(['end', '--server', 'http://127.0.0.1:1']);
  t.not(down.code, 0);
  t.is(down.err.trim().split('\n').length, 1, down.err);
});

test('raw entries that start like an envelope read back as they are; a read that fails prints what came before', async (t) => {
  const n = await startNode(t);
  const append = (args: string[], stdin: string | Buffer) => runCli(['append', '--server', n.url, ...args], { stdin });
  t.is((await append([], 'before\n')).code, 0);
  t.is((await append(['--raw'], 'LLB1 is my favourite string')).code, 0);
  t.is((await append([], 'after\n')).code, 0);
  const read = await runCli(['read', '--server', n.url, '--from', '0']);
  t.is(read.code, 0, read.err);
  t.is(read.out, 'before\nLLB1 is my favourite string\nafter\n');

  // A real envelope whose records changed after it was sealed (its own CRC32C no longer
  // matches; the entry's checksum does, as the appender computed it over these bytes).
  const env = encodeBatch([Buffer.from('tampered')]);
  env[env.length - 1] ^= 1;
  t.is((await append(['--raw'], env)).code, 0);
  t.is((await append([], 'later\n')).code, 0);
  const failed = await runCli(['read', '--server', n.url, '--from', '0']);
  t.not(failed.code, 0);
  t.is(failed.out, 'before\nLLB1 is my favourite string\nafter\n');
  t.regex(failed.err, /checksum_mismatch/);
  t.is(failed.err.trim().split('\n').length, 1, failed.err);
});

test('loglog append stops at a record the server refuses: nothing after it is appended, and the one error line says what was', async (t) => {
  const n = await startNode(t);
  const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${from + i}\n`).join('');
  // One record above the server's 16 MiB entry limit, between two runs of small ones.
  const input = Buffer.concat([Buffer.from(lines(1, 100)), Buffer.alloc(17 << 20, 0x79), Buffer.from(`\n${lines(101, 200)}`)]);
  const r = await runCli(['append', '--server', n.url], { stdin: input });
  t.is(r.code, 2);
  t.is(r.err.trim().split('\n').length, 1, r.err);
  t.regex(r.err, /too_large.*the server takes entries of at most 16777216 bytes.*; the first 100 records were appended before it/);
  // stdout still has the summary: what a script learns of what landed.
  const summary = JSON.parse(r.out);
  t.like(summary, { records: 100, bytes: 192, interrupted: false, uncertain: 0, error: { code: 'too_large' } });
  t.true(summary.failed >= 1, `the refused record and any read after it: ${r.out}`);
  t.true(summary.entries >= 1 && summary.first <= summary.last);
  const read = await runCli(['read', '--server', n.url]);
  t.is(read.out, lines(1, 100));
});

test('loglog tail and an SDK follow wait out a node that is down for longer than their retries, and go on where they were', async (t) => {
  const first = await startNode(t);
  const port = Number(new URL(first.url).port);
  t.is((await runCli(['append', '--server', first.url], { stdin: 'before\n' })).code, 0);
  const tail = spawnCli(['tail', '--from', '0', '--server', first.url]);
  t.teardown(() => { tail.proc.kill('SIGKILL'); });
  await tail.waitOut(/before\n/);
  const client = new LogClient({ servers: [first.url], retry: { retries: 2, minDelayMs: 5, maxDelayMs: 50 } });
  t.teardown(() => client.close());
  const outages: string[] = [];
  const follow = client.read(0, { follow: true, waitMs: 200, onOutage: (e) => outages.push(e.code) })[Symbol.asyncIterator]();
  t.truthy((await follow.next()).value, 'the entry of "before"');

  await first.kill();
  await tail.waitErr(/waiting for the servers to come back/);
  const after = follow.next();
  const second = await startNode(t, { dataDir: first.dataDir, port });
  t.is((await runCli(['append', '--server', second.url], { stdin: 'after\n' })).code, 0);
  await tail.waitOut(/before\nafter\n/);
  t.truthy((await after).value, 'the follow read the entry appended after the restart');
  t.deepEqual([...new Set(outages)], ['network']);
});

test('loglog append refuses a record larger than the server takes by its line, after appending the lines before it', async (t) => {
  const n = await startNode(t, { args: ['--max-entry-bytes', '1KiB'] });
  const r = await runCli(['append', '--server', n.url], { stdin: `small1\n${'y'.repeat(3000)}\nsmall2\n` });
  t.is(r.code, 2);
  t.regex(r.err, /^loglog: line 2: a record of 3000 bytes cannot be appended: .* at most 1024 bytes \(too_large\).*; the first 1 records were appended before it/);
  t.is((await runCli(['read', '--server', n.url])).out, 'small1\n');
  // --raw too: the summary says nothing got in, the error line why.
  const raw = await runCliInProcess(['append', '--raw', '--server', n.url], 'y'.repeat(3000));
  t.is(raw.code, 2);
  t.like(JSON.parse(raw.out), { entries: 0, records: 0, bytes: 0, first: null, last: null, failed: 1, uncertain: 0, interrupted: false, error: { code: 'too_large' } });
  t.regex(raw.err, /^loglog: .*\(too_large\)/);
});

test('Ctrl-C of loglog append while an append is stuck (a frozen server) still says how many records got in', async (t) => {
  const n = await startNode(t);
  t.teardown(() => { n.proc.kill('SIGCONT'); });
  const lines = Array.from({ length: 3_000_000 }, (_, i) => `r-${i}`).join('\n') + '\n';
  const cli = spawnCli(['append', '--server', n.url], { stdin: lines });
  // Some records in, then the server freezes mid-stream.
  await until('records appended', 20_000, async () => {
    const r = await request(`${n.url}/v1/status`).then((x) => x.body.json() as Promise<{ commit: number }>, () => null);
    return r && r.commit > 100_000 ? true : undefined;
  });
  n.proc.kill('SIGSTOP');
  cli.proc.kill('SIGINT');
  const r = await cli.done;
  t.is(r.code, 130, r.err);
  t.regex(r.err, /^loglog: interrupted; (the first )?\d+ records were appended before it \(\d+ entries, offsets \d+\.\.\d+\); appends still under way may land too\n$/);
  const summary = JSON.parse(r.out);
  t.like(summary, { interrupted: true, error: { code: 'aborted' } });
  t.true(summary.records > 0 && summary.uncertain > 0 && summary.failed >= summary.uncertain, r.out);
  t.true(r.err.includes(`${summary.records} records were appended before it (${summary.entries} entries, offsets ${summary.first}..${summary.last})`), 'stdout and stderr agree');
});

test('Ctrl-C of loglog append waiting for input that does not come prints the summary of what was appended, and exits 130', async (t) => {
  const n = await startNode(t);
  const client = new LogClient({ servers: [n.url] });
  t.teardown(() => client.close());
  const before = await client.end();
  const cli = spawnCli(['append', '--server', n.url], { stdin: 'one\ntwo\n', holdStdin: true });
  t.teardown(() => { cli.proc.kill('SIGKILL'); });
  await until('both records appended', 20_000, async () => ((await client.end()) > before ? true : undefined));
  cli.proc.kill('SIGINT');
  const r = await cli.done;
  t.is(r.code, 130, r.err);
  t.like(JSON.parse(r.out), { entries: 1, records: 2, bytes: 6, failed: 0, uncertain: 0, interrupted: true });
  t.regex(r.err, /^loglog: interrupted; the first 2 records were appended before it \(1 entries, offsets \d+\.\.\d+\)\n$/);
});

test('loglog append --raw refuses the batching flags, naming the conflict, and appends nothing for empty input', async (t) => {
  const n = await startNode(t);
  const end = async () => (await runCliInProcess(['end', '--server', n.url])).out;
  const before = await end();
  for (const flags of [['--digest', 'sha256'], ['--linger', '5'], ['--batch-bytes=1KiB'], ['--max-in-flight', '4', '--digest', 'sha256']]) {
    const r = await runCliInProcess(['append', '--raw', '--server', n.url, ...flags], 'payload');
    t.is(r.code, 1, flags.join(' '));
    t.is(r.out, '');
    t.is(r.err.trim().split('\n').length, 1, r.err);
    t.regex(r.err, /^loglog: --raw appends the input as one entry, as is, so --\S+( and --\S+)? \(for batches of records\) cannot apply/, flags.join(' '));
    for (const f of flags.filter((x) => x.startsWith('--'))) t.true(r.err.includes(f.replace(/=.*/, '')), `${f} named: ${r.err}`);
  }
  const empty = await runCliInProcess(['append', '--raw', '--server', n.url], '');
  t.is(empty.code, 0, empty.err);
  t.deepEqual(JSON.parse(empty.out), { entries: 0, records: 0, bytes: 0, first: null, last: null });
  t.is(await end(), before, 'nothing was appended');
  const one = await runCliInProcess(['append', '--raw', '--acks', 'all', '--server', n.url], 'as is');
  t.is(one.code, 0, one.err);
  t.like(JSON.parse(one.out), { entries: 1, records: 1, bytes: 5 });
});

test('loglog trim says why the log start stays short of --before: only whole segments go', async (t) => {
  const n = await startNode(t, { args: ['--segment-bytes', '4KiB'] });
  const client = new LogClient({ servers: [n.url] });
  t.teardown(() => client.close());
  for (let i = 0; i < 12; i++) await client.append(Buffer.alloc(1000, i));
  const trim = (before: number) => runCliInProcess(['trim', '--server', n.url, '--before', String(before)]);

  const none = await trim(100);
  t.is(none.code, 0, none.err);
  t.is(none.out, '0\n');
  t.is(none.err, 'loglog: nothing was deleted: the log still starts at 0; only whole segments are deleted, and the segment from 0 reaches past 100 (segments are loglogd\'s --segment-bytes long, 64MiB by default)\n');

  const some = await trim(6000);
  t.is(some.code, 0, some.err);
  const start = Number(some.out);
  t.true(start > 0 && start < 6000, some.out);
  t.is(some.err, `loglog: deleted the segments below ${start} (the log started at 0); only whole segments are deleted, and the segment from ${start} reaches past 6000 (segments are loglogd's --segment-bytes long, 64MiB by default)\n`);

  // Up to a segment boundary: the start is where it was asked to be, nothing to explain.
  const exact = await trim(start);
  t.deepEqual([exact.code, exact.out, exact.err], [0, `${start}\n`, '']);

  // Up to the commit end: every sealed segment goes; the one being written holds nothing at or
  // past the end, and is kept all the same (it was said to "reach past" the end).
  const end = await client.end();
  const all = await trim(end);
  t.is(all.code, 0, all.err);
  const active = Number(all.out);
  t.true(active > start && active < end, all.out);
  t.is(all.err, `loglog: deleted the segments below ${active} (the log started at ${start}); only whole segments are deleted, and the segment from ${active} is the one being written, which is kept until it is full (segments are loglogd's --segment-bytes long, 64MiB by default)\n`);
  const again = await trim(end);
  t.is(again.err, `loglog: nothing was deleted: the log still starts at ${active}; only whole segments are deleted, and the segment from ${active} is the one being written, which is kept until it is full (segments are loglogd's --segment-bytes long, 64MiB by default)\n`);
});
