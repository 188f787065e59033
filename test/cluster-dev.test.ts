/**
 * `loglog dev` as a user runs it: a real CLI process starting three real loglogd processes on
 * consecutive free ports with a temporary data root; the CLI appends and reads through them;
 * SIGINT stops everything (every node exits, the command exits 0).
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortRange, portFree } from '../client/cli/commands/dev.ts';
import { LOGLOG } from './helpers/node-process.ts';

interface Proc {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  /** Resolves with the first stderr match of `re` (rejects if the process exits first). */
  waitErr(re: RegExp): Promise<RegExpExecArray>;
}

function cli(args: string[], stdin?: string): Proc {
  const proc = spawn(process.execPath, [LOGLOG, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LOGLOG_SERVERS: '' } });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; res: (m: RegExpExecArray) => void }[] = [];
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of [...waiters]) {
      const m = w.re.exec(err);
      if (m) { waiters.splice(waiters.indexOf(w), 1); w.res(m); }
    }
  });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  if (stdin !== undefined) proc.stdin!.end(stdin);
  else proc.stdin!.end();
  return {
    proc, exited,
    out: () => out,
    err: () => err,
    waitErr(re) {
      const m = re.exec(err);
      if (m) return Promise.resolve(m);
      return new Promise((res, rej) => {
        waiters.push({ re, res });
        void exited.then((code) => rej(new Error(`exited (${code}) before printing ${re}:\n${err}`)));
      });
    },
  };
}

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
  const dev = cli(['dev', '--nodes', '3', '--data', data, '--base-port', String(base)]);
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
  const secret = await stat(join(data, 'cluster-secret'));
  t.is(secret.mode & 0o777, 0o600);
  t.regex(await readFile(join(data, 'cluster-secret'), 'utf8'), /^[0-9a-f]{64}\n$/);

  // Point the CLI at one follower only: it discovers the rest of the cluster.
  const follower = servers.find((s) => s !== up[2])!;
  const ap = cli(['append', '--server', follower], 'alpha\nbeta\ngamma\n');
  t.is(await ap.exited, 0, ap.err());
  t.like(JSON.parse(ap.out()), { entries: 1, records: 3 });
  for (const s of servers) {
    const rd = cli(['read', '--from', '0', '--server', s]);
    t.is(await rd.exited, 0, rd.err());
    t.is(rd.out(), 'alpha\nbeta\ngamma\n', `read through ${s}`);
  }
  const st = cli(['status', '--json', '--server', servers.join(',')]);
  t.is(await st.exited, 0, st.err());
  const statuses = st.out().trim().split('\n').map((l) => JSON.parse(l) as { id: string; role: string });
  t.deepEqual(statuses.map((s) => s.id).sort(), ['n1', 'n2', 'n3']);
  t.is(statuses.filter((s) => s.role === 'leader').length, 1);

  dev.proc.kill('SIGINT');
  t.is(await dev.exited, 0, dev.err());
  t.regex(dev.err(), /stopped \(n1 exit 0, n2 exit 0, n3 exit 0\)/);
  for (const pid of pids) t.false(alive(pid), `node pid ${pid} exited`);
  for (let i = 0; i < 3; i++) t.true(await portFree(base + i), `port ${base + i} released`);

  // The data root remembers its size: restarting it with another node count is refused.
  const wrong = cli(['dev', '--nodes', '2', '--data', data, '--base-port', String(base)]);
  t.is(await wrong.exited, 1);
  t.regex(wrong.err(), /holds a 3-node cluster; start it with --nodes 3/);
});
