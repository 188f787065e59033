/**
 * The `fates` file: upload id → frame, so that what became of an append (committed at X,
 * aborted, unknown) can still be answered after a restart, and a client that lost a reply
 * does not append the same entry twice. Frames themselves do not carry upload ids.
 *
 * Records, appended in order: u8 id length, the id (ASCII), u64 offset, u32 payload length,
 * u64 term, u8 kind, u32 CRC32C of the bytes before it. Appended without fsync, but
 * fdatasynced before every checkpoint ({@link FatesFile.sync}): a killed process loses
 * nothing (the page cache survives), and a power loss only loses records of frames that the
 * next recovery scans (it starts at the checkpoint). The replica marks recovered frames
 * that no record names, and answers `forgotten` rather than `unknown` for ids that could be
 * theirs (spec/replica.ts, fatesFrom). Loading stops at the first damaged record. When the
 * file passes MAX_BYTES it is rewritten (temp + rename) with the newest KEEP records, so
 * loading it stays bounded.
 *
 * The `fates-from` file keeps the replica's `fatesFrom` (u64 LE and its CRC32C, u32 LE),
 * written durably whenever it rises: what a node knows it forgot must outlive a restart.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '../../spec/frame.ts';
import type { Kind } from '../../spec/frame.ts';
import { readU64LE, writeU64LE } from '../../spec/u64.ts';
import { type EntryMeta, entryEnd } from '../../spec/entry.ts';
import { fdatasync, readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';
import { loadOffsetFile, saveOffsetFileSync } from './offset-file.ts';

const FILE = 'fates';
const FROM_FILE = 'fates-from';
const MAX_BYTES = 16 * 1024 * 1024;
const KEEP = 100_000;
const FIXED = 1 + 8 + 4 + 8 + 1 + 4;

export function encodeFate(m: EntryMeta): Buffer {
  const id = Buffer.from(m.uploadId ?? '', 'latin1');
  const b = Buffer.alloc(FIXED + id.length);
  b[0] = id.length;
  id.copy(b, 1);
  let at = 1 + id.length;
  writeU64LE(b, m.offset, at); at += 8;
  b.writeUInt32LE(m.length, at); at += 4;
  writeU64LE(b, m.term, at); at += 8;
  b[at] = m.kind; at += 1;
  b.writeUInt32LE(crc32c(b.subarray(0, at)), at);
  return b;
}

/** Records of a fates file, oldest first, up to the first damaged one. */
export function decodeFates(buf: Buffer): EntryMeta[] {
  const out: EntryMeta[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = buf[at];
    const end = at + FIXED + n;
    if (n === 0 || end > buf.length) break;
    const crcAt = end - 4;
    if (crc32c(buf.subarray(at, crcAt)) !== buf.readUInt32LE(crcAt)) break;
    let p = at + 1 + n;
    const offset = readU64LE(buf, p); p += 8;
    const length = buf.readUInt32LE(p); p += 4;
    const term = readU64LE(buf, p); p += 8;
    const kind = buf[p] as Kind;
    out.push({ uploadId: buf.toString('latin1', at + 1, at + 1 + n), offset, length, term, kind, crc: 0 });
    at = end;
  }
  return out;
}

export class FatesFile {
  /** -1 once writing has failed: the descriptor is never reused after a failure. */
  private fd: number;
  private size: number;
  private queue: Buffer[] = [];
  private flushQueued = false;
  /** The newest records, for rewriting the file when it grows too large. */
  private recent: EntryMeta[];
  /** Syncs running: no rewrite meanwhile (it would close the descriptor they sync). */
  private syncing = 0;

  private constructor(private readonly dir: string, fd: number, size: number, recent: EntryMeta[]) {
    this.fd = fd;
    this.size = size;
    this.recent = recent;
  }

  /** Loads the file (kept near MAX_BYTES by rewrites) and opens it for appending. */
  static open(dir: string): { file: FatesFile; fates: EntryMeta[] } {
    const p = path.join(dir, FILE);
    const buf = readFileOrNullSync(p) ?? Buffer.alloc(0);
    const all = decodeFates(buf);
    const fates = all.slice(-KEEP);
    forget(dir, all.slice(0, all.length - fates.length));
    const valid = fates.reduce((n, f) => n + FIXED + (f.uploadId?.length ?? 0), 0);
    // Durably: a rename made durable by some later journal commit, over data that is not,
    // would leave an empty file after a power loss, below a checkpoint.
    if (valid !== buf.length) writeFileAtomicSync(p, Buffer.concat(fates.map(encodeFate)), true);
    return { file: new FatesFile(dir, fs.openSync(p, 'a'), valid, fates), fates };
  }

  /**
   * Records the frame an upload id was placed in. The records of one step of the node are
   * appended together, synchronously, once that step is done: a write of a few dozen bytes
   * into the page cache costs microseconds. An asynchronous write would cost two thread
   * handoffs on every append, on the leader and on each follower, which showed in the
   * latency of single appends.
   */
  add(meta: EntryMeta): void {
    if (this.fd < 0 || meta.uploadId === null || meta.uploadId.length === 0 || meta.uploadId.length > 255) return;
    this.queue.push(encodeFate(meta));
    this.recent.push(meta);
    if (this.recent.length > 2 * KEEP) this.trimRecent();
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Best effort: a failed write only means those fates answer `unknown` after a restart. */
  private flush(): void {
    this.flushQueued = false;
    if (this.fd < 0 || this.queue.length === 0) return;
    const batch = Buffer.concat(this.queue.splice(0));
    try {
      for (let at = 0; at < batch.length;) at += fs.writeSync(this.fd, batch, at, batch.length - at, null);
      this.size += batch.length;
      // Not under a sync: it fdatasyncs the descriptor a rewrite would close.
      if (this.size > MAX_BYTES && this.syncing === 0) this.rewrite();
    } catch {
      // A torn record ends what loading keeps; stop rather than append past it.
      this.queue = [];
      this.abandon();
    }
  }

  /**
   * Keeps only the newest records (all of them written: `recent` includes the last batch).
   * The ids of the dropped ones are forgotten from now on: `fates-from` says so first.
   */
  private rewrite(): void {
    this.trimRecent();
    const data = Buffer.concat(this.recent.map(encodeFate));
    this.abandon();
    writeFileAtomicSync(path.join(this.dir, FILE), data, true); // see open()
    this.fd = fs.openSync(path.join(this.dir, FILE), 'a');
    this.size = data.length;
  }

  /**
   * Makes every record added so far durable. Called before each checkpoint: recovery scans
   * from the checkpoint, so the frames below it must not lose their records. Throws once a
   * write has failed (the checkpoint then stays where it is, and recovery scans further).
   */
  async sync(): Promise<void> {
    this.flush();
    if (this.fd < 0) throw new Error('the fates file stopped recording after a failed write; checkpoints wait for a restart');
    this.syncing++;
    try {
      await fdatasync(this.fd);
    } finally {
      this.syncing--;
    }
  }

  /** Keeps the newest KEEP records in memory; the others' ids are forgotten at the next rewrite or load. */
  private trimRecent(): void {
    try {
      forget(this.dir, this.recent.slice(0, Math.max(0, this.recent.length - KEEP)));
    } catch {
      // Cannot say what it forgets (a full disk): stop recording, which holds checkpoints
      // back, so that the next recovery scans and marks what lacks a record.
      this.abandon();
    }
    this.recent = this.recent.slice(-KEEP);
  }

  /** Closes the file and stops recording (fates then answer `unknown` after a restart). */
  private abandon(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try { fs.closeSync(fd); } catch { /* already unusable */ }
  }

  /** Writes what is queued, then closes the file. */
  async close(): Promise<void> {
    this.flush();
    this.abandon();
  }
}

/**
 * The persisted `fatesFrom` (see spec/replica.ts): null if the file is missing (a new data
 * directory, or one from before the file existed), and everything forgotten (the replica
 * caps it at the log's end) if the file is damaged.
 */
export function loadFatesFrom(dir: string): number | null {
  const saved = loadOffsetFile(dir, FROM_FILE);
  return saved === 'damaged' ? Number.MAX_SAFE_INTEGER : saved;
}

/** Saves `fatesFrom` durably. */
export function saveFatesFromSync(dir: string, offset: number): void {
  saveOffsetFileSync(dir, FROM_FILE, offset);
}

/**
 * Raises the saved `fatesFrom` to `offset` (durably), and leaves it alone when it is that
 * high already: the replica's effects and the records this file drops both raise it.
 */
export function raiseFatesFromSync(dir: string, offset: number): void {
  if (offset > (loadFatesFrom(dir) ?? 0)) saveFatesFromSync(dir, offset);
}

/** Raises `fates-from` past `dropped`: records about to be dropped, whose ids will not be known after a restart. */
function forget(dir: string, dropped: readonly EntryMeta[]): void {
  if (dropped.length > 0) raiseFatesFromSync(dir, dropped.reduce((m, f) => Math.max(m, entryEnd(f)), 0));
}
