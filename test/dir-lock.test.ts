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
    const lock = DirLock.acquire(dir);
    t.is(JSON.parse(fs.readFileSync(file, 'utf8')).pid, process.pid, content);
    lock.release();
  }
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
