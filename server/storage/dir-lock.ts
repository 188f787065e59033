/**
 * The `lock` file: which process owns a data directory. Two nodes on one directory would
 * write into the same segments, each corrupting the other's frames, acknowledged ones
 * included; so a second node refuses to start, as a second PostgreSQL refuses a data
 * directory whose postmaster.pid names a live server.
 *
 * Node has no flock(). The owner writes its pid and, on Linux, its start time (from /proc)
 * to a file of its own, then hard-links it to `lock`: the link fails if a lock exists, and
 * a lock never appears half written (a second node reading a lock the first was still
 * writing took it for a crash's leftover, and both ran). The start time tells the owner
 * from a later process that got the same pid. A lock whose owner is gone (kill -9, power
 * loss, a zombie) is taken over. Where the filesystem has no hard links, the lock is
 * created with O_EXCL instead (see `place`). A lock written under another hostname is
 * assumed live: two nodes on one shared
 * volume is what the lock is for, and another machine's pids cannot be looked up; a
 * container replaced by one with a new hostname needs its lock deleted by hand. Two nodes
 * that both find the same stale lock within microseconds of each other could both take it
 * over; starting two nodes on one directory at the same instant after a crash is not
 * guarded against. Without /proc (macOS), a dead owner's pid that a new process got keeps
 * the lock until the file is deleted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LogError } from '../../spec/errors.ts';
import { readFileOrNullSync, unlinkIfExistsSync } from './fs-util.ts';

export const LOCK_FILE = 'lock';

interface Owner {
  pid: number;
  /** Start time of the process in clock ticks since boot (Linux); null elsewhere. */
  started: string | null;
  host: string;
}

/** State and start time of process `pid` (fields 3 and 22 of /proc/PID/stat), or null. */
function procStat(pid: number): { state: string; started: string } | null {
  const stat = readFileOrNullSync(`/proc/${pid}/stat`);
  if (!stat) return null;
  // The command name (field 2) is in parentheses and may hold spaces: count after it.
  const fields = stat.toString('latin1').slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields.length > 19 ? { state: fields[0], started: fields[19] } : null;
}

/** Threads of process `pid` (from /proc/PID/status), or null if unknown. */
function threads(pid: number): number | null {
  const m = /^Threads:\s*(\d+)/m.exec(readFileOrNullSync(`/proc/${pid}/status`)?.toString('latin1') ?? '');
  return m ? Number(m[1]) : null;
}

function alive(o: Owner, host: string): boolean {
  // Another machine's pid cannot be looked up here. Two nodes on one shared volume is the
  // very thing the lock is for, so it is assumed live (a replaced container with a new
  // hostname needs its lock deleted by hand; the message says so).
  if (o.host !== host) return true;
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    // EPERM: it exists, under another user.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (o.started === null) return true;
  // A pid that runs, whose start time cannot be read (hidden by the mount): assume the owner.
  const now = procStat(o.pid);
  if (now === null) return true;
  if (now.started !== o.started) return false;
  // A zombie (killed, not yet reaped by a slow parent) holds nothing, unless threads of it
  // still run (its main thread exited: the process shows Z too).
  return now.state !== 'Z' || (threads(o.pid) ?? 2) > 1;
}

function parseOwner(buf: Buffer | null): Owner | null {
  if (!buf) return null;
  try {
    const o = JSON.parse(buf.toString('utf8')) as Partial<Owner>;
    if (!Number.isSafeInteger(o.pid) || typeof o.host !== 'string') return null;
    return { pid: o.pid as number, started: typeof o.started === 'string' ? o.started : null, host: o.host };
  } catch {
    return null;
  }
}

/** A lock this young that cannot be read may still be being written (see `place`). */
const WRITING_MS = 5000;

/**
 * Links `mine` as `file`; false if `file` exists. Where the filesystem has no hard links
 * (vfat, some FUSE and SMB mounts), `file` is created with O_EXCL and written: it can then
 * be seen empty for a moment, which `judge` allows for.
 */
function place(mine: string, file: string, content: string): boolean {
  try {
    fs.linkSync(mine, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EXDEV') throw e;
  }
  try {
    fs.writeFileSync(file, content, { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** Throws if the lock at `file` has a live owner; removes it if it is stale. */
function judge(file: string, dir: string, me: Owner): void {
  const raw = readFileOrNullSync(file);
  if (!raw) return;
  const owner = parseOwner(raw);
  if (!owner && Date.now() - (fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0) < WRITING_MS) {
    throw new LogError('unavailable', `data directory ${dir} is being taken by another node (${file} is being written)`);
  }
  if (owner && alive(owner, me.host)) {
    const who = owner.host === me.host ? `process ${owner.pid}` : `process ${owner.pid} on host ${owner.host}`;
    throw new LogError('unavailable', `data directory ${dir} is in use by ${who}: stop that node first, or give this one another --data directory (if no node runs there, e.g. a replaced container, delete ${file})`);
  }
  // Only the stale lock just judged, not one a node starting beside us placed meanwhile.
  if (readFileOrNullSync(file)?.equals(raw)) unlinkIfExistsSync(file);
}

/** Ownership of a data directory, held from `acquire` until `release`. */
export class DirLock {
  private released = false;

  private constructor(private readonly file: string, private readonly content: string) {}

  /**
   * Takes the directory (which must exist), or throws `unavailable` naming the process that
   * has it.
   */
  static acquire(dir: string): DirLock {
    const file = path.join(dir, LOCK_FILE);
    const me: Owner = { pid: process.pid, started: procStat(process.pid)?.started ?? null, host: os.hostname() };
    const content = `${JSON.stringify(me)}\n`;
    // Per host and pid: two containers on one volume may both be pid 1.
    const mine = `${file}.${me.host}.${process.pid}`;
    try {
      fs.writeFileSync(mine, content);
    } catch (e) {
      // A part written before the disk filled up. On a read-only filesystem the unlink fails
      // too (EROFS): its error named a file that was never created and hid the advice below.
      try { unlinkIfExistsSync(mine); } catch { /* reported below */ }
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new LogError('internal', `cannot write in the data directory ${dir} (${code}): check that it is writable by this user and that its disk has free space`, {}, { cause: e });
    }
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (place(mine, file, content)) return new DirLock(file, content);
        judge(file, dir, me);
      }
    } finally {
      unlinkIfExistsSync(mine);
    }
    throw new LogError('unavailable', `could not take ${file}: another node keeps creating it`);
  }

  /** Gives the directory up (only if this process still owns it). */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (readFileOrNullSync(this.file)?.toString('utf8') === this.content) unlinkIfExistsSync(this.file);
  }
}
