/** The data-directory lock's harder cases: no hard links, a zombie main thread with live threads (a C program). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import test from 'ava';
import { DirLock, LOCK_FILE } from '../server/storage/dir-lock.ts';
import { tempDir } from './helpers/node-process.ts';

test.serial('on a filesystem without hard links the lock is created with O_EXCL, and still held', async (t) => {
  const dir = await tempDir(t);
  const orig = fs.linkSync;
  (fs as { linkSync: typeof fs.linkSync }).linkSync = () => { const e = new Error("EPERM: operation not permitted, link 'x' -> 'y'") as NodeJS.ErrnoException; e.code = 'EPERM'; throw e; };
  try {
    const lock = DirLock.acquire(dir);
    t.is(JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')).pid, process.pid);
    t.regex(t.throws(() => DirLock.acquire(dir))!.message, /in use by process/);
    lock.release();
    t.deepEqual(fs.readdirSync(dir), [], 'nothing left behind');
  } finally {
    (fs as { linkSync: typeof fs.linkSync }).linkSync = orig;
  }
});

test.serial('a live multi-threaded owner whose main thread has exited shows as Z but keeps its lock', async (t) => {
  const dir = await tempDir(t);
  const src = path.join(dir, 'zl.c');
  fs.writeFileSync(src, `#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
static void *w(void *a) { for (;;) usleep(100000); return 0; }
int main(void) { pthread_t t; pthread_create(&t, 0, w, 0); printf("%d\\n", getpid()); fflush(stdout); pthread_exit(0); }`);
  execFileSync('gcc', ['-pthread', src, '-o', path.join(dir, 'zl')]);
  const p = spawn(path.join(dir, 'zl'), [], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => p.kill('SIGKILL'));
  const pid = Number(await new Promise<string>((res) => p.stdout.once('data', (d: Buffer) => res(d.toString()))));
  await new Promise((r) => setTimeout(r, 200));
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ');
  t.log('state', stat[0], 'threads', fs.readdirSync(`/proc/${pid}/task`));
  fs.writeFileSync(path.join(dir, LOCK_FILE), `${JSON.stringify({ pid, started: stat[19], host: os.hostname() })}\n`);
  const err = t.throws(() => DirLock.acquire(dir));
  t.is((err as { code?: string } | undefined)?.code, 'unavailable');
});

test.serial('on a read-only filesystem the lock says the directory cannot be written, not that a cleanup unlink failed', async (t) => {
  const dir = await tempDir(t);
  const erofs = (op: string) => { const e = new Error(`EROFS: read-only file system, ${op}`) as NodeJS.ErrnoException; e.code = 'EROFS'; return e; };
  const { writeFileSync, unlinkSync } = fs;
  (fs as { writeFileSync: unknown }).writeFileSync = () => { throw erofs('open'); };
  (fs as { unlinkSync: unknown }).unlinkSync = () => { throw erofs('unlink'); };
  try {
    t.is(t.throws(() => DirLock.acquire(dir))!.message, `cannot write in the data directory ${dir} (EROFS): check that it is writable by this user and that its disk has free space`);
  } finally {
    Object.assign(fs, { writeFileSync, unlinkSync });
  }
});
