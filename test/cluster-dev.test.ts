/**
 * `loglog dev` as a user runs it: a real CLI process starting three real loglogd processes on
 * consecutive free ports with a temporary data root; the CLI appends and reads through them;
 * SIGINT stops everything (every node exits, the command exits 0).
 */
import test from 'ava';
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortRange, portFree } from '../client/cli/commands/dev.ts';
import { runCli, spawnCli, type CliOptions } from './helpers/cli.ts';

/** The CLI with no LOGLOG_SERVERS from the environment: every command names its servers. */
const { LOGLOG_SERVERS: _ignored, ...envWithoutServers } = process.env;
const NO_SERVERS: CliOptions = { env: envWithoutServers };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('loglog dev --nodes 3: leader printed, CLI appends and reads through the cluster, SIGINT stops every node', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'loglog-dev-'));
  const base = await freePortRange(3);
  const dev = spawnCli(['dev', '--nodes', '3', '--data', data, '--base-port', String(base)], NO_SERVERS);
  const pids: number[] = [];
  t.teardown(async () => {
    if (dev.proc.exitCode === null && dev.proc.signalCode === null) dev.proc.kill('SIGINT');
    await dev.exited;
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await rm(data, { recursive: true, force: true });
  });

  const up = await dev.waitErr(/3 nodes up; leader (n\d) at (\S+)\n((?:.*\n){3})/);
  const servers = [0, 1, 2].map((i) => `http://127.0.0.1:${base + i}`);
  t.true(servers.includes(up[2]), up[0]);
  for (const m of up[3].matchAll(/pid (\d+)/g)) pids.push(Number(m[1]));
  t.is(pids.length, 3, up[0]);
  t.regex(dev.err(), new RegExp(`--server ${servers.join(',')}`), 'the usage hints name the cluster');
  t.regex(dev.err(), new RegExp(`^ {2}npx loglog read --from start --server ${servers.join(',')}$`, 'm'), 'the read hint starts at the log start (0 may be trimmed)');
  const secret = await stat(join(data, 'cluster-secret'));
  t.is(secret.mode & 0o777, 0o600);
  t.regex(await readFile(join(data, 'cluster-secret'), 'utf8'), /^[0-9a-f]{64}\n$/);

  // Point the CLI at one follower only: it discovers the rest of the cluster.
  const follower = servers.find((s) => s !== up[2])!;
  const ap = await runCli(['append', '--server', follower], { ...NO_SERVERS, stdin: 'alpha\nbeta\ngamma\n' });
  t.is(ap.code, 0, ap.err);
  t.like(JSON.parse(ap.out), { entries: 1, records: 3 });
  for (const s of servers) {
    const rd = await runCli(['read', '--from', '0', '--server', s], NO_SERVERS);
    t.is(rd.code, 0, rd.err);
    t.is(rd.out, 'alpha\nbeta\ngamma\n', `read through ${s}`);
  }
  const st = await runCli(['status', '--json', '--server', servers.join(',')], NO_SERVERS);
  t.is(st.code, 0, st.err);
  const statuses = st.out.trim().split('\n').map((l) => JSON.parse(l) as { id: string; role: string });
  t.deepEqual(statuses.map((s) => s.id).sort(), ['n1', 'n2', 'n3']);
  t.is(statuses.filter((s) => s.role === 'leader').length, 1);

  // A second cluster on the same ports is refused up front, in one line.
  const twice = await runCli(['dev', '--nodes', '3', '--data', `${data}-2`, '--base-port', String(base)], NO_SERVERS);
  t.is(twice.code, 1);
  t.regex(twice.err, new RegExp(`^loglog: port ${base} on 127.0.0.1 is taken .*--base-port`));
  t.is(twice.err.trim().split('\n').length, 1, twice.err);

  dev.proc.kill('SIGINT');
  const stopped = await dev.done;
  t.is(stopped.code, 0, stopped.err);
  t.regex(stopped.err, /stopped \(n1 exit 0, n2 exit 0, n3 exit 0\)/);
  for (const pid of pids) t.false(alive(pid), `node pid ${pid} exited`);
  for (let i = 0; i < 3; i++) t.true(await portFree(base + i), `port ${base + i} released`);

  // The data root remembers its size: restarting it with another node count is refused.
  const wrong = await runCli(['dev', '--nodes', '2', '--data', data, '--base-port', String(base)], NO_SERVERS);
  t.is(wrong.code, 1);
  t.regex(wrong.err, /holds a 3-node cluster; start it with --nodes 3/);
});

test('loglog dev reports a node that dies with the signal that killed it, and ends when every node is gone', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'loglog-dev-'));
  t.teardown(() => rm(data, { recursive: true, force: true }));
  const base = await freePortRange(1);
  const dev = spawnCli(['dev', '--nodes', '1', '--data', data, '--base-port', String(base)], NO_SERVERS);
  t.teardown(() => { if (dev.proc.exitCode === null && dev.proc.signalCode === null) dev.proc.kill('SIGKILL'); });
  const up = await dev.waitErr(/n1 .* pid (\d+)/);
  process.kill(Number(up[1]), 'SIGKILL');
  const done = await dev.done;
  t.regex(done.err, /n1 exited unexpectedly \(killed by SIGKILL\)/);
  t.regex(done.err, new RegExp(`To start it again, in another terminal:\\n  LOGLOG_CLUSTER_SECRET=\\$\\(cat ${data}/cluster-secret\\) npx loglogd --data ${data}/n1 --listen 127.0.0.1:${base}\\n`));
  t.regex(done.err, /every node exited/);
  t.is(done.code, 2);
});
