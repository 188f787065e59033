/**
 * The `lock` file: which process owns a data directory. Two nodes on one directory would
 * write into the same segments, each corrupting the other's frames, acknowledged ones
 * included; so a second node refuses to start, as a second PostgreSQL refuses a data
 * directory whose postmaster.pid names a live server.
 *
 * Node has no flock(). The file is created with O_EXCL and holds the owner's pid and, on
 * Linux, its start time (from /proc), which tells the owner from a later process that got
 * the same pid. A file left by an owner that is gone (kill -9, power loss) is taken over.
 * Two nodes that both find the same stale file within microseconds of each other could
 * both take it over; starting two nodes on one directory at the same instant after a crash
 * is not guarded against.
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

/** Start time of process `pid` (field 22 of /proc/PID/stat), or null if unknown or gone. */
function startTime(pid: number): string | null {
  const stat = readFileOrNullSync(`/proc/${pid}/stat`);
  if (!stat) return null;
  // The command name (field 2) is in parentheses and may hold spaces: count after it.
  const fields = stat.toString('latin1').slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

function alive(o: Owner): boolean {
  if (o.host !== os.hostname()) return true; // another machine's process: cannot tell, assume so
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    // EPERM: it exists, under another user.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (o.started === null) return true;
  // A pid that runs, whose start time cannot be read (hidden by the mount): assume the owner.
  const now = startTime(o.pid);
  return now === null || now === o.started;
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
    const me: Owner = { pid: process.pid, started: startTime(process.pid), host: os.hostname() };
    const content = `${JSON.stringify(me)}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.writeFileSync(file, content, { flag: 'wx' });
        return new DirLock(file, content);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const raw = readFileOrNullSync(file);
      if (!raw) continue;
      const owner = parseOwner(raw);
      // An unreadable file is one a crash cut short while it was being written: stale.
      if (owner && alive(owner)) {
        const who = owner.host === me.host ? `process ${owner.pid}` : `process ${owner.pid} on ${owner.host}`;
        throw new LogError('unavailable', `data directory ${dir} is in use by ${who}: stop that node first, or give this one another --data directory (if no node runs there, delete ${file})`);
      }
      // Only the stale file just judged, not one a node starting beside us wrote meanwhile.
      if (readFileOrNullSync(file)?.equals(raw)) unlinkIfExistsSync(file);
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
