/**
 * One node per data directory (server/storage/dir-lock.ts): a second one refuses to start,
 * and the lock of a node that died is taken over.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import test from 'ava';
import { DirLock, LOCK_FILE } from '../server/storage/dir-lock.ts';
import { LogError } from '../spec/errors.ts';
import { spawnLoglogd, startNode, tempDir } from './helpers/node-process.ts';

const lockOf = (pid: number, started: string | null) => `${JSON.stringify({ pid, started, host: os.hostname() })}\n`;
const startTimeOf = (pid: number) => fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ')[19];

test('a directory is held until released; a second holder is refused meanwhile', async (t) => {
  const dir = await tempDir(t);
  const lock = DirLock.acquire(dir);
  const err = t.throws(() => DirLock.acquire(dir), { instanceOf: LogError });
  t.is(err?.code, 'unavailable');
  t.regex(err!.message, new RegExp(`in use by process ${process.pid}`));
  lock.release();
  t.false(fs.existsSync(path.join(dir, LOCK_FILE)));
  DirLock.acquire(dir).release();
});

test('a lock left by a process that is gone, or by an earlier process with the same pid, is taken over', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, LOCK_FILE);
  const gone = spawn(process.execPath, ['-e', '']);
  const gonePid = await new Promise<number>((res) => gone.once('exit', () => res(gone.pid!)));
  for (const content of [lockOf(gonePid, '1'), lockOf(process.pid, 'not-my-start-time'), 'half a wri']) {
    fs.writeFileSync(file, content);
    // Left by a crash a while ago (an unreadable lock younger than 5 s may be being written).
    fs.utimesSync(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const lock = DirLock.acquire(dir);
    t.is(JSON.parse(fs.readFileSync(file, 'utf8')).pid, process.pid, content);
    lock.release();
  }
});

test('a lock whose owner is a zombie (killed, not yet reaped) is taken over; one from another host, or unreadable and just written, is not', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, LOCK_FILE);
  // `sleep 5` inherits the background child and never reaps it.
  const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => parent.kill('SIGKILL'));
  const zombie = Number(await new Promise<string>((res) => parent.stdout.once('data', (d: Buffer) => res(d.toString()))));
  const started = startTimeOf(zombie);
  await new Promise<void>((res) => {
    const check = () => (fs.readFileSync(`/proc/${zombie}/stat`, 'latin1').split(') ')[1][0] === 'Z' ? res() : setImmediate(check));
    check();
  });
  fs.writeFileSync(file, lockOf(zombie, started));
  DirLock.acquire(dir).release();

  const gone = spawn(process.execPath, ['-e', '']);
  const gonePid = await new Promise<number>((res) => gone.once('exit', () => res(gone.pid!)));
  // Another host's pids cannot be looked up here: two nodes on one shared volume is what the lock is for.
  fs.writeFileSync(file, `${JSON.stringify({ pid: gonePid, started: '1', host: 'another-host' })}\n`);
  t.regex(t.throws(() => DirLock.acquire(dir))!.message, new RegExp(`in use by process ${gonePid} on host another-host: .*delete ${file}`));
  fs.writeFileSync(file, '');
  t.regex(t.throws(() => DirLock.acquire(dir))!.message, /is being taken by another node/);
});

test('two processes taking fresh directories at the same instants never both get one', async (t) => {
  const base = await tempDir(t);
  const n = 300;
  for (let i = 0; i < n; i++) fs.mkdirSync(path.join(base, `d${i}`));
  const lockModule = new URL('../server/storage/dir-lock.ts', import.meta.url).href;
  const at = Date.now() + 1500; // both started by then: each takes directory i at at + 10 ms * i
  // Each stays alive until the test has both results: a lock whose owner has exited is
  // rightly taken over, and a racer that lags behind would find the other one gone.
  const racer = `import { DirLock } from '${lockModule}';
    const won = [];
    for (let i = 0; i < ${n}; i++) {
      while (Date.now() < ${at} + i * 10);
      try { DirLock.acquire('${base}/d' + i); won.push(i); } catch {}
    }
    process.stdout.write(JSON.stringify(won) + '\\n');
    process.stdin.resume();`;
  const racers = [0, 1].map(() => spawn(process.execPath, ['--import=tsx', '--input-type=module', '-e', racer], { stdio: ['pipe', 'pipe', 'inherit'] }));
  t.teardown(() => { for (const r of racers) r.kill('SIGKILL'); });
  const [a, b] = await Promise.all(racers.map((r) => new Promise<number[]>((res) => {
    let out = '';
    r.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.endsWith('\n')) res(JSON.parse(out) as number[]);
    });
  })));
  for (const r of racers) r.stdin.end();
  const both = a.filter((i) => b.includes(i));
  t.deepEqual(both, [], `both took ${both.length} of ${n} directories`);
  t.is(a.length + b.length, n, 'every directory was taken by one of them');
});

test('a lock held by another live process is respected', async (t) => {
  const dir = await tempDir(t);
  const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], { stdio: 'ignore' });
  t.teardown(() => other.kill('SIGKILL'));
  await new Promise((res) => other.once('spawn', res));
  fs.writeFileSync(path.join(dir, LOCK_FILE), lockOf(other.pid!, startTimeOf(other.pid!)));
  const err = t.throws(() => DirLock.acquire(dir), { instanceOf: LogError });
  t.regex(err!.message, new RegExp(`in use by process ${other.pid}`));
});

test('a second loglogd on the same data directory exits naming the owner; after a kill -9 the next one takes over', async (t) => {
  const first = await startNode(t);
  const second = spawnLoglogd(['--data', first.dataDir, '--listen', '127.0.0.1:0']);
  second.serving.catch(() => {}); // it is meant to exit instead
  t.teardown(() => { second.proc.kill('SIGKILL'); });
  t.is(await second.exited, 1);
  t.regex(second.stderr(), new RegExp(`data directory .* is in use by process ${first.proc.pid}`));
  t.is(second.stderr().trim().split('\n').length, 1, second.stderr());
  await first.kill();
  const third = await startNode(t, { dataDir: first.dataDir });
  t.truthy(third.url);
  t.is(await third.stop(), 0);
  t.false(fs.existsSync(path.join(first.dataDir, LOCK_FILE)), 'a clean stop removes the lock');
});
