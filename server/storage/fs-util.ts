/**
 * Promise wrappers over the callback fs API (measured faster than FileHandle for small
 * positional writes), plus the few durable-write helpers storage needs.
 */
import fs from 'node:fs';
import path from 'node:path';

export function open(file: string, flags: string | number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, 0o644, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function close(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

export function fstatSize(fd: number): Promise<number> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st.size))));
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function fsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

export function ftruncate(fd: number, len: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, len, (err) => (err ? reject(err) : resolve())));
}

function writevOnce(fd: number, bufs: Buffer[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Writes all of `buf` at `pos` (looping over the rare short write). */
export function writeAll(fd: number, buf: Buffer, pos: number): Promise<void> {
  return writevAll(fd, [buf], pos);
}

/** Writes the buffers back to back at `pos`, one writev at a time (looping over a short write). */
export async function writevAll(fd: number, bufs: Buffer[], pos: number): Promise<void> {
  for (let rest = sliceFrom(bufs, 0); rest.length > 0;) {
    const n = await writevOnce(fd, rest, pos);
    pos += n;
    rest = sliceFrom(rest, n);
  }
}

/** Synchronous twin of {@link writevAll}, for writes small enough to copy into the page cache inline. */
export function writevAllSync(fd: number, bufs: Buffer[], pos: number): void {
  for (let rest = sliceFrom(bufs, 0); rest.length > 0;) {
    const n = fs.writevSync(fd, rest, pos);
    pos += n;
    rest = sliceFrom(rest, n);
  }
}

/** The first `n` bytes of `bufs` (views, not copies). */
export function firstBytes(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n <= 0) break;
    out.push(b.length <= n ? b : b.subarray(0, n));
    n -= b.length;
  }
  return out;
}

/** The bytes of `bufs` from byte `skip` on (empty buffers dropped). */
function sliceFrom(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) { skip -= b.length; continue; }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

function readOnce(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Reads `len` bytes at `pos`; the result is shorter only where the file ends. */
export async function readAt(fd: number, len: number, pos: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const n = await readOnce(fd, buf, done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done === len ? buf : buf.subarray(0, done);
}

/** Synchronous twin of readAt, for the rare paths that must not yield. */
export function readAtSync(fd: number, len: number, pos: number): Buffer {
  const buf = Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const n = fs.readSync(fd, buf, done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done === len ? buf : buf.subarray(0, done);
}

/** Reads a whole file, or null when it does not exist. */
export function readFileOrNull(file: string): Promise<Buffer | null> {
  return fs.promises.readFile(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
}

export function readFileOrNullSync(file: string): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return null;
    // Node's message for EISDIR, EACCES, EIO on a read names no file: say which.
    if (!err.message.includes(file)) err.message = `${file}: ${err.message}`;
    throw err;
  }
}

export function unlinkIfExistsSync(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export async function unlinkIfExists(file: string): Promise<void> {
  await fs.promises.unlink(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/** Makes directory entries (creations, renames, unlinks) in `dir` durable. */
export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

/**
 * Replaces `file` atomically (temp + rename). With `durable` the content is fsynced before
 * the rename and the directory after it, so a crash leaves either the old or the new file.
 */
export function writeFileAtomicSync(file: string, data: Buffer | string, durable: boolean): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    if (durable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  if (durable) fsyncDirSync(path.dirname(file));
}

/**
 * Creates directory `dir` (`what` names it in errors) and any missing parents, one mkdir at
 * a time. Node's recursive mkdir never returns when a parent exists but mkdir in it fails
 * with ENOENT (/proc/nope): it spun at 100% CPU, silently.
 */
export function makeDirSync(dir: string, what = 'directory'): void {
  const make = (d: string): void => {
    try {
      fs.mkdirSync(d);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(d).isDirectory()) return;
      if (code === 'EEXIST') throw new Error('it exists and is not a directory');
      if (code !== 'ENOENT' || path.dirname(d) === d) throw e;
    }
    make(path.dirname(d));
    fs.mkdirSync(d);
  };
  try {
    make(path.resolve(dir));
  } catch (e) {
    throw new Error(`cannot create ${what} ${dir}: ${(e as Error).message}`);
  }
}
