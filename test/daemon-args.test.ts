import test from 'ava';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_SERVERS } from '../client/log-client.ts';
import { DAEMON_EXAMPLES, DEFAULT_NODE_CONFIG, configWarnings, loadConfig, parseDaemonArgv } from '../server/config.ts';
import { loglogdArgv } from '../server/daemon-argv.ts';
import { tryLine } from '../server/main.ts';
import { FRAME_OVERHEAD } from '../spec/frame.ts';
import { freePortRange } from '../client/cli/commands/dev.ts';
import { spawnLoglogd, tempDir } from './helpers/node-process.ts';
import { runCli } from './helpers/cli.ts';

/** Runs loglogd to its exit; a run that has not exited after 10 s is killed (and fails). */
function runLoglogd(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, loglogdArgv(args), { stdio: ['ignore', 'ignore', 'pipe'], env });
  const guard = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  return new Promise((res) => proc.once('close', (code) => { clearTimeout(guard); res({ code, stderr }); }));
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const usageError = (t: import('ava').ExecutionContext, argv: string[], message: RegExp) =>
  t.throws(() => loadConfig(parseDaemonArgv(argv)), { message }, argv.join(' '));

/** A config file holding `json` (an object, or raw text). */
async function configFile(t: import('ava').ExecutionContext, json: unknown): Promise<string> {
  const file = join(await tempDir(t, 'loglog-config-'), 'config.json');
  await writeFile(file, typeof json === 'string' ? json : JSON.stringify(json));
  return file;
}

test('parseDaemonArgv reads every flag form and keeps values exact', (t) => {
  const flags = parseDaemonArgv(['--data', 'd', '--listen=127.0.0.1:0', '--id', '007', '--stop-on-stdin-close', '--segment-bytes', '-5']);
  t.deepEqual([...flags], [['data', 'd'], ['listen', '127.0.0.1:0'], ['id', '007'], ['stop-on-stdin-close', true], ['segment-bytes', '-5']]);
  t.is(parseDaemonArgv(['--data=-odd']).get('data'), '-odd', 'a value that looks like a flag can be given with =');
  t.true(parseDaemonArgv(['-h']).has('help'));
  t.true(parseDaemonArgv(['--version']).has('version'));
});

test('parseDaemonArgv rejects unknown flags, suggesting the closest known one', (t) => {
  usageError(t, ['--bogus'], /^unknown flag --bogus \(loglogd --help lists them\)$/);
  usageError(t, ['--segment-byte', '4KiB'], /^unknown flag --segment-byte; did you mean --segment-bytes\?$/);
  usageError(t, ['--segmentBytes', '4KiB'], /did you mean --segment-bytes\?/);
  usageError(t, ['--data', 'd', 'stray'], /^unexpected argument "stray"/);
  usageError(t, ['-x'], /^unexpected argument "-x"/);
});

test('parseDaemonArgv rejects a value-taking flag without its value', (t) => {
  usageError(t, ['--listen', '127.0.0.1:0', '--data'], /^--data needs a value \(--data <dir>\)$/);
  usageError(t, ['--data', '--listen', '127.0.0.1:0'], /^--data needs a value/);
  usageError(t, ['--config', '-h'], /^--config needs a value/);
  usageError(t, ['--id='], /^--id needs a value/);
  usageError(t, ['--stop-on-stdin-close=yes'], /^--stop-on-stdin-close takes no value$/);
});

test('parseDaemonArgv rejects a repeated flag', (t) => {
  usageError(t, ['--data', 'a', '--data', 'b'], /^--data was given more than once/);
  usageError(t, ['--stop-on-stdin-close', '--stop-on-stdin-close'], /^--stop-on-stdin-close was given more than once/);
});

test('bad flags: loglogd exits 1 with one line naming the flag, and creates nothing', async (t) => {
  const dir = await tempDir(t, 'loglog-args-');
  const data = join(dir, 'data');
  for (const [args, message] of [
    [['--data', data, '--listen', '127.0.0.1:0', '--bogus'], 'unknown flag --bogus'],
    [['--data', data, '--listen', '127.0.0.1:0', '--segment-byte', '4KiB'], 'did you mean --segment-bytes?'],
    [['--listen', '127.0.0.1:0', '--data'], '--data needs a value'],
    [['--data', data, '--data', join(dir, 'other'), '--listen', '127.0.0.1:0'], '--data was given more than once'],
  ] as const) {
    const { code, stderr } = await runLoglogd(args);
    t.is(code, 1, stderr);
    t.is(stderr.split('\n').length, 2, stderr);
    t.true(stderr.startsWith('loglogd: ') && stderr.includes(message), stderr);
  }
  t.false(existsSync(data));
  t.false(existsSync('true'), 'a value-less --data once became a directory named "true"');
});

test('cluster settings are checked before anything is created: this node among the peers, each id once, real URLs, a secret; a port in use too', async (t) => {
  const env = { LOGLOG_CLUSTER_SECRET: 's' };
  const bad = (argv: string[], message: RegExp, e: NodeJS.ProcessEnv = env) => t.throws(() => loadConfig(parseDaemonArgv(argv), e), { message }, argv.join(' '));
  bad(['--id', 'n1', '--peers', 'n1=http://a:1,n1=http://b:2'], /--peers names n1 twice/);
  bad(['--id', 'n1', '--peers', 'n1=http://a:1,n2=notaurl'], /--peers n2: "notaurl" is not a URL like http:\/\/host:7401/);
  bad(['--id', 'n3', '--peers', 'n1=http://a:1,n2=http://b:2'], /--peers must list this node \(n3\) too/);
  bad(['--id', 'n1', '--peers', 'n1=http://a:1,n2=http://b:2'], /a cluster needs a shared secret/, {});

  const dir = await tempDir(t, 'loglog-args-');
  const data = join(dir, 'data');
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  const port = (taken.address() as AddressInfo).port;
  const { code, stderr } = await runLoglogd(['--data', data, '--listen', `127.0.0.1:${port}`]);
  taken.close();
  t.is(code, 1, stderr);
  t.regex(stderr, /^loglogd: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\): another process has it; pick another --listen port\n$/);
  t.false(existsSync(data), 'no data directory, no log, no lock');

  // An address that is not this machine's (192.0.2.1 is TEST-NET-1): the line says what to give instead.
  const elsewhere = await runLoglogd(['--data', data, '--listen', `192.0.2.1:${port}`]);
  t.is(elsewhere.code, 1, elsewhere.stderr);
  t.regex(elsewhere.stderr, /^loglogd: cannot listen on 192\.0\.2\.1:\d+ \(EADDRNOTAVAIL\): 192\.0\.2\.1 is not an address of this machine; --listen takes one of its own, or 0\.0\.0\.0 for every interface\n$/);
  t.false(existsSync(data), 'no data directory, no log, no lock');
});

test('flags override the config file, which overrides the defaults', async (t) => {
  const file = await configFile(t, { data: 'from-file', segmentBytes: '1MiB', maxEntryBytes: 65536, retention: { maxAge: '7d' }, peers: { n1: 'http://a:1' } });
  const c = loadConfig(parseDaemonArgv(['--config', file, '--data', 'from-flag', '--retention-max-bytes', '1GiB']), { LOGLOG_CLUSTER_SECRET: 's' });
  t.deepEqual(
    [c.dataDir, c.segmentBytes, c.maxEntryBytes, c.retention, c.peers, c.clusterSecret, c.port],
    ['from-flag', 1 << 20, 65536, { maxAgeMs: 7 * 86_400_000, maxBytes: 1 << 30 }, [{ id: 'n1', url: 'http://a:1' }], 's', DEFAULT_NODE_CONFIG.port],
  );
  t.is(loadConfig(parseDaemonArgv(['--cluster-secret', 'flag']), { LOGLOG_CLUSTER_SECRET: 'env' }).clusterSecret, 'flag');
  t.like(loadConfig(parseDaemonArgv([])), { scrubIntervalMs: 7 * 86_400_000, scrubBytesPerSec: 32 << 20 });
  t.like(loadConfig(parseDaemonArgv(['--scrub-interval', '1d', '--scrub-rate', '8MiB'])), { scrubIntervalMs: 86_400_000, scrubBytesPerSec: 8 << 20 });
  for (const off of ['0', 'off']) t.is(loadConfig(parseDaemonArgv(['--scrub-interval', off])).scrubIntervalMs, 0, off);
  t.is(loadConfig(parseDaemonArgv([]), { LOGLOG_CLUSTER_SECRET: '' }).clusterSecret, null);
  t.false(loadConfig(parseDaemonArgv([])).newCluster);
  t.true(loadConfig(parseDaemonArgv(['--new-cluster'])).newCluster);
  t.true(loadConfig(parseDaemonArgv(['--config', await configFile(t, { newCluster: true })])).newCluster);
  t.throws(() => loadConfig(parseDaemonArgv(['--new-cluster=yes'])), { message: /--new-cluster takes no value/ });
  const bad = await configFile(t, { newCluster: 'yes' });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', bad])), { message: /newCluster.* must be true or false, got "yes"$/ });
});

test('a bad value is reported against the flag that gave it, with the value as given', (t) => {
  usageError(t, ['--segment-bytes', '-5'], /^--segment-bytes takes a size like 64MiB, got "-5"$/);
  usageError(t, ['--segment-bytes=-5'], /^--segment-bytes takes a size like 64MiB, got "-5"$/);
  usageError(t, ['--segment-bytes', '1KiB'], /^--segment-bytes must be from 4KiB to .*, got "1KiB"$/);
  usageError(t, ['--retention-max-age', '-1d'], /^--retention-max-age takes a duration with its unit \(ms, s, m, h or d\), like 500ms, 10s or 7d \(in a config file, also a whole number of milliseconds\), got "-1d"$/);
  // A bare number was milliseconds: "--retention-max-age 7" deleted nearly the whole log.
  usageError(t, ['--retention-max-age', '7'], /^--retention-max-age takes a duration with its unit/);
  usageError(t, ['--retention-max-age', '0d'], /^--retention-max-age must be at least 1ms/);
  usageError(t, ['--retention-max-bytes', '0'], /^--retention-max-bytes must be at least 1 byte/);
  usageError(t, ['--body-deadline', '10 parsecs'], /^--body-deadline takes a duration/);
  usageError(t, ['--max-entry-bytes', '99999999999999999999'], /^--max-entry-bytes takes a size/);
  usageError(t, ['--scrub-interval', '7'], /^--scrub-interval takes a duration with its unit/);
  usageError(t, ['--scrub-rate', '0'], /^--scrub-rate must be at least 1 byte \(per second\), like 32MiB, got "0"$/);
});

test('a bad value in a config file is reported against its key and the file', async (t) => {
  const small = await configFile(t, { segmentBytes: '1KiB' });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', small])), { message: `segmentBytes in config file ${small} must be from 4KiB to 4294967295 bytes (4GiB - 1), got "1KiB"` });
  for (const [json, message] of [
    [{ retention: { maxBytes: -1 } }, /^retention\.maxBytes in config file .* takes a size like 64MiB, got -1$/],
    [{ bodyDeadline: 1.5 }, /^bodyDeadline in config file .* takes a duration/],
    [{ heartbeat: -5 }, /^heartbeat in config file .* takes a duration .*also a whole number of milliseconds\), got -5$/],
    [{ heartbeat: '2s', electionTimeout: '300ms' }, /^heartbeat \(2000ms\) must be at most half of electionTimeout \(300ms\)/],
    [{ data: 5 }, /^data in config file .* must be a non-empty string, got 5$/],
    [{ peers: { n1: 7 } }, /^the URL of peer n1 in peers in config file .* must be a non-empty string, got 7$/],
    [{ retention: '7d' }, /^retention in config file .* must be an object/],
    [[], /^config file .* must hold a JSON object/],
    ['{"data": ', /^cannot read config file /],
  ] as const) {
    const file = await configFile(t, json);
    t.throws(() => loadConfig(parseDaemonArgv(['--config', file])), { message }, JSON.stringify(json));
  }
});

test('an unknown key in a config file is an error naming the key and the file', async (t) => {
  const bogus = await configFile(t, { bogusKey: 1 });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', bogus])), { message: `config file ${bogus}: unknown key "bogusKey"; the keys are id, data, listen, peers, clusterSecret, clusterName, segmentBytes, maxEntryBytes, bodyDeadline, electionTimeout, heartbeat, uploadDeadline, allAckTimeout, retention.maxAge, retention.maxBytes, scrubInterval, scrubRate, newCluster` });
  const typo = await configFile(t, { segmentByte: '64MiB' });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', typo])), { message: `config file ${typo}: unknown key "segmentByte"; did you mean "segmentBytes"?` });
  const nested = await configFile(t, { retention: { maxage: '7d' } });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', nested])), { message: /unknown key "retention\.maxage"; did you mean "retention\.maxAge"\?/ });
  const inherited = await configFile(t, { constructor: 1 });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', inherited])), { message: /unknown key "constructor"/ });
});

test('--listen takes HOST:PORT, and says so when given a URL', (t) => {
  t.like(loadConfig(parseDaemonArgv(['--listen', '[::1]:7401'])), { host: '::1', port: 7401 });
  t.like(loadConfig(parseDaemonArgv(['--listen', '0.0.0.0:0'])), { host: '0.0.0.0', port: 0 });
  usageError(t, ['--listen', 'http://127.0.0.1:0'], /^--listen takes HOST:PORT, e\.g\. 127\.0\.0\.1:7400, not a URL; got "http:\/\/127\.0\.0\.1:0"$/);
  usageError(t, ['--listen', 'localhost/x:7400'], /^--listen takes HOST:PORT, e\.g\. 127\.0\.0\.1:7400; got "localhost\/x:7400"$/);
  usageError(t, ['--listen', '127.0.0.1:70000'], /^--listen takes HOST:PORT/);
  usageError(t, ['--listen', '7400'], /^--listen takes HOST:PORT/);
});

test('--listen :PORT (no host) is refused, naming both choices: it bound 127.0.0.1 where Go and NATS users expect every interface', async (t) => {
  const choices = (given: string, port: string) => `"${given}" names no host: write 127.0.0.1:${port} for this machine only, or 0.0.0.0:${port} for every interface (anyone who reaches the API can append and trim: it has no authentication)`;
  for (const given of [':7400', '[]:7400']) usageError(t, ['--listen', given], new RegExp(`^--listen ${escape(choices(given, '7400'))}$`));
  const file = await configFile(t, { listen: ':7401' });
  t.throws(() => loadConfig(parseDaemonArgv(['--config', file])), { message: `listen in config file ${file} ${choices(':7401', '7401')}` });
  const data = join(await tempDir(t, 'loglog-args-'), 'data');
  const { code, stderr } = await runLoglogd(['--data', data, '--listen', ':0']);
  t.is(code, 1);
  t.is(stderr, `loglogd: --listen ${choices(':0', '0')}\n`);
  t.false(existsSync(data), 'nothing created');
});

test('loglogd --listen with a URL exits 1 with the HOST:PORT usage line (it failed in a DNS lookup)', async (t) => {
  const { code, stderr } = await runLoglogd(['--data', join(await tempDir(t, 'loglog-args-'), 'data'), '--listen', 'http://127.0.0.1:0']);
  t.is(code, 1);
  t.is(stderr, 'loglogd: --listen takes HOST:PORT, e.g. 127.0.0.1:7400, not a URL; got "http://127.0.0.1:0"\n');
});

test('entry sizes and deadlines are bounded, and the message says the range', (t) => {
  t.is(loadConfig(parseDaemonArgv(['--max-entry-bytes', '4294967262'])).maxEntryBytes, 0xffff_ffff - FRAME_OVERHEAD);
  t.is(loadConfig(parseDaemonArgv(['--max-entry-bytes', '1GiB', '--segment-bytes', '64MiB'])).maxEntryBytes, 1 << 30, 'an entry larger than a segment gets a segment of its own');
  const range = /^--max-entry-bytes must be from 1 to 4294967262 bytes \(a frame, 33 bytes more, must fit in 4GiB - 1\), got /;
  for (const bad of ['100GiB', '4294967263', '0']) usageError(t, ['--max-entry-bytes', bad], range);
  t.is(loadConfig(parseDaemonArgv(['--body-deadline', '1ms'])).bodyDeadlineMs, 1);
  usageError(t, ['--body-deadline', '0ms'], /^--body-deadline must be at least 1ms, got "0ms"$/);
  usageError(t, ['--body-deadline', '-10s'], /^--body-deadline takes a duration with its unit .*, got "-10s"$/);
  usageError(t, ['--segment-bytes', '4GiB'], /^--segment-bytes must be from 4KiB to 4294967295 bytes \(4GiB - 1\), got "4GiB"$/);
});

test('the start-up hint names the node with --server unless it is on the CLI\'s default address', (t) => {
  t.is(DEFAULT_SERVERS[0], `http://${DEFAULT_NODE_CONFIG.host}:${DEFAULT_NODE_CONFIG.port}`, 'the CLI tries the daemon\'s default address first');
  t.is(tryLine(DEFAULT_SERVERS[0]), 'try:  echo hello | npx loglog append   then   npx loglog read --from start   (Ctrl-C stops)');
  t.is(tryLine('http://[::1]:7400'), 'try:  echo hello | npx loglog append --server http://[::1]:7400   then   npx loglog read --from start --server http://[::1]:7400   (Ctrl-C stops)');
});

test('loglogd on another port prints a hint whose commands go to it, and work after a trim (--from 0 failed: trimmed)', async (t) => {
  const d = spawnLoglogd(['--data', await tempDir(t, 'loglog-args-'), '--listen', '127.0.0.1:0', '--segment-bytes', '4KiB']);
  t.teardown(() => { d.proc.kill('SIGKILL'); });
  const url = await d.serving;
  const hint = await new Promise<string>((res) => {
    const check = () => { const m = /^loglogd: try: .*$/m.exec(d.stderr()); if (m) res(m[0]); };
    d.proc.stderr!.on('data', check);
    check();
  });
  const m = /^loglogd: try: {2}echo hello \| npx loglog (append --server \S+) {3}then {3}npx loglog (read .*--server \S+) {3}\(Ctrl-C stops\)$/.exec(hint);
  t.truthy(m, hint);
  const [append, read] = [m![1].split(' '), m![2].split(' ')];
  t.deepEqual(append, ['append', '--server', url]);
  // Records past a segment of 4 KiB, then a trim of that segment: offset 0 is gone.
  const records = Array.from({ length: 100 }, (_, i) => `record ${i} ${'x'.repeat(100)}`);
  t.is((await runCli(append, { stdin: `${records.join('\n')}\n` })).code, 0);
  t.is((await runCli(['append', '--server', url, '--raw'], { stdin: 'last' })).code, 0);
  const trimmed = await runCli(['trim', '--server', url, '--before', (await runCli(['end', '--server', url])).out.trim()]);
  t.true(Number(trimmed.out) > 0, trimmed.out + trimmed.err);
  const r = await runCli(read);
  t.is(r.code, 0, `${read.join(' ')}: ${r.err}`);
  t.true(r.out.endsWith('last\n'), r.out);
  d.proc.kill('SIGINT');
  t.is(await d.exited, 0);
});

test('a data directory that cannot be created is one line and exit 1, at once (under /proc it spun forever)', async (t) => {
  const { code, stderr } = await runLoglogd(['--data', '/proc/nope/data', '--listen', '127.0.0.1:0']);
  t.is(code, 1);
  t.is(stderr, "loglogd: cannot create the data directory /proc/nope/data: ENOENT: no such file or directory, mkdir '/proc/nope'\n");
  const file = join(await tempDir(t, 'loglog-args-'), 'file');
  await writeFile(file, '');
  const onFile = await runLoglogd(['--data', file, '--listen', '127.0.0.1:0']);
  t.is(onFile.code, 1);
  t.is(onFile.stderr, `loglogd: cannot create the data directory ${file}: it exists and is not a directory\n`);
});

test('missing parents of the data directory are created', async (t) => {
  const dir = join(await tempDir(t, 'loglog-args-'), 'a', 'b', 'data');
  const d = spawnLoglogd(['--data', dir, '--listen', '127.0.0.1:0']);
  t.teardown(() => { d.proc.kill('SIGKILL'); });
  await d.serving;
  t.true(existsSync(join(dir, 'hardstate')), d.stderr());
  d.proc.kill('SIGINT');
  t.is(await d.exited, 0);
});

test('SIGHUP (a terminal closing) stops loglogd cleanly as SIGINT and SIGTERM do: synced, lock released, exit 0; also with its stderr gone', async (t) => {
  const dir = await tempDir(t, 'loglog-hup-');
  for (const stderrGone of [false, true]) {
    const d = spawnLoglogd(['--data', dir, '--listen', '127.0.0.1:0']);
    t.teardown(() => { d.proc.kill('SIGKILL'); });
    const url = await d.serving;
    const r = await fetch(`${url}/v1/append`, { method: 'POST', body: `entry ${stderrGone}` });
    t.is(r.status, 200, await r.text());
    if (stderrGone) {
      // A closed terminal: nobody reads the node's stderr any more, and its stop says so there.
      const closed = new Promise((res) => d.proc.stderr!.once('close', res));
      d.proc.stderr!.destroy();
      await closed;
    }
    d.proc.kill('SIGHUP');
    t.is(await d.exited, 0, d.stderr());
    if (!stderrGone) t.regex(d.stderr(), /loglogd: SIGHUP: syncing and closing\.\.\.\nloglogd: stopped cleanly\n$/);
    t.false(existsSync(join(dir, 'lock')), 'a clean stop removes the lock');
  }
  // Both entries were kept.
  const d = spawnLoglogd(['--data', dir, '--listen', '127.0.0.1:0']);
  t.teardown(() => { d.proc.kill('SIGKILL'); });
  const body = Buffer.from(await (await fetch(`${await d.serving}/v1/read?offset=0`)).arrayBuffer()).toString();
  t.true(body.includes('entry false') && body.includes('entry true'), body);
  d.proc.kill('SIGINT');
  t.is(await d.exited, 0);
});

test('--peers naming this node at another port than --listen is a warning at start, not a refusal (a proxy may forward it)', async (t) => {
  const env = { LOGLOG_CLUSTER_SECRET: 's' };
  const warnings = (argv: string[]) => configWarnings(loadConfig(parseDaemonArgv(argv), env));
  const peers = (self: string) => ['--id', 'n1', '--peers', `n1=${self},n2=http://127.0.0.1:7401`];
  t.deepEqual(warnings([...peers('http://127.0.0.1:7400'), '--listen', '127.0.0.1:7400']), []);
  t.deepEqual(warnings([...peers('http://node-1.example:7400'), '--listen', '0.0.0.0:7400']), [], 'only ports are compared: a host may have many names');
  t.deepEqual(warnings([...peers('http://127.0.0.1:7999'), '--listen', '127.0.0.1:0']), [], 'port 0 is picked at start');
  t.deepEqual(warnings(['--listen', '127.0.0.1:7400']), [], 'a cluster of one has no peer list');
  t.deepEqual(warnings([...peers('https://lb.example'), '--listen', '127.0.0.1:443']), [], 'a URL without a port has its scheme\'s');
  const [w, ...more] = warnings([...peers('http://127.0.0.1:7401'), '--listen', '127.0.0.1:7400']);
  t.deepEqual(more, []);
  t.regex(w, /^the peer list names this node \(n1\) http:\/\/127\.0\.0\.1:7401, port 7401, but it listens on port 7400: peers and clients will not reach it unless a proxy or NAT forwards port 7401 here/);

  // The real daemon says so in one line on stderr, and starts.
  const port = await freePortRange(1);
  const d = spawnLoglogd(['--data', await tempDir(t, 'loglog-args-'), '--listen', `127.0.0.1:${port}`, '--id', 'n1', '--peers', `n1=http://127.0.0.1:${port + 1}`], { env: { ...process.env, ...env } });
  t.teardown(() => { d.proc.kill('SIGKILL'); });
  await d.serving;
  const lines = d.stderr().split('\n').filter((l) => l.includes('warning'));
  t.is(lines.length, 1, d.stderr());
  t.is(lines[0], `loglogd: warning: the peer list names this node (n1) http://127.0.0.1:${port + 1}, port ${port + 1}, but it listens on port ${port}: peers and clients will not reach it unless a proxy or NAT forwards port ${port + 1} here; otherwise fix --peers or --listen`);
  d.proc.kill('SIGINT');
  t.is(await d.exited, 0);
});

test('a data directory is stamped with its node and cluster at the first start; started as another node or cluster it is refused in one line, untouched', async (t) => {
  const dir = join(await tempDir(t, 'loglog-args-'), 'data');
  const first = spawnLoglogd(['--data', dir, '--listen', '127.0.0.1:0', '--cluster-name', 'orders']);
  t.teardown(() => { first.proc.kill('SIGKILL'); });
  await first.serving;
  first.proc.kill('SIGINT');
  t.is(await first.exited, 0);
  const stamp = readFileSync(join(dir, 'identity'), 'utf8');
  t.deepEqual(JSON.parse(stamp), { cluster: 'orders', node: 'n1', members: ['n1'] });
  const hard = readFileSync(join(dir, 'hardstate'), 'utf8');
  const refused = async (args: string[], what: string) => {
    const { code, stderr } = await runLoglogd(['--data', dir, '--listen', '127.0.0.1:0', ...args]);
    t.is(code, 1, stderr);
    t.is(stderr, `loglogd: the data directory ${dir} belongs to ${what}: start it with --id n1 --cluster-name orders, or give this node an empty --data directory (it then copies the log from its peers)\n`);
  };
  await refused(['--id', 'n2', '--cluster-name', 'orders'], 'node n1, not n2');
  await refused([], 'node n1 of cluster "orders", not node n1 of cluster "loglog"');
  await refused(['--id', 'n3', '--cluster-name', 'payments'], 'node n1 of cluster "orders", not node n3 of cluster "payments"');
  t.is(readFileSync(join(dir, 'identity'), 'utf8'), stamp);
  t.is(readFileSync(join(dir, 'hardstate'), 'utf8'), hard, 'a refused start changes nothing');
  // A directory from before the stamp existed is stamped with what it is started as.
  rmSync(join(dir, 'identity'));
  const again = spawnLoglogd(['--data', dir, '--listen', '127.0.0.1:0', '--id', 'n1', '--cluster-name', 'orders']);
  t.teardown(() => { again.proc.kill('SIGKILL'); });
  await again.serving;
  again.proc.kill('SIGINT');
  t.is(await again.exited, 0);
  t.is(readFileSync(join(dir, 'identity'), 'utf8'), stamp);
  // A damaged stamp is not guessed at.
  writeFileSync(join(dir, 'identity'), '{"clu');
  const { code, stderr } = await runLoglogd(['--data', dir, '--listen', '127.0.0.1:0', '--cluster-name', 'orders']);
  t.is(code, 1);
  t.regex(stderr, /^loglogd: identity in .* is damaged \(it should hold \{"cluster":"\.\.\.","node":"\.\.\."\}\)/);
});

test('a data directory is stamped with its members: started with others (a member without --peers, a fourth member) it is refused in one line; new addresses are fine', async (t) => {
  const dir = join(await tempDir(t, 'loglog-args-'), 'data');
  const env = { ...process.env, LOGLOG_CLUSTER_SECRET: 's' };
  const peers = (a: number) => `--peers=n3=http://127.0.0.1:${a + 2},n1=http://127.0.0.1:${a},n2=http://127.0.0.1:${a + 1}`;
  const start = async (args: string[]) => {
    const d = spawnLoglogd(['--data', dir, '--listen', '127.0.0.1:0', '--id', 'n2', ...args], { env });
    t.teardown(() => { d.proc.kill('SIGKILL'); });
    await d.serving;
    d.proc.kill('SIGINT');
    t.is(await d.exited, 0);
  };
  await start([peers(7711)]);
  const stamp = readFileSync(join(dir, 'identity'), 'utf8');
  t.deepEqual(JSON.parse(stamp), { cluster: 'loglog', node: 'n2', members: ['n1', 'n2', 'n3'] });
  const refused = async (args: string[], what: string) => {
    const { code, stderr } = await runLoglogd(['--data', dir, '--listen', '127.0.0.1:0', '--id', 'n2', ...args], env);
    t.is(code, 1, stderr);
    t.is(stderr, `loglogd: the data directory ${dir} belongs to node n2 of a cluster of n1, n2, n3, but it was started as a member of ${what}: loglog has no membership change, and a member with another idea of the cluster could overwrite committed entries; start it with --peers naming n1, n2, n3, or give this node an empty --data directory\n`);
  };
  await refused([], 'a cluster of one (n2)');
  await refused([`${peers(7711)},n4=http://127.0.0.1:7799`], 'a cluster of n1, n2, n3, n4');
  t.is(readFileSync(join(dir, 'identity'), 'utf8'), stamp, 'a refused start changes nothing');
  // The same members at other addresses.
  await start([peers(7811)]);
  t.is(readFileSync(join(dir, 'identity'), 'utf8'), stamp);
  // A stamp from before members were kept gets them at the next start.
  writeFileSync(join(dir, 'identity'), '{"cluster":"loglog","node":"n2"}\n');
  await start([peers(7711)]);
  t.is(readFileSync(join(dir, 'identity'), 'utf8'), stamp);
});

test('--cluster-name takes a short name of id characters', (t) => {
  usageError(t, ['--cluster-name', 'a b'], /--cluster-name takes 1-64 characters of A-Z a-z 0-9 _ \. : -, got "a b"/);
  usageError(t, ['--cluster-name', 'x'.repeat(65)], /--cluster-name takes 1-64 characters/);
  t.is(loadConfig(parseDaemonArgv(['--cluster-name', 'orders.eu-1'])).clusterName, 'orders.eu-1');
  t.is(loadConfig(parseDaemonArgv([])).clusterName, 'loglog');
});

test('--id and the ids in --peers take the same characters as --cluster-name; spaces around the pairs are dropped', (t) => {
  usageError(t, ['--id', 'node 1'], /--id takes 1-64 characters of A-Z a-z 0-9 _ \. : -, got "node 1"/);
  usageError(t, ['--id', 'a/b'], /--id takes 1-64 characters/);
  usageError(t, ['--id', 'n1', '--peers', 'n1=http://a:1,n/2=http://b:2'], /the id of n\/2=http:\/\/b:2 in --peers takes 1-64 characters/);
  const c = loadConfig(parseDaemonArgv(['--id', 'n1', '--cluster-secret', 's', '--peers', 'n1=http://a:1, n2=http://b:2 ,n3=http://c:3']));
  t.deepEqual(c.peers.map((p) => `${p.id}=${p.url}`), ['n1=http://a:1', 'n2=http://b:2', 'n3=http://c:3']);
});

test('every example in loglogd --help passes its own flag checks (a cluster member\'s included)', (t) => {
  t.true(DAEMON_EXAMPLES.length >= 2);
  for (const line of DAEMON_EXAMPLES) {
    // `VAR=value loglogd --flag ...`: the environment, then the command line.
    const words = line.split(/\s+/);
    const at = words.indexOf('loglogd');
    const env = Object.fromEntries(words.slice(0, at).map((w) => w.split('=', 2)));
    t.notThrows(() => loadConfig(parseDaemonArgv(words.slice(at + 1)), env), line);
  }
});
